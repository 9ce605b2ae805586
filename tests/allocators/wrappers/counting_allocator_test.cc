#define BOOST_TEST_MODULE counting_allocator
#include <boost/test/unit_test.hpp>

#include <fmt/format.h>

#include <string>

#include "alloy/allocators/c_allocator.h"
#include "alloy/allocators/wrappers/counting_allocator.h"
#include "alloy/allocators/wrappers/failing_allocator.h"
#include "alloy/allocators/wrappers/thread_safe_allocator.h"
#include "tests/support/capture_stderr.h"
#include "tests/allocators/wrappers/wrapper_test_util.h"

namespace {

using alloy::Alignment;
using alloy::Bytes;
using alloy::CountingAllocator;
using alloy::CountingStats;

constexpr std::uintptr_t kRet = 0;

Bytes raw_alloc(alloy::Allocator a, std::size_t len) {
  void* p = a.raw_alloc(len, Alignment{}, kRet);
  return p ? Bytes(static_cast<std::byte*>(p), len) : Bytes();
}

}  // namespace

BOOST_AUTO_TEST_CASE(alloc_and_free_counts_are_exact) {
  CountingAllocator counting(alloy::c_allocator());
  alloy::Allocator a = counting.allocator();
  BOOST_TEST((counting.stats() == CountingStats{}));

  Bytes x = raw_alloc(a, 100), y = raw_alloc(a, 50), z = raw_alloc(a, 30);
  BOOST_REQUIRE((!x.empty() && !y.empty() && !z.empty()));
  CountingStats s = counting.stats();
  BOOST_TEST(s.live_blocks == 3u);
  BOOST_TEST(s.live_bytes == 180u);
  BOOST_TEST(s.peak_bytes == 180u);
  BOOST_TEST(s.allocs == 3u);
  BOOST_TEST(s.alloc_failures == 0u);

  a.raw_free(y, Alignment{}, kRet);
  a.raw_free(x, Alignment{}, kRet);
  s = counting.stats();
  BOOST_TEST(s.live_blocks == 1u);
  BOOST_TEST(s.live_bytes == 30u);
  BOOST_TEST(s.peak_bytes == 180u);
  BOOST_TEST(s.frees == 2u);

  Bytes w = raw_alloc(a, 10);
  BOOST_TEST(counting.peak_bytes() == 180u);  // 40 live, peak unchanged
  a.raw_free(w, Alignment{}, kRet);
  a.raw_free(z, Alignment{}, kRet);
  s = counting.stats();
  BOOST_TEST(s.live_blocks == 0u);
  BOOST_TEST(s.live_bytes == 0u);
  BOOST_TEST(s.allocs == 4u);
  BOOST_TEST(s.frees == 4u);
}

BOOST_AUTO_TEST_CASE(typed_helpers_count_once_and_zero_length_not_at_all) {
  CountingAllocator counting(alloy::c_allocator());
  alloy::Allocator a = counting.allocator();
  auto v = a.alloc<int>(0);
  BOOST_REQUIRE(v);
  a.free(*v);
  BOOST_TEST(counting.stats().allocs == 0u);
  BOOST_TEST(counting.stats().frees == 0u);
  auto d = a.create<double>(1.5);
  BOOST_REQUIRE(d);
  BOOST_TEST(counting.live_bytes() == sizeof(double));
  a.destroy(*d);
  BOOST_TEST(counting.stats().allocs == 1u);
  BOOST_TEST(counting.stats().frees == 1u);
}

BOOST_AUTO_TEST_CASE(resize_and_remap_adjust_live_bytes_and_count_failures) {
  CountingAllocator counting(alloy::c_allocator());
  alloy::Allocator a = counting.allocator();
  Bytes x = raw_alloc(a, 64);
  BOOST_REQUIRE(!x.empty());
  // Shrink in place (malloc always can), then an impossible in-place growth.
  BOOST_TEST(a.raw_resize(x, Alignment{}, 16, kRet));
  x = x.first(16);
  BOOST_TEST(counting.live_bytes() == 16u);
  BOOST_TEST(counting.peak_bytes() == 64u);
  BOOST_TEST(!a.raw_resize(x, Alignment{}, 1 << 20, kRet));
  BOOST_TEST(counting.live_bytes() == 16u);
  // remap (realloc) to a bigger block.
  void* p = a.raw_remap(x, Alignment{}, 1 << 20, kRet);
  BOOST_REQUIRE(p != nullptr);
  x = Bytes(static_cast<std::byte*>(p), 1 << 20);
  CountingStats s = counting.stats();
  BOOST_TEST(s.live_bytes == std::size_t{1} << 20);
  BOOST_TEST(s.peak_bytes == std::size_t{1} << 20);
  BOOST_TEST(s.resizes == 2u);
  BOOST_TEST(s.resize_failures == 1u);
  BOOST_TEST(s.remaps == 1u);
  BOOST_TEST(s.remap_failures == 0u);
  BOOST_TEST(s.live_blocks == 1u);
  a.raw_free(x, Alignment{}, kRet);
  BOOST_TEST(counting.live_bytes() == 0u);
}

BOOST_AUTO_TEST_CASE(child_failures_are_counted_and_change_nothing_else) {
  alloy::FailingAllocator failing(alloy::c_allocator(),
                                  {.fail_alloc_index = 1, .fail_resize_index = 0});
  CountingAllocator counting(failing.allocator());
  alloy::Allocator a = counting.allocator();
  Bytes x = raw_alloc(a, 40);
  BOOST_REQUIRE(!x.empty());
  const CountingStats before = counting.stats();
  BOOST_TEST(raw_alloc(a, 40).empty());  // alloc #1 refused by the child
  BOOST_TEST(!a.raw_resize(x, Alignment{}, 8, kRet));  // resize #0 refused
  void* moved = a.raw_remap(x, Alignment{}, 80, kRet);  // #1 goes through
  BOOST_REQUIRE(moved != nullptr);
  CountingStats s = counting.stats();
  BOOST_TEST(s.allocs == before.allocs + 1);
  BOOST_TEST(s.alloc_failures == 1u);
  BOOST_TEST(s.resizes == 1u);
  BOOST_TEST(s.resize_failures == 1u);
  BOOST_TEST(s.remaps == 1u);
  BOOST_TEST(s.live_blocks == 1u);
  BOOST_TEST(s.live_bytes == 80u);
  BOOST_TEST(failing.allocated_bytes() == 80u);
  a.raw_free(Bytes(static_cast<std::byte*>(moved), 80), Alignment{}, kRet);
  BOOST_TEST(counting.live_bytes() == 0u);
}

BOOST_AUTO_TEST_CASE(remap_failure_counted) {
  alloy::FailingAllocator failing(alloy::c_allocator(), {.fail_resize_index = 0});
  CountingAllocator counting(failing.allocator());
  alloy::Allocator a = counting.allocator();
  Bytes x = raw_alloc(a, 40);
  BOOST_TEST(a.raw_remap(x, Alignment{}, 80, kRet) == nullptr);
  BOOST_TEST(counting.stats().remap_failures == 1u);
  BOOST_TEST(counting.live_bytes() == 40u);
  a.raw_free(x, Alignment{}, kRet);
}

BOOST_AUTO_TEST_CASE(stats_print_with_fmt) {
  CountingAllocator counting(alloy::c_allocator());
  alloy::Allocator a = counting.allocator();
  auto v = a.alloc<int>(100);
  BOOST_REQUIRE(v);
  const std::string line = fmt::format("{}", counting.stats());
  BOOST_TEST(line ==
             "live 1 blocks / 400 B, peak 400 B; alloc 1 (0 failed), resize 0 (0 failed), "
             "remap 0 (0 failed), free 0");
  a.free(*v);
}

BOOST_AUTO_TEST_CASE(reset_totals_keeps_live_counts) {
  CountingAllocator counting(alloy::c_allocator());
  alloy::Allocator a = counting.allocator();
  Bytes x = raw_alloc(a, 10), y = raw_alloc(a, 20);
  a.raw_free(y, Alignment{}, kRet);
  counting.reset_totals();
  CountingStats s = counting.stats();
  BOOST_TEST(s.allocs == 0u);
  BOOST_TEST(s.frees == 0u);
  BOOST_TEST(s.live_blocks == 1u);
  BOOST_TEST(s.live_bytes == 10u);
  BOOST_TEST(s.peak_bytes == 10u);
  a.raw_free(x, Alignment{}, kRet);
  BOOST_TEST(counting.live_blocks() == 0u);
}

BOOST_AUTO_TEST_CASE(alignment_is_preserved) {
  CountingAllocator counting(alloy::c_allocator());
  BOOST_TEST(alloy::testing::misaligned_count(counting.allocator(), 65536) == 0);
  BOOST_TEST(counting.live_blocks() == 0u);
  BOOST_TEST(counting.stats().allocs == 17u);
}

BOOST_AUTO_TEST_CASE(hammered_from_four_threads_counts_stay_exact) {
  CountingAllocator counting(alloy::c_allocator());
  auto r = alloy::testing::hammer(counting.allocator(), 4, 20000);
  BOOST_TEST(r.corrupted == 0u);
  BOOST_TEST(r.failures == 0u);
  CountingStats s = counting.stats();
  BOOST_TEST(s.live_blocks == 0u);
  BOOST_TEST(s.live_bytes == 0u);
  // With malloc as the child, realloc is resize or remap, never a new alloc.
  BOOST_TEST(s.allocs == r.allocs);
  BOOST_TEST(s.frees == r.allocs);
  BOOST_TEST(s.peak_bytes > 0u);
  BOOST_TEST(s.peak_bytes <= 4u * 16u * 512u);
}

BOOST_AUTO_TEST_CASE(single_thread_mode_counts_the_same) {
  CountingAllocator counting(alloy::c_allocator(),
                             CountingAllocator::Threading::kSingleThread);
  alloy::Allocator a = counting.allocator();
  BOOST_TEST((counting.threading() == CountingAllocator::Threading::kSingleThread));
  Bytes x = raw_alloc(a, 100), y = raw_alloc(a, 50);
  BOOST_TEST(a.raw_resize(x, Alignment{}, 60, kRet));
  x = x.first(60);
  a.raw_free(y, Alignment{}, kRet);
  CountingStats s = counting.stats();
  BOOST_TEST(s.live_blocks == 1u);
  BOOST_TEST(s.live_bytes == 60u);
  BOOST_TEST(s.peak_bytes == 150u);
  BOOST_TEST(s.allocs == 2u);
  BOOST_TEST(s.resizes == 1u);
  BOOST_TEST(s.frees == 1u);
  a.raw_free(x, Alignment{}, kRet);
  BOOST_TEST(counting.live_blocks() == 0u);
  BOOST_TEST(counting.live_bytes() == 0u);
}

BOOST_AUTO_TEST_CASE(single_thread_mode_behind_a_mutex_is_exact_under_four_threads) {
  CountingAllocator counting(alloy::c_allocator(),
                             CountingAllocator::Threading::kSingleThread);
  alloy::ThreadSafeAllocator safe(counting.allocator());
  auto r = alloy::testing::hammer(safe.allocator(), 4, 20000);
  BOOST_TEST(r.corrupted == 0u);
  CountingStats s = counting.stats();
  BOOST_TEST(s.allocs == r.allocs);
  BOOST_TEST(s.frees == r.allocs);
  BOOST_TEST(s.live_blocks == 0u);
  BOOST_TEST(s.live_bytes == 0u);
}

// Issue 10 (audit of the counters): a free of more than is live wrapped
// live_bytes; a free with nothing live drove live_blocks negative.
BOOST_AUTO_TEST_CASE(free_of_more_than_is_live_is_refused_and_nothing_wraps) {
  for (auto mode : {CountingAllocator::Threading::kShared,
                    CountingAllocator::Threading::kSingleThread}) {
    CountingAllocator inner(alloy::c_allocator());
    CountingAllocator counting(inner.allocator(), mode);
    alloy::Allocator a = counting.allocator();
    Bytes x = raw_alloc(a, 100);
    BOOST_REQUIRE(!x.empty());
    alignas(16) std::byte foreign[256];
    const CountingStats before = counting.stats();
    const CountingStats child_before = inner.stats();
    alloy::testing::CaptureStderr err;
    a.raw_free(Bytes(foreign, 256), Alignment{}, 0xc0c0a1);
    BOOST_TEST((counting.stats() == before));
    BOOST_TEST((inner.stats() == child_before));  // not passed on
    BOOST_TEST(counting.refused_frees() == 1u);
    a.raw_free(x, Alignment{}, kRet);
    // Nothing is live now: a double free is refused, counters stay at zero.
    a.raw_free(x, Alignment{}, 0xc0c0a2);
    BOOST_TEST(counting.refused_frees() == 2u);
    BOOST_TEST(counting.live_bytes() == 0u);
    BOOST_TEST(counting.live_blocks() == 0u);
    BOOST_TEST(counting.stats().frees == 1u);
    BOOST_TEST(inner.stats().frees == 1u);
    BOOST_TEST((counting.last_wrong_free().kind == alloy::WrongFree::kCounterUnderflow));
    const std::string text = err.text();
    BOOST_TEST(text.find("alloy::CountingAllocator: refused free of") != std::string::npos,
               text);
    BOOST_TEST(text.find("called from 0xc0c0a1") != std::string::npos, text);
    BOOST_TEST(text.find("called from 0xc0c0a2") != std::string::npos, text);
    // Still exact afterwards.
    Bytes y = raw_alloc(a, 10);
    BOOST_REQUIRE(!y.empty());
    BOOST_TEST(counting.live_bytes() == 10u);
    a.raw_free(y, Alignment{}, kRet);
    BOOST_TEST(counting.live_bytes() == 0u);
  }
}
