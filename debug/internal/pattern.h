// alloy::debug::internal pattern fill/compare — the byte patterns DebugAllocator
// writes into its blocks and reads back: canary bytes after every live block,
// the freed pattern over every quarantined block (and its canary).
//
// Not a public API: visible to debug/ and tests/debug only.
//
// Cost: fill() and all_are() are O(n) with no branch on the data; from 16 to
// 256 bytes (the sizes that dominate) they are a fixed set of 16-byte
// stores/loads per size tier, the tail ones overlapping, never a loop. GCC
// must not see a fill loop: it would turn it into an inline `rep stos`, which
// made each free measurably slower (see bench/README.md). find_changed() is
// O(n) and meant for reports only (it counts every changed byte). The canary
// helpers are two 8-byte stores/loads at the default 16 canary bytes.
// Thread safety: pure functions on the caller's memory.
//
// Example:
//   namespace di = alloy::debug::internal;
//   di::fill(block, size, di::kFreedByte);
//   if (!di::all_are(block, size, di::kFreedByte)) {
//     di::Mismatch m = di::find_changed(block, size, di::kFreedByte);
//     // m.first is the first changed offset, m.count how many changed
//   }
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace alloy::debug::internal {

inline constexpr std::byte kCanaryByte{0xCA};  // after every live block
inline constexpr std::byte kFreedByte{0xDD};   // over every quarantined block

// Changed bytes in a range: the first one's offset and how many (count 0:
// none changed, and first is 0).
struct Mismatch {
  std::size_t first = 0;
  std::size_t count = 0;
};

namespace pattern_detail {
// 16 bytes as one SSE2/NEON register (GCC and Clang vector extension).
using Vec16 = std::uint64_t __attribute__((vector_size(16)));

inline Vec16 load16(const std::byte* p) {
  Vec16 v;
  std::memcpy(&v, p, 16);
  return v;
}
inline void store16(std::byte* p, Vec16 v) { std::memcpy(p, &v, 16); }
inline Vec16 splat16(std::byte b) {
  const std::uint64_t w = 0x0101010101010101ull * static_cast<std::uint8_t>(b);
  return Vec16{w, w};
}

// All n bytes equal to `expected`, for any n: 32 bytes per step in four
// independent words (GCC -O2 does not vectorise this loop itself).
inline bool all_are_loop(const std::byte* p, std::size_t n, std::byte expected) {
  const std::uint64_t w = 0x0101010101010101ull * static_cast<std::uint8_t>(expected);
  std::uint64_t diff = 0;
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    std::uint64_t a, b, c, d;
    std::memcpy(&a, p + i, 8);
    std::memcpy(&b, p + i + 8, 8);
    std::memcpy(&c, p + i + 16, 8);
    std::memcpy(&d, p + i + 24, 8);
    diff |= (a ^ w) | (b ^ w) | (c ^ w) | (d ^ w);
  }
  for (; i + 8 <= n; i += 8) {
    std::uint64_t a;
    std::memcpy(&a, p + i, 8);
    diff |= a ^ w;
  }
  for (; i < n; ++i) diff |= static_cast<std::uint8_t>(p[i]) ^ (w & 0xff);
  return diff == 0;
}
}  // namespace pattern_detail

// Fills n bytes at p (any alignment) with `byte`: fixed 16-byte stores from
// 16 to 256 bytes, memset otherwise.
[[gnu::always_inline]] inline void fill(std::byte* p, std::size_t n, std::byte byte) {
  using pattern_detail::store16;
  const pattern_detail::Vec16 v = pattern_detail::splat16(byte);
  if (n > 64 && n <= 256) [[likely]] {
    store16(p, v);  // [0, 64) and [n - 64, n)
    store16(p + 16, v);
    store16(p + 32, v);
    store16(p + 48, v);
    store16(p + n - 64, v);
    store16(p + n - 48, v);
    store16(p + n - 32, v);
    store16(p + n - 16, v);
    if (n > 128) {  // and [64, 128), [n - 128, n - 64)
      store16(p + 64, v);
      store16(p + 80, v);
      store16(p + 96, v);
      store16(p + 112, v);
      store16(p + n - 128, v);
      store16(p + n - 112, v);
      store16(p + n - 96, v);
      store16(p + n - 80, v);
    }
  } else if (n >= 16 && n <= 64) {
    store16(p, v);
    store16(p + n - 16, v);
    if (n > 32) {
      store16(p + 16, v);
      store16(p + n - 32, v);
    }
  } else {
    std::memset(p, static_cast<int>(byte), n);
  }
}

// Are all n bytes at p (any alignment) equal to `expected`? Shaped like
// fill(); the word loop outside 16..256 bytes.
[[gnu::always_inline]] inline bool all_are(const std::byte* p, std::size_t n, std::byte expected) {
  using pattern_detail::load16;
  const pattern_detail::Vec16 v = pattern_detail::splat16(expected);
  pattern_detail::Vec16 diff;
  if (n > 64 && n <= 256) [[likely]] {
    diff = ((load16(p) ^ v) | (load16(p + 16) ^ v)) | ((load16(p + 32) ^ v) | (load16(p + 48) ^ v)) |
           ((load16(p + n - 64) ^ v) | (load16(p + n - 48) ^ v)) |
           ((load16(p + n - 32) ^ v) | (load16(p + n - 16) ^ v));
    if (n > 128) {
      diff |= ((load16(p + 64) ^ v) | (load16(p + 80) ^ v)) |
              ((load16(p + 96) ^ v) | (load16(p + 112) ^ v)) |
              ((load16(p + n - 128) ^ v) | (load16(p + n - 112) ^ v)) |
              ((load16(p + n - 96) ^ v) | (load16(p + n - 80) ^ v));
    }
  } else if (n >= 16 && n <= 64) {
    diff = (load16(p) ^ v) | (load16(p + n - 16) ^ v);
    if (n > 32) diff |= (load16(p + 16) ^ v) | (load16(p + n - 32) ^ v);
  } else {
    return pattern_detail::all_are_loop(p, n, expected);
  }
  return (diff[0] | diff[1]) == 0;
}

// The first byte of the n at p that is not `expected`, and how many are not.
// For reports: checks with all_are() first, then walks byte by byte.
Mismatch find_changed(const std::byte* p, std::size_t n, std::byte expected);

// --- canary: `canary_bytes` of kCanaryByte right after a block of `size`.

inline void write_canary(std::byte* block, std::size_t size, std::size_t canary_bytes) {
  static constexpr std::uint64_t kWord = 0xCACACACACACACACAull;  // kCanaryByte x 8
  std::byte* p = block + size;
  if (canary_bytes == 16) {  // the default: two stores
    std::memcpy(p, &kWord, 8);
    std::memcpy(p + 8, &kWord, 8);
  } else {
    std::memset(p, static_cast<int>(kCanaryByte), canary_bytes);
  }
}

// Changed canary bytes, with `first` as an offset from the block's start
// (size + offset in the canary); count 0 if intact.
Mismatch check_canary(const std::byte* block, std::size_t size, std::size_t canary_bytes);

inline bool canary_intact(const std::byte* block, std::size_t size, std::size_t canary_bytes) {
  static constexpr std::uint64_t kWord = 0xCACACACACACACACAull;
  if (canary_bytes == 16) {  // the default: two loads
    std::uint64_t a, b;
    std::memcpy(&a, block + size, 8);
    std::memcpy(&b, block + size + 8, 8);
    return ((a ^ kWord) | (b ^ kWord)) == 0;
  }
  return check_canary(block, size, canary_bytes).count == 0;
}

}  // namespace alloy::debug::internal
