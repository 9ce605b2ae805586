// The pseudo-random generator of the comparison workloads (xorshift64*):
// deterministic from its seed, so every allocator sees the same sizes and
// the same frees, and frag_holes can replay bigfrag exactly.
//
// Cost: a few shifts, xors and one multiply per draw; no allocation.
// Thread safety: none; one Rng per thread.
//
// Example:
//   alloy::bench::Rng r(42);
//   std::size_t size = 16 + r.below(240);   // 16..255
//   void* p = malloc(size);
//   if (r.below(10) != 0) free(p);          // frees 90%
#pragma once

#include <cstddef>
#include <cstdint>

namespace alloy::bench {

struct Rng {
  std::uint64_t s;
  explicit Rng(std::uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  std::uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 2685821657736338717ull;
  }
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(next() % n); }
};

}  // namespace alloy::bench
