// VTable contracts: the rules the handle checks in its raw_* calls without
// NDEBUG (each broken rule is named on stderr, then abort), and the answer
// of a default-constructed (unset) handle. With NDEBUG the checks are off and
// the unset handle answers "no" quietly; both builds are tested.
#define BOOST_TEST_MODULE contracts
#include <boost/test/unit_test.hpp>

#include <cstddef>
#include <string>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/alloc_iface/box.h"
#include "alloy/alloc_iface/make_vtable.h"
#include "alloy/alloc_iface/vec.h"
#include "alloy/allocators/arena.h"
#include "alloy/allocators/c_allocator.h"
#include "alloy/allocators/page_allocator.h"
#include "tests/support/death.h"

using alloy::AllocError;
using alloy::Alignment;
using alloy::Allocator;
using alloy::Bytes;
using alloy::testing::run_in_child;

namespace {

// A table that breaks the alignment promise of alloc and remap.
alignas(64) std::byte g_buffer[256];
struct Misaligned {
  static void* vt_alloc(void*, std::size_t, Alignment, std::uintptr_t) { return g_buffer + 1; }
  static void* vt_remap(void*, Bytes, Alignment, std::size_t, std::uintptr_t) {
    return g_buffer + 1;
  }
  static Bytes vt_alloc_at_least(void*, std::size_t, Alignment, std::uintptr_t) {
    return Bytes(g_buffer + 1, 8);
  }
  static void* vt_alloc_zeroed(void*, std::size_t, Alignment, std::uintptr_t) {
    return g_buffer + 1;
  }
  static void vt_free(void*, Bytes, Alignment, std::uintptr_t) {}
};
constexpr alloy::VTable kMisaligned = alloy::make_vtable<Misaligned>();

// A table whose alloc_at_least reports less than was asked.
struct ShortFeedback {
  static void* vt_alloc(void*, std::size_t, Alignment, std::uintptr_t) { return g_buffer; }
  static Bytes vt_alloc_at_least(void*, std::size_t len, Alignment, std::uintptr_t) {
    return Bytes(g_buffer, len - 1);
  }
};

[[maybe_unused]] bool mentions(const std::string& err, const char* what) {
  return err.find(what) != std::string::npos;
}

}  // namespace

BOOST_AUTO_TEST_CASE(default_handle_is_unset) {
  Allocator unset;
  BOOST_TEST(!unset.valid());
  BOOST_TEST(alloy::c_allocator().valid());
  BOOST_TEST((unset == Allocator{}));
  BOOST_TEST(!(unset == alloy::c_allocator()));
}

#if ALLOY_CHECK_CONTRACTS

BOOST_AUTO_TEST_CASE(zero_length_alloc_is_a_named_contract_break_on_every_allocator) {
  for (Allocator a : {alloy::c_allocator(), alloy::page_allocator()}) {
    auto d = run_in_child([a] { (void)a.raw_alloc(0, Alignment{}, 0); });
    BOOST_TEST(d.aborted());
    BOOST_TEST(mentions(d.err, "alloy: VTable::alloc contract: len must be non-zero"), d.err);
  }
}

BOOST_AUTO_TEST_CASE(resize_remap_free_need_a_live_block_and_a_length) {
  Allocator a = alloy::c_allocator();
  auto d1 = run_in_child([a] { (void)a.raw_resize(Bytes(), Alignment{}, 8, 0); });
  BOOST_TEST(d1.aborted());
  BOOST_TEST(mentions(d1.err, "VTable::resize contract: memory must be a live block"), d1.err);

  auto d2 = run_in_child([a] {
    auto s = a.alloc_bytes(16, Alignment{}).value();
    (void)a.raw_resize(s, Alignment{}, 0, 0);
  });
  BOOST_TEST(d2.aborted());
  BOOST_TEST(mentions(d2.err, "VTable::resize contract: new_len must be non-zero"), d2.err);

  auto d3 = run_in_child([a] {
    auto s = a.alloc_bytes(16, Alignment{}).value();
    (void)a.raw_remap(s, Alignment{}, 0, 0);
  });
  BOOST_TEST(d3.aborted());
  BOOST_TEST(mentions(d3.err, "VTable::remap contract: new_len must be non-zero"), d3.err);

  auto d4 = run_in_child([a] { (void)a.raw_remap(Bytes(), Alignment{}, 8, 0); });
  BOOST_TEST(d4.aborted());
  BOOST_TEST(mentions(d4.err, "VTable::remap contract: memory must be a live block"), d4.err);

  auto d5 = run_in_child([a] { a.raw_free(Bytes(), Alignment{}, 0); });
  BOOST_TEST(d5.aborted());
  BOOST_TEST(mentions(d5.err, "VTable::free contract: memory must be a live block"), d5.err);
}

BOOST_AUTO_TEST_CASE(misaligned_results_are_named) {
  Allocator bad{nullptr, &kMisaligned};
  auto d1 = run_in_child([bad] { (void)bad.raw_alloc(8, Alignment::from_log2(4), 0); });
  BOOST_TEST(d1.aborted());
  BOOST_TEST(mentions(d1.err, "VTable::alloc contract: the result must be aligned"), d1.err);
  auto d2 = run_in_child([bad] {
    (void)bad.raw_remap(Bytes(g_buffer, 8), Alignment::from_log2(4), 16, 0);
  });
  BOOST_TEST(d2.aborted());
  BOOST_TEST(mentions(d2.err, "VTable::remap contract: the result must be aligned"), d2.err);
}

BOOST_AUTO_TEST_CASE(optional_entries_have_named_contracts) {
  Allocator bad{nullptr, &kMisaligned};
  auto d1 = run_in_child([bad] { (void)bad.raw_alloc_at_least(8, Alignment::from_log2(4), 0); });
  BOOST_TEST(d1.aborted());
  BOOST_TEST(mentions(d1.err, "VTable::alloc_at_least contract: the result must be aligned"),
             d1.err);
  auto d2 = run_in_child([bad] { (void)bad.raw_alloc_zeroed(8, Alignment::from_log2(4), 0); });
  BOOST_TEST(d2.aborted());
  BOOST_TEST(mentions(d2.err, "VTable::alloc_zeroed contract: the result must be aligned"),
             d2.err);
  static constexpr alloy::VTable kShort = alloy::make_vtable<ShortFeedback>();
  Allocator short_feedback{nullptr, &kShort};
  auto d3 = run_in_child([short_feedback] { (void)short_feedback.raw_alloc_at_least(8, Alignment{}, 0); });
  BOOST_TEST(d3.aborted());
  BOOST_TEST(mentions(d3.err, "VTable::alloc_at_least contract: the usable length must be at "
                              "least len"),
             d3.err);
  Allocator c = alloy::c_allocator();
  auto d4 = run_in_child([c] { (void)c.raw_alloc_at_least(0, Alignment{}, 0); });
  BOOST_TEST(d4.aborted());
  BOOST_TEST(mentions(d4.err, "VTable::alloc_at_least contract: len must be non-zero"), d4.err);
  auto d5 = run_in_child([c] { (void)c.raw_alloc_zeroed(0, Alignment{}, 0); });
  BOOST_TEST(d5.aborted());
  BOOST_TEST(mentions(d5.err, "VTable::alloc_zeroed contract: len must be non-zero"), d5.err);
}

BOOST_AUTO_TEST_CASE(every_use_of_an_unset_handle_is_reported) {
  const char* kMsg = "alloy: use of a default-constructed alloy::Allocator";
  Allocator unset;
  auto d1 = run_in_child([unset] { (void)unset.alloc<int>(4); });
  BOOST_TEST(d1.aborted());
  BOOST_TEST(mentions(d1.err, kMsg), d1.err);
  BOOST_TEST(mentions(d1.err, "(alloc)"), d1.err);
  auto d2 = run_in_child([unset] {
    alloy::Vec<int> v(unset);
    (void)v.try_push(1);
  });
  BOOST_TEST(d2.aborted());
  BOOST_TEST(mentions(d2.err, kMsg), d2.err);
  auto d3 = run_in_child([unset] { unset.free_bytes(Bytes(g_buffer, 8), Alignment{}); });
  BOOST_TEST(d3.aborted());
  BOOST_TEST(mentions(d3.err, "(free)"), d3.err);
  auto d4 = run_in_child([unset] { (void)unset.raw_resize(Bytes(g_buffer, 8), Alignment{}, 4, 0); });
  BOOST_TEST(d4.aborted());
  BOOST_TEST(mentions(d4.err, "(resize)"), d4.err);
  auto d5 = run_in_child([unset] { (void)unset.raw_remap(Bytes(g_buffer, 8), Alignment{}, 4, 0); });
  BOOST_TEST(d5.aborted());
  BOOST_TEST(mentions(d5.err, "(remap)"), d5.err);
  auto d6 = run_in_child([unset] { (void)unset.owns(g_buffer); });
  BOOST_TEST(d6.aborted());
  BOOST_TEST(mentions(d6.err, "(owns)"), d6.err);
  auto d7 = run_in_child([unset] { (void)unset.alloc_zeroed<int>(4); });
  BOOST_TEST(d7.aborted());
  BOOST_TEST(mentions(d7.err, "(alloc)"), d7.err);
}

BOOST_AUTO_TEST_CASE(kept_contracts_pass_quietly) {
  // The helpers answer zero lengths themselves: nothing aborts.
  auto d = run_in_child([] {
    Allocator a = alloy::page_allocator();
    auto e = a.alloc<int>(0).value();
    a.free(e);
    auto s = a.alloc<int>(4).value();
    (void)a.resize(s, 0);
    auto z = a.realloc(s, 0).value();
    a.free(z);
    alloy::Vec<int> v(a);
    (void)v.try_reserve(0);
  });
  BOOST_TEST(d.exited_ok(), d.err);
  BOOST_TEST(d.err.empty(), d.err);
}

#else  // NDEBUG: no checks, and the unset handle says no

BOOST_AUTO_TEST_CASE(unset_handle_fails_quietly) {
  Allocator unset;
  auto r = unset.alloc<int>(4);
  BOOST_TEST(!r.ok());
  if (!r) BOOST_TEST((r.error() == AllocError::kOutOfMemory));
  alloy::Vec<int> v(unset);
  BOOST_TEST(!v.try_push(1).ok());
  BOOST_TEST(!unset.raw_resize(Bytes(g_buffer, 8), Alignment{}, 4, 0));
  BOOST_TEST(unset.raw_remap(Bytes(g_buffer, 8), Alignment{}, 4, 0) == nullptr);
  unset.free_bytes(Bytes(g_buffer, 8), Alignment{});  // refused: nothing happens
}

BOOST_AUTO_TEST_CASE(broken_rules_get_one_answer_from_every_allocator) {
  // page_allocator used to answer a zero-length alloc with null, c_allocator
  // with a block: now no table sees it.
  for (Allocator a : {alloy::c_allocator(), alloy::page_allocator()}) {
    BOOST_TEST(a.raw_alloc(0, Alignment{}, 0) == nullptr);
    auto s = a.alloc_bytes(64, Alignment{}).value();
    BOOST_TEST(!a.raw_resize(s, Alignment{}, 0, 0));
    BOOST_TEST(a.raw_remap(s, Alignment{}, 0, 0) == nullptr);
    BOOST_TEST(!a.raw_resize(Bytes(), Alignment{}, 8, 0));
    a.raw_free(Bytes(), Alignment{}, 0);  // nothing
    a.free_bytes(s, Alignment{});
  }
}

#endif

// ALLOY_ASSERT (base/assert.h) at the contract points the handle's raw_*
// checks do not see: Vec indexing and Box dereference, an arena's inline
// alloc of zero bytes. On in debug and sanitizer builds, off with NDEBUG.
#if ALLOY_ASSERTS
BOOST_AUTO_TEST_CASE(alloy_assert_guards_vec_box_and_alloc_inline) {
  auto index = run_in_child([] {
    alloy::Vec<int> v(alloy::c_allocator());
    (void)v.try_push(1);
    (void)v[1];
  });
  BOOST_TEST(index.aborted());
  BOOST_TEST(mentions(index.err, "alloy::Vec index past the end"), index.err);
  BOOST_TEST(mentions(index.err, "vec.h:"), index.err);
  auto back = run_in_child([] {
    alloy::Vec<int> v(alloy::c_allocator());
    (void)v.back();
  });
  BOOST_TEST(back.aborted());
  BOOST_TEST(mentions(back.err, "back of an empty Vec"), back.err);
  auto box = run_in_child([] {
    auto b = alloy::Box<int>::adopt(alloy::c_allocator(), nullptr);  // empty
    (void)*b;
  });
  BOOST_TEST(box.aborted());
  BOOST_TEST(mentions(box.err, "empty Box"), box.err);
  auto zero = run_in_child([] {
    alloy::Arena arena(alloy::c_allocator());
    (void)arena.alloc_inline(0);
  });
  BOOST_TEST(zero.aborted());
  BOOST_TEST(mentions(zero.err, "Arena::alloc_inline: len must be non-zero"), zero.err);
  auto align = run_in_child([] {
    alloy::Arena arena(alloy::c_allocator());
    (void)arena.alloc_inline(8, 3);
  });
  BOOST_TEST(align.aborted());
  BOOST_TEST(mentions(align.err, "align must be a power of two"), align.err);
  // Kept contracts pass.
  alloy::Vec<int> v(alloy::c_allocator());
  BOOST_REQUIRE(v.try_push(7).ok());
  BOOST_TEST(v[0] == 7);
  BOOST_TEST(v.back() == 7);
}
#endif
