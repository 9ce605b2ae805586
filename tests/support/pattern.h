// The byte pattern every suite writes into a block and checks later (contents
// kept across realloc, no overlap between live blocks, nothing written after
// a free), and the walk over alignments 1 B .. max, in one place
// (tests/support/sweep.h runs the alignment sweep over a handle with them).
//
// pattern_byte(seed, i) is a function of the block's seed and the byte's
// offset only, so a block moved by realloc still holds the same pattern, and
// two blocks with different seeds disagree within a few bytes. Coverage
// thins the pattern for big blocks: every `stride`-th byte, and with `edge`
// only the first and last `edge` bytes of blocks longer than 2 * edge (a
// check reads the same offsets a fill of the same length wrote).
//
// Cost: linear in the bytes covered. Thread safety: pure functions on the
// caller's memory; any thread.
//
// Example:
//   alloy::testing::fill(p, n, /*seed=*/7);
//   ... realloc p to m ...
//   BOOST_TEST(alloy::testing::intact(q, std::min(n, m), 7));
//   alloy::testing::for_each_alignment(64 * 1024, [&](alloy::Alignment al) { ... });
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "alloy/alloc_iface/alignment.h"

namespace alloy::testing {

struct Coverage {
  std::size_t stride = 1;  // every stride-th byte
  std::size_t edge = 0;    // >0: blocks over 2 * edge get only their first and last edge bytes
};

inline std::byte pattern_byte(std::uintptr_t seed, std::size_t i) {
  return static_cast<std::byte>((seed * 131 + i * 7 + (i >> 8) + 1) & 0xff);
}

namespace detail {
// Calls f(i) for every offset of an n-byte block that `c` covers.
template <class F>
bool each_covered(std::size_t n, Coverage c, F&& f) {
  const bool edges = c.edge != 0 && n > 2 * c.edge;
  for (std::size_t i = 0; i < n; i += c.stride) {
    if (edges && i >= c.edge && i < n - c.edge) i = n - c.edge;
    if (!f(i)) return false;
  }
  return true;
}
}  // namespace detail

inline void fill(void* p, std::size_t n, std::uintptr_t seed, Coverage c = {}) {
  auto* b = static_cast<std::byte*>(p);
  detail::each_covered(n, c, [&](std::size_t i) {
    b[i] = pattern_byte(seed, i);
    return true;
  });
}
inline void fill(std::span<std::byte> b, std::uintptr_t seed) { fill(b.data(), b.size(), seed); }

// True if the covered bytes of [p, p + n) still hold fill(p, n, seed, c).
inline bool intact(const void* p, std::size_t n, std::uintptr_t seed, Coverage c = {}) {
  const auto* b = static_cast<const std::byte*>(p);
  return detail::each_covered(n, c, [&](std::size_t i) { return b[i] == pattern_byte(seed, i); });
}
// The first min(len, b.size()) bytes of b.
inline bool intact(std::span<const std::byte> b, std::uintptr_t seed, std::size_t len) {
  return intact(b.data(), len < b.size() ? len : b.size(), seed);
}
inline bool intact(std::span<std::byte> b, std::uintptr_t seed, std::size_t len) {
  return intact(std::span<const std::byte>(b), seed, len);
}

// f(Alignment) for every power of two from 1 byte to max_bytes.
template <class F>
void for_each_alignment(std::size_t max_bytes, F&& f) {
  for (std::size_t bytes = 1; bytes != 0 && bytes <= max_bytes; bytes *= 2) {
    f(*Alignment::from_bytes(bytes));
  }
}

}  // namespace alloy::testing
