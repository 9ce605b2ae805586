#define BOOST_TEST_MODULE wrapper_composition
#include <boost/test/unit_test.hpp>

#include <memory>

#include "alloy/allocators/c_allocator.h"
#include "alloy/allocators/wrappers/counting_allocator.h"
#include "alloy/allocators/wrappers/failing_allocator.h"
#include "alloy/allocators/wrappers/fallback_allocator.h"
#include "alloy/allocators/wrappers/limit_allocator.h"
#include "alloy/allocators/wrappers/segregator.h"
#include "alloy/allocators/wrappers/thread_safe_allocator.h"
#include "tests/allocators/wrappers/wrapper_test_util.h"

namespace {

// Every wrapper stacked on the next:
//   Counting -> Limit -> ThreadSafe -> Segregator(256) -> small: StackFallback
//   (inline buffer, then Failing), large: Failing -> malloc.
struct Stack {
  alloy::FailingAllocator failing{alloy::c_allocator()};
  alloy::StackFallback<8192> stack_fallback{failing.allocator()};
  alloy::Segregator seg{256, stack_fallback.allocator(), failing.allocator()};
  alloy::ThreadSafeAllocator safe{seg.allocator()};
  alloy::LimitAllocator limit{safe.allocator(), 1 << 20};
  alloy::CountingAllocator counting{limit.allocator()};
  alloy::Allocator top = counting.allocator();
};

}  // namespace

BOOST_AUTO_TEST_CASE(alignment_survives_every_layer) {
  auto s = std::make_unique<Stack>();
  BOOST_TEST(alloy::testing::misaligned_count(s->top, 65536) == 0);
  BOOST_TEST(s->counting.live_blocks() == 0u);
  BOOST_TEST(s->limit.used() == 0u);
  // Same for a large size, which takes the other side of the segregator.
  for (std::size_t align = 1; align <= 65536; align *= 2) {
    const auto alignment = *alloy::Alignment::from_bytes(align);
    auto r = s->top.alloc_bytes(1000, alignment);
    BOOST_REQUIRE(r);
    BOOST_TEST(alignment.check(r->data()));
    s->top.free_bytes(*r, alignment);
  }
}

BOOST_AUTO_TEST_CASE(a_failure_at_the_bottom_reaches_the_top_and_changes_nothing) {
  auto s = std::make_unique<Stack>();
  auto keep = s->top.alloc<char>(1000);
  BOOST_REQUIRE(keep);
  s->failing.reset({.fail_alloc_index = 0});
  auto r = s->top.alloc<char>(1000);  // large side: straight to Failing
  BOOST_TEST(!r);
  BOOST_TEST(s->failing.has_induced_failure());
  BOOST_TEST(s->counting.stats().alloc_failures == 1u);
  BOOST_TEST(s->counting.live_bytes() == 1000u);
  BOOST_TEST(s->limit.used() == 1000u);  // the reservation was given back
  auto small = s->top.alloc<char>(100);  // small side: the inline buffer
  BOOST_REQUIRE(small.ok());
  BOOST_TEST(s->stack_fallback.owns_inline(small->data()));
  s->top.free(*small);
  s->top.free(*keep);
  BOOST_TEST(s->limit.used() == 0u);
}

BOOST_AUTO_TEST_CASE(hammered_from_four_threads_through_the_whole_stack) {
  auto s = std::make_unique<Stack>();
  auto r = alloy::testing::hammer(s->top, 4, 20000);
  BOOST_TEST(r.corrupted == 0u);
  BOOST_TEST(r.failures == 0u);
  const alloy::CountingStats st = s->counting.stats();
  BOOST_TEST(st.live_blocks == 0u);
  BOOST_TEST(st.live_bytes == 0u);
  BOOST_TEST(s->limit.used() == 0u);
  BOOST_TEST(s->failing.allocated_bytes() == s->failing.freed_bytes());
  BOOST_TEST(st.peak_bytes <= s->limit.peak());
}
