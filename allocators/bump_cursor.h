// alloy::bump_take — the one pointer-bump step every linear allocator shares,
// and bump_free_kind, the one rule they share for a free.
//
// Rounds the cursor up to `align` and takes `len` bytes if they fit before
// `end`; otherwise leaves the cursor alone and returns null so the caller
// can take its slow path (a new chunk, more committed pages, or "full").
//
// Cost: an add, a mask, two compares and a store, inlined. Thread safety: none;
// the cursor belongs to one allocator (the thread-safe fixed buffer uses its
// own CAS loop).
//
// Example:
//   std::uintptr_t cur = base, end = base + size;
//   void* a = alloy::bump_take(cur, end, 24, 8);      // base rounded to 8
//   void* b = alloy::bump_take(cur, end, 100, 64);    // next 64-byte boundary
//   if (b == nullptr) { /* does not fit: slow path */ }
//   cur = base;                                       // reset: rewind the cursor
//   // free(a, 24): bump_free_kind(a, 24, cur) == BumpFree::kOlder (a no-op)
#pragma once

#include <cstddef>
#include <cstdint>

#include "alloy/base/assert.h"

namespace alloy {

[[gnu::always_inline]] inline void* bump_take(std::uintptr_t& cur, std::uintptr_t end,
                                              std::size_t len, std::size_t align) {
  ALLOY_ASSERT_MSG(align != 0 && (align & (align - 1)) == 0,
                   "bump_take: align must be a power of two");
  ALLOY_ASSERT(cur <= end);
  const std::uintptr_t p = (cur + (align - 1)) & ~(std::uintptr_t{align} - 1);
  if (p <= end && len <= end - p) [[likely]] {
    cur = p + len;
    return reinterpret_cast<void*>(p);
  }
  return nullptr;
}

// What a free of [start, start + len) (len > 0, start inside the region the
// cursor runs over) means to a bump cursor at `cur`:
enum class BumpFree : unsigned char {
  kRewind,  // it ends at the cursor: the most recent block, rewind to start
  kOlder,   // it lies below the cursor: an older block, freed by reset only
  kStale,   // it reaches at or above the cursor: freed, rewound or reset
            // already (a double free), or longer than was handed out
};
[[gnu::always_inline]] inline BumpFree bump_free_kind(std::uintptr_t start, std::size_t len,
                                                     std::uintptr_t cur) {
  if (start >= cur || len > cur - start) return BumpFree::kStale;
  return start + len == cur ? BumpFree::kRewind : BumpFree::kOlder;
}

// Applies that rule: rewinds `cur` for the most recent block, leaves it for an
// older one (both true); false for a stale free, which the caller refuses as
// a double free (see refuse_bump_free in wrong_free.h).
[[gnu::always_inline]] inline bool bump_apply_free(std::uintptr_t start, std::size_t len,
                                                   std::uintptr_t& cur) {
  switch (bump_free_kind(start, len, cur)) {
    case BumpFree::kRewind:
      cur = start;
      return true;
    case BumpFree::kOlder:
      return true;
    case BumpFree::kStale:
      break;
  }
  return false;
}

}  // namespace alloy
