// The wrappers and the optional entries: each forwards its child's size
// feedback, zeroed memory and ownership; the ones that count charge what
// they report; Fallback routes by the handles' owns and Segregator keeps
// feedback on its side of the threshold and refuses cross-side frees.
#define BOOST_TEST_MODULE wrappers_optional_entries
#include <boost/test/unit_test.hpp>

#include <cstddef>
#include <string>

#include "alloy/allocators/c_allocator.h"
#include "alloy/allocators/fixed_buffer_allocator.h"
#include "alloy/allocators/memory_pool.h"
#include "alloy/allocators/page_allocator.h"
#include "alloy/allocators/wrappers/counting_allocator.h"
#include "alloy/allocators/wrappers/failing_allocator.h"
#include "alloy/allocators/wrappers/fallback_allocator.h"
#include "alloy/allocators/wrappers/limit_allocator.h"
#include "alloy/allocators/wrappers/segregator.h"
#include "alloy/allocators/wrong_free.h"
#include "tests/support/capture_stderr.h"

using alloy::Alignment;
using alloy::Allocator;
using alloy::Bytes;
using alloy::Ownership;

BOOST_AUTO_TEST_CASE(counting_charges_the_reported_length) {
  alloy::CountingAllocator counting(alloy::page_allocator());
  Allocator a = counting.allocator();
  auto b = a.alloc_bytes_at_least(100, Alignment{});
  BOOST_TEST_REQUIRE(b.has_value());
  BOOST_TEST(b->size() == alloy::page_size());
  BOOST_TEST(counting.live_bytes() == alloy::page_size());
  a.free_bytes(*b, Alignment{});  // freed with the reported length: back to zero
  BOOST_TEST(counting.live_bytes() == 0u);
  BOOST_TEST(counting.refused_frees() == 0u);
  auto z = a.alloc_bytes_zeroed(100, Alignment{});
  BOOST_TEST_REQUIRE(z.has_value());
  BOOST_TEST(counting.live_bytes() == 100u);
  BOOST_TEST(counting.stats().allocs == 2u);
  a.free_bytes(*z, Alignment{});
  // The page allocator cannot tell ownership, so neither can the counter.
  BOOST_TEST((a.owns(b->data()) == Ownership::kUnknown));
}

BOOST_AUTO_TEST_CASE(limit_charges_the_extra_only_when_it_has_room) {
  const std::size_t page = alloy::page_size();
  alloy::LimitAllocator capped(alloy::page_allocator(), page + 100);
  Allocator a = capped.allocator();
  auto b = a.alloc_bytes_at_least(100, Alignment{});
  BOOST_TEST_REQUIRE(b.has_value());
  BOOST_TEST(b->size() == page);  // the extra fits under the ceiling
  BOOST_TEST(capped.used() == page);
  auto c = a.alloc_bytes_at_least(100, Alignment{});
  BOOST_TEST_REQUIRE(c.has_value());
  BOOST_TEST(c->size() == 100u);  // no room for the extra: only what was asked
  BOOST_TEST(capped.used() == page + 100);
  a.free_bytes(*c, Alignment{});
  a.free_bytes(*b, Alignment{});
  BOOST_TEST(capped.used() == 0u);
}

BOOST_AUTO_TEST_CASE(failing_counts_alloc_at_least_and_zeroed_as_allocs) {
  alloy::FailingAllocator failing(alloy::c_allocator(), {.fail_alloc_index = 1});
  Allocator a = failing.allocator();
  auto first = a.alloc_bytes_at_least(10, Alignment{});
  BOOST_TEST(first.has_value());
  auto second = a.alloc_bytes_zeroed(10, Alignment{});
  BOOST_TEST(!second.has_value());
  BOOST_TEST(failing.has_induced_failure());
  a.free_bytes(*first, Alignment{});
}

BOOST_AUTO_TEST_CASE(fallback_routes_by_the_handles_owns) {
  std::byte storage[256];
  alloy::FixedBufferAllocator primary(Bytes(storage, sizeof storage));
  alloy::CountingAllocator heap(alloy::c_allocator());
  alloy::FallbackAllocator fb(primary.allocator(), heap.allocator());  // no Owner
  Allocator a = fb.allocator();
  auto small = a.alloc<char>(100);  // the buffer
  auto large = a.alloc<char>(1000);  // too big for it: malloc
  BOOST_TEST_REQUIRE((small.has_value() && large.has_value()));
  BOOST_TEST(fb.primary_owns(small->data()));
  BOOST_TEST(!fb.primary_owns(large->data()));
  BOOST_TEST(heap.live_blocks() == 1u);
  BOOST_TEST((a.owns(small->data()) == Ownership::kYes));
  BOOST_TEST((a.owns(large->data()) == Ownership::kUnknown));  // malloc cannot tell
  a.free(*large);  // to the fallback
  BOOST_TEST(heap.live_blocks() == 0u);
  a.free(*small);  // to the buffer (which rewinds its last block)
  BOOST_TEST(primary.owns(storage));
  auto again = a.alloc<char>(100);
  BOOST_TEST_REQUIRE(again.has_value());
  BOOST_TEST(again->data() == small->data());
  a.free(*again);
  BOOST_TEST(heap.refused_frees() == 0u);
}

BOOST_AUTO_TEST_CASE(segregator_caps_small_side_feedback_at_the_threshold) {
  alloy::NodePool pool(alloy::page_allocator(), 512, Alignment::from_log2(4));
  alloy::Segregator seg(256, pool.allocator(), alloy::page_allocator());
  Allocator a = seg.allocator();
  auto b = a.alloc_bytes_at_least(100, Alignment{});
  BOOST_TEST_REQUIRE(b.has_value());
  BOOST_TEST(b->size() == 256u);  // a 512-byte node, but 257 would name the large side
  a.free_bytes(*b, Alignment{});
  BOOST_TEST(pool.in_use() == 0u);
  auto big = a.alloc_bytes_at_least(1000, Alignment{});
  BOOST_TEST_REQUIRE(big.has_value());
  BOOST_TEST(big->size() == alloy::page_size());
  a.free_bytes(*big, Alignment{});
}

BOOST_AUTO_TEST_CASE(segregator_refuses_a_free_whose_length_names_the_wrong_side) {
  std::byte small_buf[4096];
  std::byte large_buf[4096];
  alloy::FixedBufferAllocator small(Bytes(small_buf, sizeof small_buf));
  alloy::FixedBufferAllocator large(Bytes(large_buf, sizeof large_buf));
  alloy::Segregator seg(64, small.allocator(), large.allocator());
  Allocator a = seg.allocator();
  auto b = a.alloc_bytes(32, Alignment{});
  BOOST_TEST_REQUIRE(b.has_value());
  BOOST_TEST((a.owns(b->data()) == Ownership::kYes));
  alloy::testing::CaptureStderr err;
  a.free_bytes(Bytes(b->data(), 100), Alignment{});  // a wrong size across the threshold
  if (alloy::kCheckedFrees) {
    BOOST_TEST(seg.refused_frees() == 1u);
    BOOST_TEST(err.text().find("alloy::Segregator: refused free") != std::string::npos,
               err.text());
  }
  a.free_bytes(*b, Alignment{});
  BOOST_TEST(small.owns(small_buf));
  auto again = a.alloc_bytes(32, Alignment{});  // the small side rewound its block
  BOOST_TEST_REQUIRE(again.has_value());
  BOOST_TEST(again->data() == b->data());
  a.free_bytes(*again, Alignment{});
}
