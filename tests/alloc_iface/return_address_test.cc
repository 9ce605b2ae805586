// Every public function that allocates records the address of the user's
// call: each "site" below makes one call through the public API, and every
// vtable call it causes must carry a return address inside that site (found
// with dladdr, so the binary links with -rdynamic). Built twice: fastbuild
// (return_address_test) and -O2 (return_address_opt_test), where inlining
// used to move the recorded address into internals or the caller's caller.
#define BOOST_TEST_MODULE return_address
#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "alloy/adapters/std_allocator.h"
#include "alloy/alloc_iface/allocator.h"
#include "alloy/alloc_iface/box.h"
#include "alloy/alloc_iface/vec.h"
#include "tests/support/recording_allocator.h"
#include "tests/support/return_address.h"

using alloy::Alignment;
using alloy::Allocator;
using alloy::Box;
using alloy::Vec;
using alloy::testing::RecordingAllocator;

using alloy::testing::escape;

struct Node {
  int a;
  std::string s;
  Node(int x) : a(x), s(40, 'n') {}
};

struct Holder {
  RecordingAllocator rec;
  std::span<int> span;
  std::span<char> chars;
  alloy::Bytes bytes;
  Node* node = nullptr;
  std::optional<Vec<int>> vec;
  std::optional<Vec<std::string>> svec;
  std::optional<Vec<std::string>> clone;
  std::optional<Box<Node>> box;
  int* raw = nullptr;
  Allocator a() { return rec.allocator(); }
};

SITE void site_alloc(Holder& h) { h.span = h.a().alloc<int>(16).value(); escape(&h); }
SITE void site_alloc_aligned(Holder& h) {
  h.span = h.a().alloc_aligned<int>(16, Alignment::from_log2(6)).value();
  escape(&h);
}
SITE void site_alloc_aligned_bytes(Holder& h) {
  h.span = h.a().alloc_aligned<int>(16, std::size_t{128}).value();
  escape(&h);
}
SITE void site_realloc(Holder& h) { h.span = h.a().realloc(h.span, 4096).value(); escape(&h); }
SITE void site_resize(Holder& h) {
  if (h.a().resize(h.span, 8)) h.span = h.span.first(8);
  escape(&h);
}
SITE void site_dupe(Holder& h) { h.span = h.a().dupe(std::span<const int>(h.span)).value(); escape(&h); }
SITE void site_dupe_str(Holder& h) { h.chars = h.a().dupe(std::string_view("text")).value(); escape(&h); }
SITE void site_dupe_z(Holder& h) { h.chars = h.a().dupe_z("text").value(); escape(&h); }
SITE void site_alloc_bytes(Holder& h) {
  h.bytes = h.a().alloc_bytes(100, Alignment::from_log2(4)).value();
  escape(&h);
}
SITE void site_realloc_bytes(Holder& h) {
  h.bytes = h.a().realloc_bytes(h.bytes, Alignment::from_log2(4), 5000).value();
  escape(&h);
}
SITE void site_create(Holder& h) { h.node = h.a().create<Node>(3).value(); escape(&h); }
SITE void site_box_make(Holder& h) { h.box.emplace(std::move(Box<Node>::make(h.a(), 4).value())); escape(&h); }
SITE void site_vec_reserve(Holder& h) { escape(h.vec->try_reserve(100).ok() ? &h : nullptr); }
SITE void site_vec_reserve_exact(Holder& h) { escape(h.vec->try_reserve_exact(1000).ok() ? &h : nullptr); }
SITE void site_vec_push(Holder& h) { escape(h.vec->try_push(1).ok() ? &h : nullptr); }
SITE void site_vec_emplace(Holder& h) { escape(h.vec->try_emplace(2).ok() ? &h : nullptr); }
SITE void site_svec_push(Holder& h) { escape(h.svec->try_push(std::string(30, 's')).ok() ? &h : nullptr); }
SITE void site_svec_emplace(Holder& h) { escape(h.svec->try_emplace(30, 'e').ok() ? &h : nullptr); }
SITE void site_vec_append(Holder& h) { escape(h.vec->try_append(h.span).ok() ? &h : nullptr); }
SITE void site_vec_resize(Holder& h) { escape(h.vec->try_resize(h.vec->capacity() + 100, 9).ok() ? &h : nullptr); }
SITE void site_vec_insert(Holder& h) { escape(h.vec->try_insert(0, 8).ok() ? &h : nullptr); }
SITE void site_vec_assign(Holder& h) { escape(h.vec->try_assign(h.span).ok() ? &h : nullptr); }
SITE void site_vec_assign_n(Holder& h) {
  escape(h.vec->try_assign(h.vec->capacity() + 10, 3).ok() ? &h : nullptr);
}
SITE void site_vec_shrink(Holder& h) { h.vec->shrink_to_fit(); escape(&h); }
SITE void site_vec_clone(Holder& h) { h.clone.emplace(std::move(h.svec->try_clone().value())); escape(&h); }
SITE void site_vec_owned(Holder& h) { h.span = h.vec->to_owned_span().value(); escape(&h); }
SITE void site_std_allocate(Holder& h) {
  alloy::StdAllocator<int> stl(h.a());
  h.raw = stl.allocate(10);
  escape(&h);
}

namespace {

// Every call the site made carries an address inside the site.
void expect_calls_from(Holder& h, void (*site)(Holder&), const char* name,
                       std::size_t at_least = 1) {
  alloy::testing::expect_any_calls_in(h.rec, site, h, name, at_least);
}

void free_span(Holder& h) {
  if (!h.span.empty()) h.a().free(h.span);
  h.span = {};
}

}  // namespace

BOOST_AUTO_TEST_CASE(handle_helpers_record_the_users_call) {
  Holder h;
  h.rec.allow_resize = false;  // make realloc take alloc + copy + free
  h.rec.allow_remap = false;
  expect_calls_from(h, site_alloc, "alloc");
  expect_calls_from(h, site_realloc, "realloc", 2);  // resize, remap, alloc, free
  h.rec.allow_resize = true;
  expect_calls_from(h, site_resize, "resize");
  auto keep = h.span;
  expect_calls_from(h, site_dupe, "dupe(span)");
  free_span(h);
  h.span = keep;
  free_span(h);
  expect_calls_from(h, site_alloc_aligned, "alloc_aligned(Alignment)");
  h.a().free_aligned(h.span, Alignment::from_log2(6));
  expect_calls_from(h, site_alloc_aligned_bytes, "alloc_aligned(bytes)");
  h.a().free_aligned(h.span, Alignment::from_log2(7));
  h.span = {};
  expect_calls_from(h, site_dupe_str, "dupe(string_view)");
  h.a().free(h.chars);
  expect_calls_from(h, site_dupe_z, "dupe_z");
  h.a().free(h.chars);
  expect_calls_from(h, site_alloc_bytes, "alloc_bytes");
  h.rec.allow_resize = false;
  expect_calls_from(h, site_realloc_bytes, "realloc_bytes", 2);
  h.a().free_bytes(h.bytes, Alignment::from_log2(4));
  expect_calls_from(h, site_create, "create");
  h.a().destroy(h.node);
  expect_calls_from(h, site_box_make, "Box::make");
  h.box.reset();
  expect_calls_from(h, site_std_allocate, "StdAllocator::allocate");
  alloy::StdAllocator<int>(h.a()).deallocate(h.raw, 10);
  BOOST_TEST(h.rec.live_bytes == 0u);
}

BOOST_AUTO_TEST_CASE(vec_members_record_the_users_call) {
  Holder h;
  h.rec.allow_resize = false;  // every growth moves: alloc + copy + free
  h.rec.allow_remap = false;
  h.vec.emplace(h.a());
  h.svec.emplace(h.a());
  expect_calls_from(h, site_vec_reserve, "try_reserve");
  expect_calls_from(h, site_vec_reserve_exact, "try_reserve_exact", 2);
  while (h.vec->size() < h.vec->capacity()) BOOST_REQUIRE(h.vec->try_push(0).ok());
  expect_calls_from(h, site_vec_push, "try_push", 2);
  while (h.vec->size() < h.vec->capacity()) BOOST_REQUIRE(h.vec->try_push(0).ok());
  expect_calls_from(h, site_vec_emplace, "try_emplace", 2);
  expect_calls_from(h, site_svec_push, "try_push(string)");
  while (h.svec->size() < h.svec->capacity()) BOOST_REQUIRE(h.svec->try_push("x").ok());
  expect_calls_from(h, site_svec_emplace, "try_emplace(string)", 2);
  while (h.vec->size() < h.vec->capacity()) BOOST_REQUIRE(h.vec->try_push(0).ok());
  h.span = h.a().alloc<int>(64).value();
  expect_calls_from(h, site_vec_append, "try_append", 2);
  free_span(h);
  expect_calls_from(h, site_vec_resize, "try_resize", 2);
  while (h.vec->size() < h.vec->capacity()) BOOST_REQUIRE(h.vec->try_push(0).ok());
  expect_calls_from(h, site_vec_insert, "try_insert", 2);
  h.span = h.a().alloc<int>(h.vec->capacity() + 10).value();
  for (int& x : h.span) x = 1;
  expect_calls_from(h, site_vec_assign, "try_assign(span)", 2);
  free_span(h);
  expect_calls_from(h, site_vec_assign_n, "try_assign(n, value)", 2);
  BOOST_REQUIRE(h.vec->try_reserve(h.vec->capacity() + 1).ok());
  expect_calls_from(h, site_vec_shrink, "shrink_to_fit", 2);
  expect_calls_from(h, site_vec_clone, "try_clone");
  BOOST_REQUIRE(h.vec->try_push(1).ok());
  expect_calls_from(h, site_vec_owned, "to_owned_span", 2);
  free_span(h);
  h.vec.reset();
  h.svec.reset();
  h.clone.reset();
  BOOST_TEST(h.rec.live_bytes == 0u);
}
