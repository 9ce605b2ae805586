#define BOOST_TEST_MODULE segregator
#include <boost/test/unit_test.hpp>

#include <cstring>

#include "alloy/allocators/c_allocator.h"
#include "alloy/allocators/wrappers/counting_allocator.h"
#include "alloy/allocators/wrappers/segregator.h"
#include "tests/allocators/wrappers/wrapper_test_util.h"

namespace {

using alloy::Alignment;
using alloy::Bytes;
using alloy::CountingAllocator;

constexpr std::uintptr_t kRet = 0;

struct Fixture {
  CountingAllocator small{alloy::c_allocator()};
  CountingAllocator large{alloy::c_allocator()};
  alloy::Segregator seg{128, small.allocator(), large.allocator()};
  alloy::Allocator a = seg.allocator();
};

}  // namespace

BOOST_AUTO_TEST_CASE(routes_by_size_threshold_inclusive) {
  Fixture f;
  Bytes s1 = *f.a.alloc_bytes(1, Alignment{});
  Bytes s2 = *f.a.alloc_bytes(128, Alignment{});
  Bytes l1 = *f.a.alloc_bytes(129, Alignment{});
  Bytes l2 = *f.a.alloc_bytes(1 << 16, Alignment{});
  BOOST_TEST(f.small.stats().allocs == 2u);
  BOOST_TEST(f.small.live_bytes() == 129u);
  BOOST_TEST(f.large.stats().allocs == 2u);
  BOOST_TEST(f.large.live_bytes() == 129u + (1u << 16));
  f.a.free_bytes(l1, Alignment{});
  f.a.free_bytes(s2, Alignment{});
  BOOST_TEST(f.small.stats().frees == 1u);
  BOOST_TEST(f.large.stats().frees == 1u);
  f.a.free_bytes(s1, Alignment{});
  f.a.free_bytes(l2, Alignment{});
  BOOST_TEST(f.small.live_blocks() == 0u);
  BOOST_TEST(f.large.live_blocks() == 0u);
}

BOOST_AUTO_TEST_CASE(resize_within_a_side_goes_to_that_side) {
  Fixture f;
  Bytes s = *f.a.alloc_bytes(100, Alignment{});
  BOOST_TEST(f.a.raw_resize(s, Alignment{}, 50, kRet));  // malloc shrinks in place
  s = s.first(50);
  BOOST_TEST(f.small.stats().resizes == 1u);
  Bytes l = *f.a.alloc_bytes(1000, Alignment{});
  void* p = f.a.raw_remap(l, Alignment{}, 100000, kRet);
  BOOST_REQUIRE(p != nullptr);
  l = Bytes(static_cast<std::byte*>(p), 100000);
  BOOST_TEST(f.large.stats().remaps == 1u);
  BOOST_TEST(f.small.stats().remaps == 0u);
  f.a.free_bytes(s, Alignment{});
  f.a.free_bytes(l, Alignment{});
  BOOST_TEST(f.small.live_blocks() == 0u);
  BOOST_TEST(f.large.live_blocks() == 0u);
}

BOOST_AUTO_TEST_CASE(crossing_the_threshold_is_refused_in_place) {
  Fixture f;
  Bytes s = *f.a.alloc_bytes(128, Alignment{});
  Bytes l = *f.a.alloc_bytes(129, Alignment{});
  BOOST_TEST(!f.a.raw_resize(s, Alignment{}, 129, kRet));
  BOOST_TEST(f.a.raw_remap(s, Alignment{}, 4096, kRet) == nullptr);
  BOOST_TEST(!f.a.raw_resize(l, Alignment{}, 128, kRet));
  BOOST_TEST(f.a.raw_remap(l, Alignment{}, 1, kRet) == nullptr);
  // The children never saw those calls.
  BOOST_TEST(f.small.stats().resizes + f.small.stats().remaps == 0u);
  BOOST_TEST(f.large.stats().resizes + f.large.stats().remaps == 0u);
  f.a.free_bytes(s, Alignment{});
  f.a.free_bytes(l, Alignment{});
}

BOOST_AUTO_TEST_CASE(realloc_across_the_threshold_moves_and_keeps_contents) {
  Fixture f;
  auto r = f.a.alloc<unsigned char>(100);
  BOOST_REQUIRE(r);
  for (int i = 0; i < 100; ++i) (*r)[i] = static_cast<unsigned char>(i);
  auto g = f.a.realloc(*r, 1000);
  BOOST_REQUIRE(g);
  for (int i = 0; i < 100; ++i) BOOST_TEST((*g)[i] == i);
  BOOST_TEST(f.small.live_blocks() == 0u);
  BOOST_TEST(f.large.live_blocks() == 1u);
  auto back = f.a.realloc(*g, 64);
  BOOST_REQUIRE(back);
  for (int i = 0; i < 64; ++i) BOOST_TEST((*back)[i] == i);
  BOOST_TEST(f.small.live_blocks() == 1u);
  BOOST_TEST(f.large.live_blocks() == 0u);
  f.a.free(*back);
}

BOOST_AUTO_TEST_CASE(alignment_is_preserved) {
  Fixture f;
  BOOST_TEST(alloy::testing::misaligned_count(f.a, 65536) == 0);  // 24 B: small side
  CountingAllocator small(alloy::c_allocator()), large(alloy::c_allocator());
  alloy::Segregator tiny(8, small.allocator(), large.allocator());  // 24 B: large side
  BOOST_TEST(alloy::testing::misaligned_count(tiny.allocator(), 65536) == 0);
  BOOST_TEST(large.stats().allocs == 17u);
}

BOOST_AUTO_TEST_CASE(hammered_from_four_threads_frees_return_to_their_side) {
  Fixture f;
  auto r = alloy::testing::hammer(f.a, 4, 20000);
  BOOST_TEST(r.corrupted == 0u);
  BOOST_TEST(r.failures == 0u);
  BOOST_TEST(f.small.live_blocks() == 0u);
  BOOST_TEST(f.large.live_blocks() == 0u);
  BOOST_TEST(f.small.live_bytes() == 0u);
  BOOST_TEST(f.large.live_bytes() == 0u);
  BOOST_TEST(f.small.stats().allocs > 0u);
  BOOST_TEST(f.large.stats().allocs > 0u);
}
