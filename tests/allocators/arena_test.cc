#define BOOST_TEST_MODULE arena
#include <boost/test/unit_test.hpp>

#include <cstring>

#include "alloy/allocators/arena.h"
#include "alloy/allocators/c_allocator.h"
#include "alloy/allocators/page_allocator.h"
#include "tests/allocators/family_test_util.h"
#include "tests/support/recording_allocator.h"

using alloy::Alignment;
using alloy::Arena;
using alloy::ResetMode;
namespace t = alloy::testing;

BOOST_AUTO_TEST_CASE(alignment_one_byte_to_64k) {
  Arena arena(alloy::c_allocator());
  t::check_alignments(arena.allocator(), 64 * 1024);
  Arena paged(alloy::page_allocator());
  t::check_alignments(paged.allocator(), 64 * 1024, 3);
}

BOOST_AUTO_TEST_CASE(inline_alignment_and_make) {
  Arena arena(alloy::c_allocator(), {.first_chunk = 256});
  for (std::size_t align = 1; align <= 4096; align *= 2) {
    void* p = arena.alloc_inline(5, align);
    BOOST_REQUIRE(p != nullptr);
    BOOST_CHECK_EQUAL(reinterpret_cast<std::uintptr_t>(p) % align, 0u);
  }
  struct Pair { int a; double b; };
  Pair* pr = arena.make<Pair>(Pair{3, 4.5});
  BOOST_REQUIRE(pr != nullptr);
  BOOST_CHECK_EQUAL(pr->a, 3);
  BOOST_CHECK(arena.owns(pr));
  int local = 0;
  BOOST_CHECK(!arena.owns(&local));
}

BOOST_AUTO_TEST_CASE(no_overlap_across_many_chunks) {
  Arena arena(alloy::c_allocator(), {.first_chunk = 512});
  auto blocks = t::check_no_overlap(arena.allocator(), 5000, 300);
  BOOST_CHECK_EQUAL(blocks.size(), 5000u);
  BOOST_CHECK_GT(arena.chunk_count(), 3u);
}

BOOST_AUTO_TEST_CASE(chunks_grow_geometrically) {
  Arena arena(alloy::c_allocator(), {.first_chunk = 1024});
  for (int i = 0; i < 100000; ++i) BOOST_REQUIRE(arena.alloc_inline(16, 8) != nullptr);
  // 1.6 MB in chunks starting at 1 KiB and doubling: about 11 chunks, not 1600.
  BOOST_CHECK_LE(arena.chunk_count(), 13u);
  BOOST_CHECK_GE(arena.query_capacity(), 1600000u);
}

BOOST_AUTO_TEST_CASE(last_allocation_grows_shrinks_and_rewinds) {
  Arena arena(alloy::c_allocator(), {.first_chunk = 4096});
  alloy::Allocator a = arena.allocator();
  auto first = a.alloc<char>(100);
  BOOST_REQUIRE(first);
  std::memset(first->data(), 'x', 100);
  auto last = a.alloc<char>(100);
  BOOST_REQUIRE(last);
  std::memset(last->data(), 'y', 100);
  // Last: grows in place.
  BOOST_CHECK(a.resize(*last, 1000));
  auto grown = a.realloc(std::span<char>(last->data(), 1000), 2000);
  BOOST_REQUIRE(grown);
  BOOST_CHECK_EQUAL(static_cast<void*>(grown->data()), static_cast<void*>(last->data()));
  BOOST_CHECK_EQUAL((*grown)[99], 'y');
  // Not last: cannot grow, shrink is a harmless success.
  BOOST_CHECK(!a.resize(*first, 200));
  BOOST_CHECK(a.resize(*first, 50));
  // Growing past the chunk moves (realloc copies) and keeps contents.
  auto moved = a.realloc(*grown, 100000);
  BOOST_REQUIRE(moved);
  BOOST_CHECK_EQUAL((*moved)[0], 'y');
  BOOST_CHECK_EQUAL((*moved)[99], 'y');
  // Free of the last allocation rewinds: the next alloc gets the same address.
  char* where = moved->data();
  a.free(*moved);
  auto again = a.alloc<char>(10);
  BOOST_REQUIRE(again);
  BOOST_CHECK_EQUAL(static_cast<void*>(again->data()), static_cast<void*>(where));
  // Free of an older block is a no-op: its bytes stay readable.
  a.free(*first);
  BOOST_CHECK_EQUAL((*first)[0], 'x');
}

BOOST_AUTO_TEST_CASE(reset_free_all) {
  Arena arena(alloy::c_allocator());
  for (int i = 0; i < 1000; ++i) (void)arena.alloc_inline(100, 8);
  BOOST_CHECK_GT(arena.query_capacity(), 0u);
  BOOST_CHECK(arena.reset(ResetMode::free_all()));
  BOOST_CHECK_EQUAL(arena.query_capacity(), 0u);
  BOOST_CHECK_EQUAL(arena.chunk_count(), 0u);
  BOOST_CHECK(arena.alloc_inline(10, 8) != nullptr);  // usable afterwards
}

BOOST_AUTO_TEST_CASE(reset_retain_capacity_consolidates) {
  Arena arena(alloy::c_allocator(), {.first_chunk = 1024});
  for (int i = 0; i < 1000; ++i) (void)arena.alloc_inline(100, 8);
  const std::size_t held = arena.child_bytes();
  BOOST_CHECK_GT(arena.chunk_count(), 1u);
  BOOST_CHECK(arena.reset(ResetMode::retain_capacity()));
  BOOST_CHECK_EQUAL(arena.chunk_count(), 1u);
  BOOST_CHECK_EQUAL(arena.child_bytes(), held);
  // The next round of the same size needs no new chunk.
  for (int i = 0; i < 1000; ++i) (void)arena.alloc_inline(100, 8);
  BOOST_CHECK_EQUAL(arena.chunk_count(), 1u);
  BOOST_CHECK_EQUAL(arena.child_bytes(), held);
}

BOOST_AUTO_TEST_CASE(reset_retain_with_limit) {
  Arena arena(alloy::c_allocator(), {.first_chunk = 1024});
  for (int i = 0; i < 1000; ++i) (void)arena.alloc_inline(100, 8);
  BOOST_CHECK(arena.reset(ResetMode::retain_with_limit(8192)));
  BOOST_CHECK_EQUAL(arena.child_bytes(), 8192u);
  BOOST_CHECK_EQUAL(arena.chunk_count(), 1u);
  // A limit above what is held keeps what is held.
  BOOST_CHECK(arena.reset(ResetMode::retain_with_limit(1 << 30)));
  BOOST_CHECK_EQUAL(arena.child_bytes(), 8192u);
}

BOOST_AUTO_TEST_CASE(retain_reports_failure_when_child_refuses) {
  t::RecordingAllocator child;
  Arena arena(child.allocator(), {.first_chunk = 1024});
  for (int i = 0; i < 100; ++i) (void)arena.alloc_inline(100, 8);
  BOOST_REQUIRE_GT(arena.chunk_count(), 1u);
  // Shrinking the kept chunk to a limit needs nothing new from the child.
  child.refuse(true);
  BOOST_CHECK(arena.reset(ResetMode::retain_with_limit(2048)));
  BOOST_CHECK_EQUAL(arena.child_bytes(), 2048u);
  child.refuse(false);
  for (int i = 0; i < 100; ++i) (void)arena.alloc_inline(100, 8);
  BOOST_REQUIRE_GT(arena.chunk_count(), 1u);
  // Consolidating into one bigger chunk does: the child refuses, reset says
  // so, and the arena is empty but usable.
  child.refuse(true);
  BOOST_CHECK(!arena.reset(ResetMode::retain_capacity()));
  BOOST_CHECK_EQUAL(arena.chunk_count(), 0u);
  BOOST_CHECK_EQUAL(child.live_bytes, 0u);
  BOOST_CHECK(arena.alloc_inline(10, 8) == nullptr);  // child still refusing
  child.refuse(false);
  BOOST_CHECK(arena.alloc_inline(10, 8) != nullptr);
}

// Issue 11: "no ceiling" is alloy::kNoCeiling everywhere (the default); an
// Arena's old spelling, 0, still means none for one release.
BOOST_AUTO_TEST_CASE(no_ceiling_is_k_no_ceiling_and_zero_still_reads_as_none) {
  Arena plain(alloy::c_allocator());
  BOOST_CHECK_EQUAL(plain.ceiling(), alloy::kNoCeiling);
  Arena legacy(alloy::c_allocator(), {.first_chunk = 1024, .ceiling = 0});
  BOOST_CHECK_EQUAL(legacy.ceiling(), alloy::kNoCeiling);
  BOOST_CHECK(legacy.allocator().alloc<char>(64 * 1024));
  legacy.set_ceiling(2048);
  BOOST_CHECK(!legacy.allocator().alloc<char>(64 * 1024));
  legacy.set_ceiling(0);
  BOOST_CHECK_EQUAL(legacy.ceiling(), alloy::kNoCeiling);
  legacy.set_ceiling(alloy::kNoCeiling);
  BOOST_CHECK(legacy.allocator().alloc<char>(64 * 1024));
  BOOST_CHECK(legacy.reset(ResetMode::free_all()));
}

BOOST_AUTO_TEST_CASE(ceiling_is_honoured_and_arena_stays_usable) {
  Arena arena(alloy::c_allocator(), {.first_chunk = 1024, .ceiling = 16 * 1024});
  std::size_t served = 0;
  while (arena.alloc_inline(200, 8) != nullptr) served += 200;
  BOOST_CHECK_LE(arena.child_bytes(), 16u * 1024);
  BOOST_CHECK_GT(served, 10u * 1024);
  BOOST_CHECK(!arena.allocator().alloc<char>(4096));  // null, not abort
  BOOST_CHECK(arena.alloc_inline(1, 1) != nullptr || arena.child_bytes() <= 16 * 1024);
  arena.set_ceiling(64 * 1024);
  BOOST_CHECK(arena.allocator().alloc<char>(4096));
  BOOST_CHECK(arena.reset(ResetMode::free_all()));
  BOOST_CHECK(arena.allocator().alloc<char>(4096));
}

BOOST_AUTO_TEST_CASE(child_out_of_memory_and_huge_requests) {
  Arena arena(alloy::page_allocator());
  BOOST_CHECK(arena.alloc_inline(SIZE_MAX - 8, 8) == nullptr);
  BOOST_CHECK(arena.alloc_inline(std::size_t{1} << 62, 8) == nullptr);
  BOOST_CHECK(!arena.allocator().alloc<std::uint64_t>(SIZE_MAX / 4));
  BOOST_CHECK(arena.alloc_inline(64, 8) != nullptr);
}

BOOST_AUTO_TEST_CASE(destruction_frees_every_chunk) {
  // Under ASan with detect_leaks this also proves nothing leaks.
  for (int round = 0; round < 3; ++round) {
    Arena arena(alloy::page_allocator());
    for (int i = 0; i < 200000; ++i) (void)arena.alloc_inline(24, 8);
  }
}

// Issue 10 (wrong frees across the family): refused, counted and reported.
BOOST_AUTO_TEST_CASE(wrong_frees_are_refused_and_reported) {
  Arena arena(alloy::c_allocator());
  t::check_bump_wrong_frees(arena, "alloy::Arena",
                            [&] { arena.reset(ResetMode::retain_capacity()); }, false);
  // A block of an older chunk is a quiet no-op, never a refusal.
  Arena chunks(alloy::c_allocator(), {.first_chunk = 256});
  auto old = chunks.allocator().alloc<char>(100);
  auto next = chunks.allocator().alloc<char>(1000);  // a new chunk
  BOOST_REQUIRE(old && next);
  BOOST_REQUIRE_GT(chunks.chunk_count(), 1u);
  chunks.allocator().free(*old);
  BOOST_CHECK_EQUAL(chunks.refused_frees(), 0u);
}
