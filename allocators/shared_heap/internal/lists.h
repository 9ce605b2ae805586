// The caches derived from the block chain: the live-block bitmap (one bit per
// granule, set exactly at the starts of live blocks) and the kBins segregated
// free lists with their non-empty mask. Not a public API (allocators/
// shared_heap and its tests). Every step through a list is checked
// (valid_listed), since the links live in free payloads a buffer overrun can
// reach; a damaged list is reported (false / kDamagedList), never followed.
//
// Cost: bitmap ops, bin_push and bin_remove O(1); find_free O(1) for exact
// classes, a scan of one power-of-two bin otherwise, plus a mask search.
// Thread safety: none of their own; call with Header::mutex held (HeapLock).
//
// Example:
//   u64 off = find_free(h, need);
//   if (off != 0 && off != kDamagedList && bin_remove(h, off)) { ... use it ... }
#pragma once

#include "alloy/allocators/shared_heap/internal/layout.h"

namespace alloy::shared_heap_internal {

// ---- The live-block bitmap ----

inline u8* bitmap(Header* h) { return reinterpret_cast<u8*>(base_of(h) + h->bitmap_offset); }
inline u64 granule_index(const Header* h, u64 off) { return (off - h->heap_begin) / kGranule; }
inline bool bit_test(Header* h, u64 off) {
  u64 i = granule_index(h, off);
  return (bitmap(h)[i / 8] >> (i % 8)) & 1;
}
inline void bit_set(Header* h, u64 off) {
  u64 i = granule_index(h, off);
  bitmap(h)[i / 8] = static_cast<u8>(bitmap(h)[i / 8] | (1u << (i % 8)));
}
inline void bit_clear(Header* h, u64 off) {
  u64 i = granule_index(h, off);
  bitmap(h)[i / 8] = static_cast<u8>(bitmap(h)[i / 8] & ~(1u << (i % 8)));
}

// ---- Free lists ----

constexpr int bin_of(u64 size) {
  if (size <= kSmallMax) return static_cast<int>((size - kMinBlock) / kGranule);
  int lg = 63 - __builtin_clzll(size);  // >= 10
  int b = kSmallBins + (lg - 10);
  return b < kBins ? b : kBins - 1;
}

// Exact classes end at kSmallMax; the next size opens the first power-of-two bin.
static_assert(bin_of(kMinBlock) == 0 && bin_of(kSmallMax) == kSmallBins - 1);
static_assert(bin_of(kSmallMax + kGranule) == kSmallBins);
static_assert(bin_of(2 * kSmallMax) == kSmallBins + 1);

inline void bin_push(Header* h, u64 off) {
  int b = bin_of(size_of(block(h, off)));
  FreeLinks* l = links(h, off);
  l->next = h->bins[b];
  l->prev = 0;
  if (h->bins[b] != 0) links(h, h->bins[b])->prev = off;
  h->bins[b] = off;
  h->bin_mask[b / 64] |= u64{1} << (b % 64);
}

// Could `x` be a free block on list `bin`? Guards every step through the
// lists, which live in free payloads a buffer overrun can reach.
inline bool valid_listed(Header* h, u64 x, int bin) {
  if (x < h->heap_begin || x >= h->heap_end || (x - h->heap_begin) % kGranule != 0) {
    return false;
  }
  const BlockHeader* b = block(h, x);
  return !is_live(b) && sane_size(h, x, size_of(b)) && bin_of(size_of(b)) == bin;
}

// Unlinks a free block; false (and nothing changed) if its neighbours on the
// list do not point back at it: the lists were damaged, and need repair().
[[nodiscard]] inline bool bin_remove(Header* h, u64 off) {
  int b = bin_of(size_of(block(h, off)));
  FreeLinks* l = links(h, off);
  if (l->next != 0 && (!valid_listed(h, l->next, b) || links(h, l->next)->prev != off)) {
    return false;
  }
  if (l->prev != 0 ? (!valid_listed(h, l->prev, b) || links(h, l->prev)->next != off)
                   : h->bins[b] != off) {
    return false;
  }
  if (l->prev != 0) links(h, l->prev)->next = l->next;
  else h->bins[b] = l->next;
  if (l->next != 0) links(h, l->next)->prev = l->prev;
  if (h->bins[b] == 0) h->bin_mask[b / 64] &= ~(u64{1} << (b % 64));
  return true;
}

constexpr u64 kDamagedList = ~u64{0};

// A free block of at least `need` bytes, 0 if there is none, or kDamagedList.
inline u64 find_free(Header* h, u64 need) {
  int b = bin_of(need);
  if (b < kSmallBins) {
    if (h->bins[b] != 0) return valid_listed(h, h->bins[b], b) ? h->bins[b] : kDamagedList;
  } else {
    for (u64 off = h->bins[b]; off != 0; off = links(h, off)->next) {
      if (!valid_listed(h, off, b)) return kDamagedList;
      if (size_of(block(h, off)) >= need) return off;
    }
  }
  // Any block in a higher bin is big enough.
  for (int i = b + 1; i < kBins;) {
    u64 mask = h->bin_mask[i / 64] >> (i % 64);
    if (mask == 0) {
      i = (i / 64 + 1) * 64;
      continue;
    }
    i += __builtin_ctzll(mask);
    if (i < kBins) return valid_listed(h, h->bins[i], i) ? h->bins[i] : kDamagedList;
  }
  return 0;
}

}  // namespace alloy::shared_heap_internal
