// alloy::BlockAllocator — equal-size blocks over a caller's buffer, tracked
// by a bitmap.
//
// The buffer is split once into a bitmap (one bit per block, 1 = free) and
// the blocks. alloc finds the first free block a 64-bit word at a time
// (skip full words, then std::countr_zero), starting from a hint that is the
// lowest word that can hold a free bit; free sets the bit again, by index
// or by pointer. A free of a block that is not allocated (double free,
// foreign pointer, interior or misaligned pointer, an index out of range)
// and, through the handle, a length larger than the block (wrong size) is
// REFUSED in every build — exact, through the bitmap: the bit is not touched,
// so no block is ever handed out twice — counted (invalid_frees()) and
// reported to stderr with the caller's return address in hex. Not caught: a
// double free after the block was handed out again (it frees the new owner's
// block). stats() gives counts and
// utilization. Blocks are aligned to the largest power of two dividing the
// block size (at most 4 KiB); through the handle, requests up to the block
// size with at most that alignment are served, others get null.
//
// Optional entries: alloc_at_least reports block_size(); owns() is the
// handle's owns; no zeroed entry.
//
// Cost: alloc scans words from the hint (O(1) amortised when blocks are
// freed in bulk or mostly at the end; O(words) worst case); free is O(1).
// Bitmap overhead: 1 bit per block. Thread safety: none.
//
// Example:
//   alignas(4096) static std::byte arena[1 << 20];
//   alloy::BlockAllocator blocks(arena, 256);            // ~4000 blocks of 256 B
//   std::size_t i = blocks.alloc_index();                // or blocks.allocator()
//   if (i != alloy::BlockAllocator::kNone) use(blocks.block_at(i));
//   blocks.free_index(i);
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

#include "alloy/alloc_iface/allocator.h"

namespace alloy {

class BlockAllocator {
 public:
  static constexpr std::size_t kNone = SIZE_MAX;

  struct Stats {
    std::size_t block_size = 0;
    std::size_t total_blocks = 0;
    std::size_t used_blocks = 0;
    std::size_t free_blocks = 0;
    double utilization = 0.0;  // used / total, 0 when there are no blocks
  };

  // `block_size` > 0. A buffer too small for one block gives zero blocks.
  BlockAllocator(Bytes buffer, std::size_t block_size);
  BlockAllocator(const BlockAllocator&) = delete;
  BlockAllocator& operator=(const BlockAllocator&) = delete;

  Allocator allocator();

  // Index of a newly allocated block, or kNone when every block is in use.
  std::size_t alloc_index();
  void* alloc_block() {
    const std::size_t i = alloc_index();
    return i == kNone ? nullptr : block_at(i);
  }
  // False (and a report) if `index` is out of range or not allocated. The
  // report names the caller's call (ALLOY_HELPER), or `ret_addr`.
  ALLOY_HELPER bool free_index(std::size_t index) {
    return free_index(index, ALLOY_RETURN_ADDRESS());
  }
  bool free_index(std::size_t index, std::uintptr_t ret_addr);
  ALLOY_HELPER bool free_block(const void* p) { return free_block(p, ALLOY_RETURN_ADDRESS()); }
  bool free_block(const void* p, std::uintptr_t ret_addr);
  // As free_block, refusing a `len` larger than the block (the handle's free).
  bool free_sized(const void* p, std::size_t len, std::uintptr_t ret_addr);

  void* block_at(std::size_t index) const { return blocks_ + index * block_size_; }
  // kNone unless `p` is the start of one of the blocks.
  std::size_t index_of(const void* p) const;
  bool is_allocated(std::size_t index) const {
    return index < total_ && (bits_[index / 64] >> (index % 64) & 1) == 0;
  }
  bool owns(const void* p) const { return index_of(p) != kNone; }

  Stats stats() const;
  std::size_t block_size() const { return block_size_; }
  Alignment block_alignment() const { return block_alignment_; }
  std::size_t invalid_frees() const { return invalid_frees_; }
  void set_report_to_stderr(bool on) { report_ = on; }
  // Every block becomes free.
  void reset();

 private:
  bool owns_range(const void* p) const;

  std::uint64_t* bits_ = nullptr;
  std::size_t words_ = 0;
  std::byte* blocks_ = nullptr;
  std::size_t block_size_;
  std::size_t total_ = 0;
  std::size_t used_ = 0;
  std::size_t hint_ = 0;  // no free bit lives in a word below this one
  Alignment block_alignment_;
  std::size_t invalid_frees_ = 0;
  bool report_ = true;
};

}  // namespace alloy
