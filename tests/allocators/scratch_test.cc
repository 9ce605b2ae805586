#define BOOST_TEST_MODULE scratch
#include <boost/test/unit_test.hpp>

#include <cstring>
#include <thread>

#include "alloy/allocators/c_allocator.h"
#include "alloy/allocators/scratch.h"
#include "tests/allocators/family_test_util.h"

#include "alloy/base/config.h"

#if defined(ALLOY_HAVE_ASAN)
#include <sanitizer/asan_interface.h>
#endif

using alloy::Alignment;
using alloy::Scratch;
using alloy::ScratchScope;
namespace t = alloy::testing;

BOOST_AUTO_TEST_CASE(alignment_one_byte_to_64k) {
  ScratchScope scope;
  t::check_alignments(scope.allocator(), 64 * 1024);
}

BOOST_AUTO_TEST_CASE(no_overlap_across_chunks) {
  Scratch scratch(alloy::c_allocator(), 1024);
  ScratchScope scope(scratch);
  auto blocks = t::check_no_overlap(scope.allocator(), 4000, 300);
  BOOST_CHECK_EQUAL(blocks.size(), 4000u);
  BOOST_CHECK_GT(scratch.chunk_count(), 3u);
}

BOOST_AUTO_TEST_CASE(scope_restores_and_memory_is_reused) {
  Scratch& s = Scratch::local();
  void* first = nullptr;
  {
    ScratchScope scope;
    first = s.alloc_inline(100, 16);
    BOOST_REQUIRE(first != nullptr);
    {
      ScratchScope inner;
      for (int i = 0; i < 1000; ++i) BOOST_REQUIRE(s.alloc_inline(100, 16) != nullptr);
    }
    // Inner scope restored: the next block comes right after `first`.
    void* next = s.alloc_inline(16, 16);
    BOOST_CHECK_EQUAL(reinterpret_cast<std::uintptr_t>(next),
                      reinterpret_cast<std::uintptr_t>(first) + 112);
  }
  ScratchScope again;
  BOOST_CHECK_EQUAL(s.alloc_inline(100, 16), first);  // same memory, reused
}

BOOST_AUTO_TEST_CASE(steady_state_allocates_no_new_chunks) {
  Scratch scratch(alloy::c_allocator(), 4096);
  for (int round = 0; round < 50; ++round) {
    ScratchScope scope(scratch);
    for (int i = 0; i < 500; ++i) BOOST_REQUIRE(scratch.alloc_inline(64, 8) != nullptr);
  }
  const std::size_t chunks = scratch.chunk_count();
  const std::size_t capacity = scratch.capacity();
  for (int round = 0; round < 50; ++round) {
    ScratchScope scope(scratch);
    for (int i = 0; i < 500; ++i) BOOST_REQUIRE(scratch.alloc_inline(64, 8) != nullptr);
  }
  BOOST_CHECK_EQUAL(scratch.chunk_count(), chunks);
  BOOST_CHECK_EQUAL(scratch.capacity(), capacity);
}

BOOST_AUTO_TEST_CASE(restored_memory_is_poisoned_in_debug_builds) {
  if (!Scratch::kPoisons) {
    BOOST_TEST_MESSAGE("NDEBUG build: no poisoning to check");
    return;
  }
  Scratch scratch(alloy::c_allocator(), 1024);
  unsigned char* stale = nullptr;
  unsigned char* stale_far = nullptr;
  {
    ScratchScope scope(scratch);
    stale = static_cast<unsigned char*>(scratch.alloc_inline(64, 8));
    std::memset(stale, 0x11, 64);
    for (int i = 0; i < 100; ++i) (void)scratch.alloc_inline(64, 8);  // into later chunks
    stale_far = static_cast<unsigned char*>(scratch.alloc_inline(64, 8));
    std::memset(stale_far, 0x22, 64);
  }
#if defined(ALLOY_HAVE_ASAN)
  BOOST_CHECK(__asan_address_is_poisoned(stale));
  BOOST_CHECK(__asan_address_is_poisoned(stale_far + 63));
  ASAN_UNPOISON_MEMORY_REGION(stale, 64);
  ASAN_UNPOISON_MEMORY_REGION(stale_far, 64);
#endif
  for (int i = 0; i < 64; ++i) {
    BOOST_REQUIRE_EQUAL(stale[i], 0xDB);
    BOOST_REQUIRE_EQUAL(stale_far[i], 0xDB);
  }
#if defined(ALLOY_HAVE_ASAN)
  ASAN_POISON_MEMORY_REGION(stale, 64);
  ASAN_POISON_MEMORY_REGION(stale_far, 64);
#endif
  // Allocating again unpoisons what is handed out.
  ScratchScope scope(scratch);
  auto* fresh = static_cast<unsigned char*>(scratch.alloc_inline(64, 8));
  std::memset(fresh, 0x33, 64);
  BOOST_CHECK_EQUAL(fresh[63], 0x33);
}

BOOST_AUTO_TEST_CASE(restore_out_of_order_is_ignored) {
  Scratch scratch(alloy::c_allocator(), 1024);
  const auto outer = scratch.checkpoint();
  (void)scratch.alloc_inline(10, 1);
  const auto inner = scratch.checkpoint();
  (void)scratch.alloc_inline(10, 1);
  BOOST_CHECK(scratch.restore(outer));
  BOOST_CHECK(!scratch.restore(inner));  // above the top now: ignored
  BOOST_CHECK_EQUAL(scratch.checkpoint().cur, outer.cur == 0 ? scratch.checkpoint().cur : outer.cur);
}

BOOST_AUTO_TEST_CASE(last_allocation_resize_and_free) {
  ScratchScope scope;
  alloy::Allocator a = scope.allocator();
  auto v = a.alloc<char>(10);
  BOOST_REQUIRE(v);
  std::memcpy(v->data(), "0123456789", 10);
  auto grown = a.realloc(*v, 4000);
  BOOST_REQUIRE(grown);
  BOOST_CHECK_EQUAL(static_cast<void*>(grown->data()), static_cast<void*>(v->data()));
  BOOST_CHECK_EQUAL(std::memcmp(grown->data(), "0123456789", 10), 0);
  a.free(*grown);
  auto again = a.alloc<char>(1);
  BOOST_REQUIRE(again);
  BOOST_CHECK_EQUAL(static_cast<void*>(again->data()), static_cast<void*>(v->data()));
}

BOOST_AUTO_TEST_CASE(out_of_memory_returns_null_and_stays_usable) {
  ScratchScope scope;
  BOOST_CHECK(scope.scratch().alloc_inline(std::size_t{1} << 62, 8) == nullptr);
  BOOST_CHECK(!scope.allocator().alloc<std::uint64_t>(SIZE_MAX / 4));
  BOOST_CHECK(scope.scratch().alloc_inline(64, 8) != nullptr);
}

BOOST_AUTO_TEST_CASE(each_thread_has_its_own_scratch) {
  // Boost.Test assertions are not thread-safe: threads only record, the
  // main thread checks.
  Scratch* mine = &Scratch::local();
  Scratch* theirs[4] = {};
  int failures[4] = {};
  std::thread threads[4];
  for (int i = 0; i < 4; ++i) {
    threads[i] = std::thread([&, i] {
      theirs[i] = &Scratch::local();
      std::mt19937 rng(i);
      for (int round = 0; round < 200; ++round) {
        ScratchScope scope;
        std::vector<alloy::Bytes> blocks;
        for (std::size_t k = 0; k < 50; ++k) {
          auto r = scope.allocator().alloc_bytes(1 + rng() % 100, Alignment::from_log2(3));
          if (!r) {
            ++failures[i];
            break;
          }
          t::fill(*r, k + i * 100);
          blocks.push_back(*r);
        }
        for (std::size_t k = 0; k < blocks.size(); ++k) {
          if (!t::intact(blocks[k], k + i * 100, blocks[k].size())) ++failures[i];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int i = 0; i < 4; ++i) {
    BOOST_CHECK(theirs[i] != mine);
    BOOST_CHECK_EQUAL(failures[i], 0);
  }
}

// Issue 10 (wrong frees across the family): refused, counted and reported;
// a block dropped by a restored checkpoint is stale.
BOOST_AUTO_TEST_CASE(wrong_frees_are_refused_and_reported) {
  alloy::Scratch scratch(alloy::c_allocator(), 4096);
  const auto empty = scratch.checkpoint();
  alloy::testing::check_bump_wrong_frees(scratch, "alloy::Scratch",
                                         [&] { BOOST_CHECK(scratch.restore(empty)); }, false);
  // A block in a retained chunk past the current one (dropped by a restore).
  const auto before = scratch.checkpoint();
  auto big = scratch.allocator().alloc<char>(20000);  // a second chunk
  BOOST_REQUIRE(big);
  BOOST_REQUIRE(scratch.restore(before));
  const std::size_t refused = scratch.refused_frees();
  {
    alloy::testing::CaptureStderr err;
    scratch.allocator().free(*big);
  }
  BOOST_CHECK_EQUAL(scratch.refused_frees(), refused + (alloy::kCheckedFrees ? 1 : 0));
}
