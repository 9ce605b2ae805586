#define BOOST_TEST_MODULE block_allocator
#include <boost/test/unit_test.hpp>

#include <cstring>
#include <set>
#include <string>

#include "alloy/allocators/block_allocator.h"
#include "tests/allocators/family_test_util.h"

using alloy::Alignment;
using alloy::BlockAllocator;
namespace t = alloy::testing;

namespace {
alignas(65536) std::byte g_storage[1 << 20];
}  // namespace

BOOST_AUTO_TEST_CASE(layout_fits_bitmap_and_blocks_in_the_buffer) {
  BlockAllocator blocks({g_storage, sizeof(g_storage)}, 256);
  auto s = blocks.stats();
  BOOST_CHECK_EQUAL(s.block_size, 256u);
  BOOST_CHECK_GT(s.total_blocks, 4000u);
  BOOST_CHECK_LE(s.total_blocks * 256 + (s.total_blocks + 63) / 64 * 8, sizeof(g_storage));
  BOOST_CHECK_EQUAL(s.used_blocks, 0u);
  BOOST_CHECK_EQUAL(s.utilization, 0.0);
  BlockAllocator none({g_storage, 10}, 256);
  BOOST_CHECK_EQUAL(none.stats().total_blocks, 0u);
  BOOST_CHECK(none.alloc_block() == nullptr);
}

BOOST_AUTO_TEST_CASE(block_alignment_up_to_4k) {
  for (std::size_t bs = 1; bs <= 65536; bs *= 2) {
    BlockAllocator blocks({g_storage, sizeof(g_storage)}, bs);
    const std::size_t want = std::min<std::size_t>(bs, 4096);
    BOOST_CHECK_EQUAL(blocks.block_alignment().bytes(), want);
    for (int i = 0; i < 8; ++i) {
      void* p = blocks.alloc_block();
      BOOST_REQUIRE(p != nullptr);
      BOOST_CHECK_EQUAL(reinterpret_cast<std::uintptr_t>(p) % want, 0u);
    }
    auto through = blocks.allocator().alloc_bytes(bs, blocks.block_alignment());
    BOOST_CHECK(through);
    BOOST_CHECK(!blocks.allocator().alloc_bytes(bs + 1, Alignment{}));
  }
  BlockAllocator odd({g_storage, 4096}, 24);  // 24 = 8 * 3: 8-byte aligned blocks
  BOOST_CHECK_EQUAL(odd.block_alignment().bytes(), 8u);
}

BOOST_AUTO_TEST_CASE(first_free_search_and_free_by_index) {
  BlockAllocator blocks({g_storage, 64 * 1024}, 64);
  const std::size_t total = blocks.stats().total_blocks;
  for (std::size_t i = 0; i < total; ++i) BOOST_REQUIRE_EQUAL(blocks.alloc_index(), i);
  BOOST_CHECK_EQUAL(blocks.alloc_index(), BlockAllocator::kNone);  // full
  BOOST_CHECK(blocks.alloc_block() == nullptr);
  BOOST_CHECK_EQUAL(blocks.stats().utilization, 1.0);
  // Free a few scattered ones: allocation returns the lowest free index first.
  BOOST_CHECK(blocks.free_index(700));
  BOOST_CHECK(blocks.free_index(130));
  BOOST_CHECK(blocks.free_index(5));
  BOOST_CHECK_EQUAL(blocks.alloc_index(), 5u);
  BOOST_CHECK_EQUAL(blocks.alloc_index(), 130u);
  BOOST_CHECK_EQUAL(blocks.alloc_index(), 700u);
  BOOST_CHECK_EQUAL(blocks.alloc_index(), BlockAllocator::kNone);
  // index_of / block_at round trip.
  BOOST_CHECK_EQUAL(blocks.index_of(blocks.block_at(42)), 42u);
  BOOST_CHECK_EQUAL(blocks.index_of(static_cast<std::byte*>(blocks.block_at(42)) + 1),
                    BlockAllocator::kNone);
}

BOOST_AUTO_TEST_CASE(random_alloc_free_no_overlap_and_stats) {
  BlockAllocator blocks({g_storage, sizeof(g_storage)}, 96);
  const std::size_t total = blocks.stats().total_blocks;
  std::mt19937 rng(3);
  std::vector<std::pair<std::size_t, std::size_t>> live;  // index, tag
  std::size_t tag = 0;
  for (int step = 0; step < 30000; ++step) {
    if (live.empty() || rng() % 5 < 3) {
      const std::size_t i = blocks.alloc_index();
      if (i == BlockAllocator::kNone) {
        BOOST_REQUIRE_EQUAL(live.size(), total);
        continue;
      }
      t::fill(alloy::Bytes(static_cast<std::byte*>(blocks.block_at(i)), 96), ++tag);
      live.push_back({i, tag});
    } else {
      const std::size_t k = rng() % live.size();
      auto [i, tg] = live[k];
      BOOST_REQUIRE(t::intact(alloy::Bytes(static_cast<std::byte*>(blocks.block_at(i)), 96), tg, 96));
      BOOST_REQUIRE(blocks.free_index(i));
      live[k] = live.back();
      live.pop_back();
    }
  }
  for (auto [i, tg] : live) {
    BOOST_REQUIRE(t::intact(alloy::Bytes(static_cast<std::byte*>(blocks.block_at(i)), 96), tg, 96));
  }
  auto s = blocks.stats();
  BOOST_CHECK_EQUAL(s.used_blocks, live.size());
  BOOST_CHECK_EQUAL(s.free_blocks, total - live.size());
  BOOST_CHECK_CLOSE(s.utilization, static_cast<double>(live.size()) / total, 1e-9);
}

BOOST_AUTO_TEST_CASE(invalid_frees_are_refused_and_counted) {
  BlockAllocator blocks({g_storage, 8192}, 128);
  void* p = blocks.alloc_block();
  BOOST_REQUIRE(p != nullptr);
  BOOST_CHECK(blocks.free_block(p));
  BOOST_CHECK(!blocks.free_block(p));  // double free: reported to stderr
  blocks.set_report_to_stderr(false);
  BOOST_CHECK(!blocks.free_index(1u << 20));                    // out of range
  BOOST_CHECK(!blocks.free_block(static_cast<char*>(p) + 3));   // not a block start
  int local;
  BOOST_CHECK(!blocks.free_block(&local));
  BOOST_CHECK_EQUAL(blocks.invalid_frees(), 4u);
  BOOST_CHECK_EQUAL(blocks.stats().used_blocks, 0u);
  BOOST_CHECK(blocks.alloc_block() == p);  // state intact
}

BOOST_AUTO_TEST_CASE(handle_round_trip_and_reset) {
  BlockAllocator blocks({g_storage, 16384}, 512);
  alloy::Allocator a = blocks.allocator();
  auto v = a.alloc<std::uint32_t>(100);
  BOOST_REQUIRE(v);
  for (std::uint32_t i = 0; i < 100; ++i) (*v)[i] = i;
  auto r = a.realloc(*v, 128);  // still within 512 bytes: in place
  BOOST_REQUIRE(r);
  BOOST_CHECK_EQUAL(r->data(), v->data());
  BOOST_CHECK(!a.realloc(*r, 200));  // 800 bytes: cannot, old kept
  for (std::uint32_t i = 0; i < 100; ++i) BOOST_CHECK_EQUAL((*r)[i], i);
  a.free(*r);
  BOOST_CHECK_EQUAL(blocks.stats().used_blocks, 0u);
  while (blocks.alloc_block() != nullptr) {}
  blocks.reset();
  BOOST_CHECK_EQUAL(blocks.stats().used_blocks, 0u);
  BOOST_CHECK(blocks.alloc_block() != nullptr);
}

// Issue 10 (wrong frees across the family): through the handle, every wrong
// free kind is refused and reported with the caller's address in hex, and no
// block is handed out twice afterwards.
BOOST_AUTO_TEST_CASE(handle_wrong_frees_are_reported_and_never_reuse_a_live_block) {
  BlockAllocator blocks({g_storage, 4096}, 64);
  alloy::Allocator a = blocks.allocator();
  auto* x = static_cast<std::byte*>(a.raw_alloc(64, Alignment::from_log2(3), 0));
  auto* y = static_cast<std::byte*>(a.raw_alloc(64, Alignment::from_log2(3), 0));
  BOOST_REQUIRE(x && y);
  t::CaptureStderr err;
  a.raw_free(alloy::Bytes(x, 65), Alignment::from_log2(3), 0xb10c01);   // wrong size
  a.raw_free(alloy::Bytes(x + 8, 8), Alignment::from_log2(3), 0xb10c02);  // interior
  alignas(64) std::byte local[64];
  a.raw_free(alloy::Bytes(local, 64), Alignment::from_log2(3), 0xb10c03);  // foreign
  a.raw_free(alloy::Bytes(y, 64), Alignment::from_log2(3), 0xb10c04);
  a.raw_free(alloy::Bytes(y, 64), Alignment::from_log2(3), 0xb10c05);  // double
  BOOST_CHECK_EQUAL(blocks.invalid_frees(), 4u);
  BOOST_CHECK(blocks.is_allocated(blocks.index_of(x)));
  const std::string text = err.text();
  for (const char* needle : {"wrong size", "interior", "foreign pointer", "double free",
                             "called from 0xb10c01", "called from 0xb10c02",
                             "called from 0xb10c03", "called from 0xb10c05"}) {
    BOOST_CHECK_MESSAGE(text.find(needle) != std::string::npos, needle << " in " << text);
  }
  std::set<void*> live{x};
  while (void* p = blocks.alloc_block()) BOOST_REQUIRE(live.insert(p).second);
  BOOST_CHECK_EQUAL(live.size(), blocks.stats().total_blocks);
}
