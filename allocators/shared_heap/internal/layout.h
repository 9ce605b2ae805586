// The on-shm format of alloy::SharedHeap (format version kVersion): the
// header at offset 0, the block headers of the chain, the free-list links in
// free payloads, and the raw accessors that turn offsets into pointers.
// Not a public API (visible to allocators/shared_heap and its tests only).
//
// Layout of the mapping (every position is an offset from its start):
//
//   [Header | block-start bitmap | blocks ... | sentinel]
//
// Blocks are a chain in address order. Each starts with a 32-byte BlockHeader
// whose first word holds the block's size (a multiple of 16) and a "live"
// bit; the chain ends at a size-0 live sentinel. Free blocks carry two list
// links (offsets) in their payload and sit on one of kBins segregated lists:
// exact 16-byte size classes up to 1 KiB, then one list per power of two.
// Free always coalesces with both neighbours, so two free blocks are never
// adjacent. The bitmap has one bit per 16-byte granule, set exactly at the
// starts of live blocks: that makes "is this a live block of this heap?" an
// exact O(1) question, which is how wrong frees and double frees are refused.
//
// Every field below is part of the format: changing a struct, a constant or
// the meaning of a bit is a new kVersion (layout_signature() also catches a
// change of the ABI-dependent sizes). The invariants are static_asserts below.
//
// Cost: every accessor is an inline add or mask, O(1); checksum_of() is
// O(sizeof(Header)). Thread safety: plain data; the mutable fields are guarded
// by Header::mutex (see recovery.h), `state` is also read with acquire loads.
//
// Example:
//   Header* h = ...;                          // the start of the mapping
//   BlockHeader* b = block(h, h->heap_begin);  // the first block of the chain
//   if (!is_live(b)) { FreeLinks* l = links(h, h->heap_begin); ... }
#pragma once

#include <pthread.h>

#include <bit>
#include <cstddef>
#include <cstdint>

#include "alloy/allocators/shared_heap/shared_heap.h"

namespace alloy::shared_heap_internal {

using u8 = std::uint8_t;
using u32 = std::uint32_t;
using u64 = std::uint64_t;

constexpr u64 kMagic = 0x50414548594f4c41ull;  // "ALOYHEAP" little-endian
constexpr u32 kVersion = 1;
constexpr u64 kGranule = 16;
constexpr u64 kBlockHeader = 32;
constexpr u64 kMinBlock = kBlockHeader + 16;  // room for the two free links
constexpr u64 kLiveBit = 1;
constexpr u64 kFlagMask = kGranule - 1;
constexpr u64 kSmallMax = 1024;  // largest block size with an exact class
constexpr int kSmallBins = static_cast<int>((kSmallMax - kMinBlock) / kGranule) + 1;
constexpr int kBins = 128;

enum State : u32 { kStateInitializing = 0, kStateReady = 1, kStateCorrupt = 2 };
enum Op : u32 { kOpNone = 0, kOpAlloc = 1, kOpFree = 2 };

struct BlockHeader {
  u64 size_flags;   // block bytes (multiple of 16) | kLiveBit
  u64 prev_size;    // size of the block just below (a cache; rebuilt)
  u64 length;       // live: the length the caller asked for
  u32 owner;        // live: pid of the allocating process
  u8 align_log2;    // live: alignment asked for
  u8 reserved[3];
};
static_assert(sizeof(BlockHeader) == kBlockHeader);

struct FreeLinks {
  u64 next;
  u64 prev;
};

struct Intent {
  u32 op;
  u32 pid;
  u64 block;
};

struct ProcessSlot {
  std::int32_t pid;
  u32 reserved;
};

struct RootSlot {
  char name[SharedHeap::kRootNameMax + 1];
  u64 offset;
  u32 used;
  u32 reserved;
};

struct Counters {
  u64 allocs, frees, failed_allocs, rejected_frees, recoveries;
  u64 rolled_back_allocs, rolled_forward_frees, list_repairs;
  u64 bytes_in_use, payload_bytes, live_blocks, peak_bytes_in_use;
};

struct Header {
  // Immutable after create; covered by `checksum`.
  u64 magic;
  u32 version;
  u32 header_bytes;
  u32 layout;  // sizes of the ABI-dependent pieces, see layout_signature()
  u32 granule;
  u64 mapping_bytes;
  u64 bitmap_offset;
  u64 bitmap_bytes;
  u64 heap_begin;
  u64 heap_end;  // offset of the sentinel block
  u64 checksum;
  // Mutable, under `mutex` (state is also read without it).
  u32 state;
  u32 doomed;
  pthread_mutex_t mutex;
  u64 cap;
  Counters c;
  Intent intent;
  u64 bin_mask[kBins / 64];
  u64 bins[kBins];
  ProcessSlot slots[SharedHeap::kProcessSlots];
  RootSlot roots[SharedHeap::kRootSlots];
};

constexpr u32 layout_signature() {
  return static_cast<u32>(sizeof(pthread_mutex_t)) << 20 |
         static_cast<u32>(sizeof(BlockHeader)) << 12 | static_cast<u32>(kBins) << 4 |
         static_cast<u32>(SharedHeap::kRootSlots / 4);
}

inline u64 checksum_of(const Header* h) {
  // FNV-1a over the immutable prefix after the magic (which is stored last,
  // with release order, to publish a fully initialised header).
  const auto* p = reinterpret_cast<const unsigned char*>(h);
  u64 x = 0xcbf29ce484222325ull;
  for (std::size_t i = offsetof(Header, version); i < offsetof(Header, checksum); ++i) {
    x = (x ^ p[i]) * 0x100000001b3ull;
  }
  return x;
}

constexpr u64 round_up(u64 v, u64 to) { return (v + to - 1) / to * to; }

// ---- Invariants of the format, as arithmetic ----

// Block sizes are multiples of the granule and the flag bits sit below it.
static_assert((kGranule & (kGranule - 1)) == 0 && kLiveBit < kGranule);
static_assert(kFlagMask == kGranule - 1 && (kLiveBit & ~kFlagMask) == 0);
// A block header keeps its payload granule-aligned; a free block holds its links.
static_assert(kBlockHeader % kGranule == 0);
static_assert(kMinBlock == kBlockHeader + sizeof(FreeLinks) && kMinBlock % kGranule == 0);
// The exact classes cover [kMinBlock, kSmallMax] one granule apart; the
// power-of-two bins start at 2^10 = kSmallMax and all fit in bin_mask.
static_assert(kSmallMax == 1024 && (kSmallMax - kMinBlock) % kGranule == 0);
static_assert(kBins % 64 == 0);
// The largest block (a whole kMaxCapacity heap) still gets a bin of its own
// power of two: kSmallBins + (log2(size) - 10) < kBins.
static_assert(kSmallBins + (std::bit_width(SharedHeap::kMaxCapacity) - 1 - 10) < kBins);
// Every word the chain commits to is an aligned 8-byte store.
static_assert(offsetof(BlockHeader, size_flags) == 0 && alignof(BlockHeader) == 8);
static_assert(offsetof(Intent, op) % alignof(u32) == 0 && offsetof(Intent, block) % 8 == 0);
// The checksum covers the immutable prefix: version .. heap_end.
static_assert(offsetof(Header, magic) == 0 && offsetof(Header, version) == 8);
static_assert(offsetof(Header, checksum) == offsetof(Header, heap_end) + sizeof(u64));
static_assert(offsetof(Header, state) > offsetof(Header, checksum));
// The bitmap starts on a cache line after the header (init_header rounds to 64).
static_assert(round_up(sizeof(Header), 64) >= sizeof(Header));
// Root names are NUL-terminated inside their slot.
static_assert(sizeof(RootSlot::name) == SharedHeap::kRootNameMax + 1);
// The largest alignment is a power of two >= the granule, and its log2 fits
// BlockHeader::align_log2.
static_assert(std::has_single_bit(SharedHeap::kMaxAlignment));
static_assert(SharedHeap::kMaxAlignment % kGranule == 0);
static_assert(std::bit_width(SharedHeap::kMaxAlignment) - 1 <= 0xff);

// ---- Raw access to the mapping ----

inline std::byte* base_of(Header* h) { return reinterpret_cast<std::byte*>(h); }
inline BlockHeader* block(Header* h, u64 off) {
  return reinterpret_cast<BlockHeader*>(base_of(h) + off);
}
inline FreeLinks* links(Header* h, u64 off) {
  return reinterpret_cast<FreeLinks*>(base_of(h) + off + kBlockHeader);
}
inline u64 size_of(const BlockHeader* b) { return b->size_flags & ~kFlagMask; }
inline bool is_live(const BlockHeader* b) { return (b->size_flags & kLiveBit) != 0; }

// Is the block at `off` plausibly well formed (a size that stays in the heap)?
inline bool sane_size(const Header* h, u64 off, u64 s) {
  return s >= kMinBlock && s % kGranule == 0 && off < h->heap_end && s <= h->heap_end - off;
}

// The commit point of every chain change: ordered after all earlier writes.
inline void commit(u64* word, u64 value) { __atomic_store_n(word, value, __ATOMIC_RELEASE); }

}  // namespace alloy::shared_heap_internal
