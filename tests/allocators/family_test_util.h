// Shared checks for the allocator-family suites: the alignment sweep with
// every block live, random fills that prove live blocks do not overlap, the
// bump-style wrong-free rules. The pattern and the sweep themselves are
// tests/support/pattern.h.
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
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/allocators/wrong_free.h"
#include "tests/support/capture_stderr.h"
#include "tests/support/pattern.h"
#include "tests/support/sweep.h"

namespace alloy::testing {

// The alignment sweep (tests/support/pattern.h) with every block held live,
// freed in reverse (so LIFO allocators rewind).
inline void check_alignments(Allocator a, std::size_t max_align, std::size_t len = 24) {
  BOOST_CHECK_EQUAL(misaligned_count(a, max_align, len, Hold::kAll), 0u);
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

// The wrong-free rules every bump-style allocator shares (issue 10): a
// foreign block, a double free, a block longer than was handed out and a free
// after the allocator dropped everything are refused, counted by
// refused_frees() and reported on stderr as "<name>: refused free of ...;
// called from 0x<ret>"; the cursor never leaves the memory and live blocks
// stay intact. `drop_all` rewinds the allocator to empty (reset, restore).
// `foreign_always`: a pointer in no chunk is refused in every build (single
// buffer), else only in checked builds.
template <class A>
void check_bump_wrong_frees(A& x, const std::string& name, std::function<void()> drop_all,
                            bool foreign_always) {
  Allocator al = x.allocator();
  const Alignment a8 = Alignment::from_log2(3);
  auto ra = al.alloc_bytes(16, a8);
  auto rb = al.alloc_bytes(32, a8);
  BOOST_REQUIRE(ra && rb);
  const Bytes a = *ra, b = *rb;
  fill(a, 1);
  fill(b, 2);
  const std::uintptr_t kRet = 0xbadf00d;
  CaptureStderr err;
  std::size_t refused = x.refused_frees();
  // A foreign block that ends exactly at the cursor: rewinding to it would
  // put the cursor outside the allocator's memory.
  const Bytes spanning(a.data() - 4096, 4096 + static_cast<std::size_t>(b.data() + b.size() - a.data()));
  al.raw_free(spanning, a8, kRet);
  if (foreign_always || kCheckedFrees) ++refused;
  BOOST_CHECK_EQUAL(x.refused_frees(), refused);
  auto rc = al.alloc_bytes(8, a8);
  BOOST_REQUIRE(rc);
  BOOST_CHECK_MESSAGE(rc->data() >= b.data() + b.size(), name << ": cursor left the block");
  BOOST_CHECK(intact(a, 1, a.size()) && intact(b, 2, b.size()));
  al.raw_free(*rc, a8, kRet);  // the last block: rewinds
  BOOST_CHECK_EQUAL(x.refused_frees(), refused);
  // Double free of the last block.
  al.raw_free(b, a8, kRet);
  BOOST_CHECK_EQUAL(x.refused_frees(), refused);
  al.raw_free(b, a8, kRet);
  BOOST_CHECK_EQUAL(x.refused_frees(), ++refused);
  // An older block with a length past the cursor.
  al.raw_free(Bytes(a.data(), a.size() + 64), a8, kRet);
  BOOST_CHECK_EQUAL(x.refused_frees(), ++refused);
  BOOST_CHECK(intact(a, 1, a.size()));
  // A pointer in no chunk at all.
  alignas(16) std::byte local[32];
  al.raw_free(Bytes(local, sizeof local), a8, kRet);
  if (foreign_always || kCheckedFrees) ++refused;
  BOOST_CHECK_EQUAL(x.refused_frees(), refused);
  // After everything was dropped, the old blocks are stale.
  drop_all();
  al.raw_free(a, a8, kRet);
  BOOST_CHECK_EQUAL(x.refused_frees(), ++refused);
  // Still usable, and an older block's free is a quiet no-op.
  auto rd = al.alloc_bytes(16, a8);
  auto re = al.alloc_bytes(16, a8);
  BOOST_REQUIRE(rd && re);
  al.raw_free(*rd, a8, kRet);
  al.raw_free(*re, a8, kRet);
  BOOST_CHECK_EQUAL(x.refused_frees(), refused);
  const std::string text = err.text();
  BOOST_CHECK_MESSAGE(text.find(name + ": refused free of") != std::string::npos, text);
  BOOST_CHECK_MESSAGE(text.find("double free") != std::string::npos, text);
  if (foreign_always || kCheckedFrees) {
    BOOST_CHECK_MESSAGE(text.find("foreign pointer") != std::string::npos, text);
  }
  BOOST_CHECK_MESSAGE(text.find("called from " + hex_address(kRet)) != std::string::npos, text);
}

}  // namespace alloy::testing
