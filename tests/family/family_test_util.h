// Shared checks for the allocator-family suites: alignment sweeps, random
// fills that prove live blocks do not overlap, contents kept across realloc.
//
// Cost: linear in the bytes checked. Thread safety: call from the test thread
// (Boost.Test assertions are not thread-safe).
//
// Example:
//   alloy::Bytes b = *a.alloc_bytes(64, alloy::Alignment{});
//   alloy::testing::fill(b, /*block=*/3);
//   ... other allocations ...
//   BOOST_TEST(alloy::testing::intact(b, 3, b.size()));   // nobody overwrote it
//   a.free_bytes(b, alloy::Alignment{});
#pragma once

#include <boost/test/unit_test.hpp>

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "alloy/alloc_iface/allocator.h"

namespace alloy::testing {

inline std::byte pattern_byte(std::size_t block, std::size_t i) {
  return static_cast<std::byte>((block * 131 + i * 7 + 1) & 0xff);
}

inline void fill(Bytes b, std::size_t block) {
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = pattern_byte(block, i);
}

inline bool intact(Bytes b, std::size_t block, std::size_t len) {
  for (std::size_t i = 0; i < len && i < b.size(); ++i) {
    if (b[i] != pattern_byte(block, i)) return false;
  }
  return true;
}

// Allocates 1 B..max_align aligned blocks, checks alignment, writes them all,
// then verifies and frees them in reverse (so LIFO allocators rewind).
inline void check_alignments(Allocator a, std::size_t max_align, std::size_t len = 24) {
  std::vector<std::pair<Bytes, Alignment>> blocks;
  std::size_t n = 0;
  for (std::size_t align = 1; align <= max_align; align *= 2, ++n) {
    const Alignment al = *Alignment::from_bytes(align);
    auto r = a.alloc_bytes(len, al);
    BOOST_REQUIRE_MESSAGE(r.ok(), "alignment " << align);
    BOOST_CHECK_MESSAGE(al.check(r->data()), "alignment " << align);
    fill(*r, n);
    blocks.push_back({*r, al});
  }
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    BOOST_CHECK_MESSAGE(intact(blocks[i].first, i, len), "block " << i);
  }
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) {
    a.free_bytes(it->first, it->second);
  }
}

// Allocates `count` random-sized blocks, fills each with its own pattern and
// checks every block afterwards: any overlap would have clobbered a pattern.
// Returns the blocks (caller frees or resets).
inline std::vector<Bytes> check_no_overlap(Allocator a, std::size_t count,
                                           std::size_t max_len, unsigned seed = 42,
                                           Alignment alignment = Alignment::from_log2(3)) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::size_t> len_dist(1, max_len);
  std::vector<Bytes> blocks;
  for (std::size_t i = 0; i < count; ++i) {
    auto r = a.alloc_bytes(len_dist(rng), alignment);
    if (!r) break;
    fill(*r, i);
    blocks.push_back(*r);
  }
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    BOOST_REQUIRE_MESSAGE(intact(blocks[i], i, blocks[i].size()), "block " << i << " clobbered");
  }
  return blocks;
}

}  // namespace alloy::testing
