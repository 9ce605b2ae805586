#define BOOST_TEST_MODULE virtual_arena
#include <boost/test/unit_test.hpp>

#include <cstring>

#include "alloy/allocators/page_allocator.h"
#include "alloy/allocators/virtual_arena.h"
#include "tests/allocators/family_test_util.h"

using alloy::Alignment;
using alloy::ResetMode;
using alloy::VirtualArena;
namespace t = alloy::testing;

BOOST_AUTO_TEST_CASE(reserves_64_gib_without_committing) {
  VirtualArena va;
  BOOST_REQUIRE(va.ok());
  BOOST_CHECK_EQUAL(va.reserved(), std::size_t{64} << 30);
  BOOST_CHECK_EQUAL(va.committed(), 0u);
  BOOST_REQUIRE(va.alloc_inline(100, 8) != nullptr);
  BOOST_CHECK_EQUAL(va.committed(), 64u * 1024);  // one granule
}

BOOST_AUTO_TEST_CASE(alignment_one_byte_to_64k) {
  VirtualArena va({.reserve = 1 << 30});
  BOOST_REQUIRE(va.ok());
  t::check_alignments(va.allocator(), 64 * 1024);
}

BOOST_AUTO_TEST_CASE(no_overlap_over_many_commits) {
  VirtualArena va({.reserve = 1 << 30, .commit_granule = 4096});
  auto blocks = t::check_no_overlap(va.allocator(), 5000, 500);
  BOOST_CHECK_EQUAL(blocks.size(), 5000u);
  BOOST_CHECK_GE(va.committed(), va.used());
  BOOST_CHECK_LT(va.committed() - va.used(), 4096u);
}

BOOST_AUTO_TEST_CASE(last_allocation_grows_in_place_far_beyond_commit) {
  VirtualArena va({.reserve = std::size_t{4} << 30});
  alloy::Allocator a = va.allocator();
  auto first = a.alloc<std::uint64_t>(16);
  BOOST_REQUIRE(first);
  for (std::uint64_t i = 0; i < 16; ++i) (*first)[i] = i * i;
  std::span<std::uint64_t> v = *first;
  for (std::size_t n = 32; n <= (std::size_t{64} << 20) / 8; n *= 2) {  // up to 64 MiB
    auto r = a.realloc(v, n);
    BOOST_REQUIRE(r);
    BOOST_REQUIRE_EQUAL(static_cast<void*>(r->data()), static_cast<void*>(first->data()));
    v = *r;
    v[n - 1] = n;  // the new tail is committed and writable
  }
  for (std::uint64_t i = 0; i < 16; ++i) BOOST_CHECK_EQUAL(v[i], i * i);
  // remap straight through the table: same pointer.
  void* p = a.raw_remap(std::as_writable_bytes(v), Alignment::of<std::uint64_t>(),
                        v.size_bytes() + 4096, 0);
  BOOST_CHECK_EQUAL(p, static_cast<void*>(v.data()));
}

BOOST_AUTO_TEST_CASE(older_blocks_cannot_grow_but_realloc_copies) {
  VirtualArena va({.reserve = 1 << 30});
  alloy::Allocator a = va.allocator();
  auto older = a.alloc<char>(8);
  auto last = a.alloc<char>(8);
  BOOST_REQUIRE(older && last);
  std::memcpy(older->data(), "olderblk", 8);
  BOOST_CHECK(!a.resize(*older, 16));
  BOOST_CHECK(a.resize(*older, 4));
  auto moved = a.realloc(*older, 100);
  BOOST_REQUIRE(moved);
  BOOST_CHECK(moved->data() != older->data());
  BOOST_CHECK_EQUAL(std::memcmp(moved->data(), "olderblk", 8), 0);
}

BOOST_AUTO_TEST_CASE(reservation_exhausted_returns_null_and_stays_usable) {
  VirtualArena va({.reserve = 1 << 20, .commit_granule = 4096});
  alloy::Allocator a = va.allocator();
  auto big = a.alloc<char>(1000000);
  BOOST_REQUIRE(big);
  BOOST_CHECK(!a.alloc<char>(100000));
  BOOST_CHECK(!a.resize(*big, 2 << 20));
  BOOST_CHECK(va.alloc_inline(SIZE_MAX, 1) == nullptr);
  BOOST_CHECK(a.alloc<char>(1000));
  BOOST_CHECK(va.reset(ResetMode::free_all()));
  BOOST_CHECK(a.alloc<char>(1 << 20));
}

BOOST_AUTO_TEST_CASE(reset_modes_decommit) {
  VirtualArena va({.reserve = 1 << 30, .commit_granule = 4096});
  auto* p = static_cast<unsigned char*>(va.alloc_inline(1 << 20, 4096));
  BOOST_REQUIRE(p != nullptr);
  std::memset(p, 0xAB, 1 << 20);
  BOOST_CHECK_EQUAL(va.committed(), 1u << 20);

  BOOST_CHECK(va.reset(ResetMode::retain_capacity()));
  BOOST_CHECK_EQUAL(va.used(), 0u);
  BOOST_CHECK_EQUAL(va.committed(), 1u << 20);

  BOOST_CHECK(va.reset(ResetMode::retain_with_limit(256 * 1024)));
  BOOST_CHECK_EQUAL(va.committed(), 256u * 1024);
  BOOST_CHECK_EQUAL(p[100], 0xAB);  // kept pages keep their bytes

  BOOST_CHECK(va.reset(ResetMode::free_all()));
  BOOST_CHECK_EQUAL(va.committed(), 0u);
  // Recommitted pages come back zeroed (MADV_DONTNEED dropped them).
  auto* q = static_cast<unsigned char*>(va.alloc_inline(1 << 20, 4096));
  BOOST_REQUIRE_EQUAL(static_cast<void*>(q), static_cast<void*>(p));
  BOOST_CHECK_EQUAL(q[100], 0);
  BOOST_CHECK_EQUAL(q[(1 << 20) - 1], 0);
}

// Issue 10 (wrong frees across the family): refused, counted and reported.
BOOST_AUTO_TEST_CASE(wrong_frees_are_refused_and_reported) {
  alloy::VirtualArena va({.reserve = 1 << 20});
  BOOST_REQUIRE(va.ok());
  t::check_bump_wrong_frees(va, "alloy::VirtualArena",
                            [&] { va.reset(alloy::ResetMode::retain_capacity()); }, true);
}
