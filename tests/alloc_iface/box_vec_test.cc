#define BOOST_TEST_MODULE box_vec
#include <boost/test/unit_test.hpp>

#include <memory>
#include <numeric>
#include <string>

#include "alloy/alloc_iface/box.h"
#include "alloy/alloc_iface/vec.h"
#include "alloy/allocators/page_allocator.h"
#include "tests/support/recording_allocator.h"

using alloy::AllocError;
using alloy::Box;
using alloy::Vec;
using alloy::testing::RecordingAllocator;

namespace {
int live_widgets = 0;
struct Widget {
  explicit Widget(int v) : value(v) { ++live_widgets; }
  Widget(const Widget& o) : value(o.value) { ++live_widgets; }
  Widget(Widget&& o) noexcept : value(o.value) { ++live_widgets; }
  Widget& operator=(const Widget&) = default;
  Widget& operator=(Widget&&) = default;
  ~Widget() { --live_widgets; }
  int value;
};
}  // namespace

BOOST_AUTO_TEST_CASE(box_frees_through_its_handle) {
  RecordingAllocator rec;
  {
    auto b = Box<Widget>::make(rec.allocator(), 7);
    BOOST_REQUIRE(b.ok());
    BOOST_TEST((*b)->value == 7);
    Box<Widget> moved = std::move(*b);
    BOOST_TEST(!*b);
    BOOST_TEST(moved->value == 7);
    BOOST_TEST((moved.allocator() == rec.allocator()));
  }
  BOOST_TEST(live_widgets == 0);
  BOOST_TEST(rec.live_bytes == 0u);
}

BOOST_AUTO_TEST_CASE(box_make_failure) {
  RecordingAllocator rec;
  rec.fail_allocs = true;
  auto b = Box<Widget>::make(rec.allocator(), 1);
  BOOST_TEST(!b.ok());
  BOOST_TEST(live_widgets == 0);
}

BOOST_AUTO_TEST_CASE(box_release_and_adopt) {
  RecordingAllocator rec;
  auto b = Box<int>::make(rec.allocator(), 5);
  int* raw = b->release();
  BOOST_TEST(*raw == 5);
  auto again = Box<int>::adopt(rec.allocator(), raw);
  again.reset();
  BOOST_TEST(rec.live_bytes == 0u);
}

BOOST_AUTO_TEST_CASE(vec_push_grow_and_contents) {
  RecordingAllocator rec;
  {
    Vec<int> v(rec.allocator());
    for (int i = 0; i < 10000; ++i) BOOST_REQUIRE(v.try_push(i).ok());
    BOOST_TEST(v.size() == 10000u);
    BOOST_TEST(std::accumulate(v.begin(), v.end(), 0LL) == 49995000LL);
    BOOST_TEST(*v.pop() == 9999);
    BOOST_TEST(v.get(9999) == nullptr);
    BOOST_TEST(*v.get(0) == 0);
  }
  BOOST_TEST(rec.live_bytes == 0u);
}

BOOST_AUTO_TEST_CASE(vec_of_non_trivial_types) {
  RecordingAllocator rec;
  rec.allow_resize = false;  // force alloc + move + free
  {
    Vec<std::string> v(rec.allocator());
    for (int i = 0; i < 500; ++i) BOOST_REQUIRE(v.try_push(std::string(30, char('a' + i % 26))).ok());
    BOOST_TEST(v[499] == std::string(30, char('a' + 499 % 26)));
    BOOST_REQUIRE(v.try_insert(0, "front").ok());
    BOOST_TEST(v[0] == "front");
    BOOST_TEST(v[1] == std::string(30, 'a'));
    BOOST_TEST(v.remove(0) == "front");
    BOOST_TEST(v.swap_remove(0) == std::string(30, 'a'));
    BOOST_TEST(v.size() == 499u);
    auto c = v.try_clone();
    BOOST_REQUIRE(c.ok());
    BOOST_TEST(c->size() == 499u);
    BOOST_TEST((*c)[0] == v[0]);
  }
  {
    Vec<Widget> w(rec.allocator());
    for (int i = 0; i < 100; ++i) BOOST_REQUIRE(w.try_emplace(i).ok());
    BOOST_TEST(live_widgets == 100);
    w.truncate(10);
    BOOST_TEST(live_widgets == 10);
  }
  BOOST_TEST(live_widgets == 0);
  BOOST_TEST(rec.live_bytes == 0u);
}

BOOST_AUTO_TEST_CASE(vec_failure_leaves_it_unchanged) {
  RecordingAllocator rec;
  rec.allow_resize = rec.allow_remap = false;
  Vec<Widget> v(rec.allocator());
  for (int i = 0; i < 8; ++i) BOOST_REQUIRE(v.try_emplace(i).ok());
  while (v.size() < v.capacity()) BOOST_REQUIRE(v.try_emplace(1).ok());
  const std::size_t size = v.size();
  rec.fail_allocs = true;
  auto r = v.try_push(Widget(99));
  BOOST_TEST(!r.ok());
  BOOST_TEST((r.error() == AllocError::kOutOfMemory));
  BOOST_TEST(v.size() == size);
  BOOST_TEST(v[0].value == 0);
  BOOST_TEST(v[7].value == 7);
  rec.fail_allocs = false;
  BOOST_TEST(v.try_push(Widget(99)).ok());  // usable afterwards
}

BOOST_AUTO_TEST_CASE(vec_reserve_overflow) {
  RecordingAllocator rec;
  Vec<std::uint64_t> v(rec.allocator());
  BOOST_REQUIRE(v.try_push(1).ok());
  auto r = v.try_reserve(std::numeric_limits<std::size_t>::max());
  BOOST_TEST((r.error() == AllocError::kSizeOverflow));
  auto r2 = v.try_reserve(std::numeric_limits<std::size_t>::max() / 4);
  BOOST_TEST((r2.error() == AllocError::kSizeOverflow));
  BOOST_TEST(v.size() == 1u);
}

BOOST_AUTO_TEST_CASE(vec_append_aliasing_and_resize) {
  RecordingAllocator rec;
  Vec<int> v(rec.allocator());
  int src[] = {1, 2, 3};
  BOOST_REQUIRE(v.try_append(src).ok());
  BOOST_REQUIRE(v.try_append(v.span()).ok());  // appends a copy of itself
  BOOST_TEST(v.size() == 6u);
  BOOST_TEST(v[5] == 3);
  BOOST_REQUIRE(v.try_resize(10, 7).ok());
  BOOST_TEST(v[9] == 7);
  BOOST_REQUIRE(v.try_resize(2).ok());
  BOOST_TEST(v.size() == 2u);
}

BOOST_AUTO_TEST_CASE(vec_grows_through_remap_on_pages) {
  Vec<std::uint64_t> v(alloy::page_allocator());
  for (std::uint64_t i = 0; i < (1u << 20); ++i) BOOST_REQUIRE(v.try_push(i).ok());
  bool ok = true;
  for (std::uint64_t i = 0; i < v.size(); ++i) ok &= v[i] == i;
  BOOST_TEST(ok);
}

BOOST_AUTO_TEST_CASE(vec_to_owned_span_and_back) {
  RecordingAllocator rec;
  Vec<int> v(rec.allocator());
  for (int i = 0; i < 5; ++i) BOOST_REQUIRE(v.try_push(i).ok());
  auto owned = v.to_owned_span();
  BOOST_REQUIRE(owned.ok());
  BOOST_TEST(owned->size() == 5u);
  BOOST_TEST(v.empty());
  BOOST_TEST(rec.live_bytes == 5 * sizeof(int));  // exactly sized
  auto again = Vec<int>::from_owned_span(rec.allocator(), *owned);
  BOOST_TEST(again[4] == 4);
  again.shrink_to_fit();
}
