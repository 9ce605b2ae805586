#define BOOST_TEST_MODULE limit_allocator
#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#include "alloy/allocators/c_allocator.h"
#include "alloy/allocators/wrappers/counting_allocator.h"
#include "alloy/allocators/wrappers/failing_allocator.h"
#include "alloy/allocators/wrappers/limit_allocator.h"
#include "alloy/allocators/wrappers/threading.h"
#include "tests/support/capture_stderr.h"
#include "tests/allocators/wrappers/wrapper_test_util.h"

namespace {

using alloy::Alignment;
using alloy::Bytes;
using alloy::CountingAllocator;
using alloy::CountingStats;
using alloy::LimitAllocator;

constexpr std::uintptr_t kRet = 0;

Bytes raw_alloc(alloy::Allocator a, std::size_t len) {
  void* p = a.raw_alloc(len, Alignment{}, kRet);
  return p ? Bytes(static_cast<std::byte*>(p), len) : Bytes();
}
void raw_free(alloy::Allocator a, Bytes b) { a.raw_free(b, Alignment{}, kRet); }

// A limit over a counting child, so tests can see what reached the child.
struct Fixture {
  CountingAllocator counting{alloy::c_allocator()};
  LimitAllocator limit;
  alloy::Allocator a;
  explicit Fixture(std::size_t ceiling)
      : limit(counting.allocator(), ceiling), a(limit.allocator()) {}
};

}  // namespace

BOOST_AUTO_TEST_CASE(ceiling_is_exact_and_refusal_changes_nothing) {
  Fixture f(1000);
  Bytes x = raw_alloc(f.a, 600);
  BOOST_REQUIRE(!x.empty());
  const CountingStats child_before = f.counting.stats();
  BOOST_TEST(raw_alloc(f.a, 401).empty());
  BOOST_TEST(f.limit.used() == 600u);
  BOOST_TEST(f.limit.refusals() == 1u);
  BOOST_TEST((f.counting.stats() == child_before));  // the child never saw it
  Bytes y = raw_alloc(f.a, 400);                     // exactly up to the ceiling
  BOOST_REQUIRE(!y.empty());
  BOOST_TEST(f.limit.used() == 1000u);
  BOOST_TEST(f.limit.remaining() == 0u);
  BOOST_TEST(raw_alloc(f.a, 1).empty());
  BOOST_TEST(f.limit.refusals() == 2u);
  raw_free(f.a, x);
  BOOST_TEST(f.limit.used() == 400u);
  BOOST_TEST(f.limit.remaining() == 600u);
  raw_free(f.a, y);
  BOOST_TEST(f.limit.used() == 0u);
  BOOST_TEST(f.limit.peak() == 1000u);
  BOOST_TEST(f.counting.live_blocks() == 0u);
}

BOOST_AUTO_TEST_CASE(typed_alloc_over_ceiling_is_an_out_of_memory_error) {
  Fixture f(100);
  auto r = f.a.alloc<int>(26);  // 104 bytes
  BOOST_REQUIRE(!r);
  BOOST_TEST((r.error() == alloy::AllocError::kOutOfMemory));
  auto ok = f.a.alloc<int>(25);
  BOOST_REQUIRE(ok);
  f.a.free(*ok);
}

BOOST_AUTO_TEST_CASE(growing_resize_and_remap_are_refused_over_the_ceiling) {
  Fixture f(256);
  auto r = f.a.alloc<unsigned char>(100);
  BOOST_REQUIRE(r);
  std::memset(r->data(), 0x5a, 100);
  const CountingStats child_before = f.counting.stats();
  BOOST_TEST(!f.a.raw_resize(std::as_writable_bytes(*r), Alignment{}, 257, kRet));
  BOOST_TEST(f.a.raw_remap(std::as_writable_bytes(*r), Alignment{}, 257, kRet) == nullptr);
  BOOST_TEST((f.counting.stats() == child_before));
  BOOST_TEST(f.limit.used() == 100u);
  // realloc: resize, remap and alloc all refused; the old block is intact.
  auto g = f.a.realloc(*r, 300);
  BOOST_TEST(!g);
  for (unsigned char c : *r) BOOST_TEST(c == 0x5a);
  BOOST_TEST(f.limit.used() == 100u);
  // Within the ceiling, growth works and is accounted.
  auto h = f.a.realloc(*r, 256);
  BOOST_REQUIRE(h);
  BOOST_TEST(f.limit.used() == 256u);
  for (std::size_t i = 0; i < 100; ++i) BOOST_TEST((*h)[i] == 0x5a);
  // Shrinking gives bytes back.
  auto s = f.a.realloc(*h, 10);
  BOOST_REQUIRE(s);
  BOOST_TEST(f.limit.used() == 10u);
  f.a.free(*s);
  BOOST_TEST(f.limit.used() == 0u);
}

BOOST_AUTO_TEST_CASE(lowering_below_use_keeps_blocks_and_refuses_until_under) {
  Fixture f(1000);
  Bytes x = raw_alloc(f.a, 300), y = raw_alloc(f.a, 300), z = raw_alloc(f.a, 300);
  BOOST_REQUIRE((!x.empty() && !y.empty() && !z.empty()));
  std::memset(x.data(), 1, x.size());
  f.limit.set_ceiling(500);
  BOOST_TEST(f.limit.ceiling() == 500u);
  BOOST_TEST(f.limit.used() == 900u);
  BOOST_TEST(f.limit.remaining() == 0u);
  BOOST_TEST(raw_alloc(f.a, 1).empty());
  BOOST_TEST((x[299] == std::byte{1}));  // existing blocks untouched
  raw_free(f.a, z);
  BOOST_TEST(raw_alloc(f.a, 1).empty());  // 600 still over 500
  raw_free(f.a, y);
  BOOST_TEST(f.limit.remaining() == 200u);
  BOOST_TEST(raw_alloc(f.a, 201).empty());
  Bytes w = raw_alloc(f.a, 200);
  BOOST_TEST(!w.empty());
  raw_free(f.a, w);
  raw_free(f.a, x);
}

BOOST_AUTO_TEST_CASE(raising_the_ceiling_lets_more_through) {
  Fixture f(64);
  BOOST_TEST(raw_alloc(f.a, 128).empty());
  f.limit.set_ceiling(128);
  Bytes x = raw_alloc(f.a, 128);
  BOOST_TEST(!x.empty());
  BOOST_TEST(f.limit.used() == 128u);
  raw_free(f.a, x);
}

BOOST_AUTO_TEST_CASE(child_refusal_gives_the_reservation_back) {
  alloy::FailingAllocator failing(alloy::c_allocator(),
                                  {.fail_alloc_index = 0, .fail_resize_index = 0});
  LimitAllocator limit(failing.allocator(), 1000);
  alloy::Allocator a = limit.allocator();
  BOOST_TEST(raw_alloc(a, 500).empty());
  BOOST_TEST(limit.used() == 0u);
  BOOST_TEST(limit.refusals() == 0u);  // the child refused, not the ceiling
  Bytes x = raw_alloc(a, 500);
  BOOST_REQUIRE(!x.empty());
  BOOST_TEST(!a.raw_resize(x, Alignment{}, 600, kRet));  // child refuses resize #0
  BOOST_TEST(limit.used() == 500u);
  raw_free(a, x);
  BOOST_TEST(limit.used() == 0u);
}

BOOST_AUTO_TEST_CASE(alignment_is_preserved) {
  LimitAllocator limit(alloy::c_allocator(), 1 << 20);
  BOOST_TEST(alloy::testing::misaligned_count(limit.allocator(), 65536) == 0);
  BOOST_TEST(limit.used() == 0u);
}

BOOST_AUTO_TEST_CASE(hammered_from_four_threads_never_overshoots) {
  // Small enough that threads keep hitting the ceiling.
  Fixture f(4096);
  auto r = alloy::testing::hammer(f.a, 4, 20000);
  BOOST_TEST(r.corrupted == 0u);
  BOOST_TEST(r.failures > 0u);
  BOOST_TEST(f.limit.used() == 0u);
  BOOST_TEST(f.limit.peak() <= 4096u);
  // The child's own view: never more than the ceiling live at once.
  BOOST_TEST(f.counting.peak_bytes() <= 4096u);
  BOOST_TEST(f.counting.live_bytes() == 0u);
}

BOOST_AUTO_TEST_CASE(lowered_while_threads_run_settles_under_the_new_ceiling) {
  Fixture f(1 << 16);
  std::thread lowerer([&] {
    for (int i = 0; i < 200; ++i) f.limit.set_ceiling(i % 2 ? (1 << 16) : 2048);
    f.limit.set_ceiling(2048);
  });
  auto r = alloy::testing::hammer(f.a, 3, 10000);
  lowerer.join();
  BOOST_TEST(r.corrupted == 0u);
  BOOST_TEST(f.limit.used() == 0u);
  // After the last lowering, a fresh fill stops at the ceiling.
  Bytes blocks[64];
  std::size_t got = 0;
  for (auto& b : blocks) {
    b = raw_alloc(f.a, 100);
    if (!b.empty()) ++got;
  }
  BOOST_TEST(got == 20u);
  for (auto& b : blocks) {
    if (!b.empty()) raw_free(f.a, b);
  }
}

BOOST_AUTO_TEST_CASE(single_thread_mode_enforces_the_same_ceiling) {
  CountingAllocator counting(alloy::c_allocator());
  LimitAllocator limit(counting.allocator(), 1000, LimitAllocator::Threading::kSingleThread);
  alloy::Allocator a = limit.allocator();
  BOOST_TEST((limit.threading() == LimitAllocator::Threading::kSingleThread));
  Bytes x = raw_alloc(a, 600);
  BOOST_REQUIRE(!x.empty());
  const CountingStats child_before = counting.stats();
  BOOST_TEST(raw_alloc(a, 401).empty());
  BOOST_TEST((counting.stats() == child_before));
  BOOST_TEST(!a.raw_resize(x, Alignment{}, 1001, kRet));
  Bytes y = raw_alloc(a, 400);
  BOOST_REQUIRE(!y.empty());
  BOOST_TEST(limit.used() == 1000u);
  BOOST_TEST(limit.refusals() == 2u);
  limit.set_ceiling(500);
  raw_free(a, y);
  BOOST_TEST(raw_alloc(a, 1).empty());
  raw_free(a, x);
  BOOST_TEST(limit.used() == 0u);
  BOOST_TEST(limit.peak() == 1000u);
}

// Issue 11: Threading was defined twice, once per wrapper, so one mode value
// could not configure both; now one alloy::Threading, with the old spellings.
BOOST_AUTO_TEST_CASE(one_threading_enum_serves_counting_and_limit) {
  static_assert(std::is_same_v<LimitAllocator::Threading, alloy::Threading>);
  static_assert(std::is_same_v<CountingAllocator::Threading, alloy::Threading>);
  for (alloy::Threading mode : {alloy::Threading::kShared, alloy::Threading::kSingleThread}) {
    CountingAllocator counting(alloy::c_allocator(), mode);
    LimitAllocator limit(counting.allocator(), 100, mode);
    BOOST_TEST((counting.threading() == mode));
    BOOST_TEST((limit.threading() == counting.threading()));
    alloy::Allocator a = limit.allocator();
    Bytes x = raw_alloc(a, 100);
    BOOST_REQUIRE(!x.empty());
    BOOST_TEST(raw_alloc(a, 1).empty());
    BOOST_TEST(counting.stats().live_bytes == 100u);
    raw_free(a, x);
    BOOST_TEST(limit.used() == 0u);
  }
}

// Issue 10: a foreign free (or one longer than what is counted) wrapped the
// counter, and every later allocation was refused.
BOOST_AUTO_TEST_CASE(free_longer_than_used_is_refused_and_the_counter_never_wraps) {
  for (auto mode : {LimitAllocator::Threading::kShared, LimitAllocator::Threading::kSingleThread}) {
    CountingAllocator counting{alloy::c_allocator()};
    LimitAllocator limit(counting.allocator(), 1000, mode);
    alloy::Allocator a = limit.allocator();
    Bytes x = raw_alloc(a, 100);
    BOOST_REQUIRE(!x.empty());
    alignas(16) std::byte foreign[256];
    const CountingStats child_before = counting.stats();
    alloy::testing::CaptureStderr err;
    a.raw_free(Bytes(foreign, 256), Alignment{}, 0x5eed01);  // longer than used()
    a.raw_free(Bytes(x.data(), 101), Alignment{}, 0x5eed02);  // wrong size, too long
    BOOST_TEST(limit.used() == 100u);  // unchanged, not wrapped
    BOOST_TEST(limit.refused_frees() == 2u);
    BOOST_TEST((limit.last_wrong_free().kind == alloy::WrongFree::kCounterUnderflow));
    BOOST_TEST(limit.last_wrong_free().ret_addr == 0x5eed02u);
    BOOST_TEST((counting.stats() == child_before));  // the child never saw them
    const std::string text = err.text();
    BOOST_TEST(text.find("alloy::LimitAllocator: refused free of") != std::string::npos, text);
    BOOST_TEST(text.find("called from 0x5eed01") != std::string::npos, text);
    // The ceiling still works both ways.
    Bytes y = raw_alloc(a, 900);
    BOOST_TEST(!y.empty());
    BOOST_TEST(raw_alloc(a, 1).empty());
    raw_free(a, y);
    raw_free(a, x);
    BOOST_TEST(limit.used() == 0u);
    Bytes whole = raw_alloc(a, 1000);
    BOOST_TEST(!whole.empty());
    BOOST_TEST(limit.used() == 1000u);
    raw_free(a, whole);
  }
}

BOOST_AUTO_TEST_CASE(shrink_of_an_uncounted_length_stops_at_zero) {
  LimitAllocator limit(alloy::c_allocator(), 1 << 20);
  limit.set_report_to_stderr(false);
  alloy::Allocator a = limit.allocator();
  Bytes x = raw_alloc(a, 64);
  BOOST_REQUIRE(!x.empty());
  // A shrink that claims the block was far longer than anything counted.
  BOOST_TEST(a.raw_resize(Bytes(x.data(), 4096), Alignment{}, 8, kRet));
  BOOST_TEST(limit.used() == 0u);  // stopped at zero, not wrapped
  BOOST_TEST(limit.refused_frees() == 1u);
  BOOST_TEST(limit.remaining() == (1u << 20));
  Bytes y = raw_alloc(a, 1024);
  BOOST_TEST(!y.empty());
  raw_free(a, y);
  std::free(x.data());  // the limit no longer counts it; give it back directly
}
