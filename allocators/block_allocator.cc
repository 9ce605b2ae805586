#include "alloy/allocators/block_allocator.h"

#include "alloy/alloc_iface/make_vtable.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace alloy {
namespace {

struct BlockEntries {
  static void* vt_alloc(void* ctx, std::size_t len, Alignment alignment, std::uintptr_t) {
    auto* self = static_cast<BlockAllocator*>(ctx);
    if (len > self->block_size() || alignment > self->block_alignment()) return nullptr;
    return self->alloc_block();
  }
  static bool vt_resize(void* ctx, Bytes, Alignment, std::size_t new_len, std::uintptr_t) {
    return new_len <= static_cast<BlockAllocator*>(ctx)->block_size();
  }
  static void* vt_remap(void* ctx, Bytes memory, Alignment, std::size_t new_len, std::uintptr_t) {
    return new_len <= static_cast<BlockAllocator*>(ctx)->block_size() ? memory.data()
                                                                        : nullptr;
  }
  static void vt_free(void* ctx, Bytes memory, Alignment, std::uintptr_t ret_addr) {
    (void)static_cast<BlockAllocator*>(ctx)->free_sized(memory.data(), memory.size(), ret_addr);
  }
  static Ownership vt_owns(void* ctx, const void* p) {
    return ownership(static_cast<BlockAllocator*>(ctx)->owns(p));
  }
  // Size feedback: every block is block_size() bytes.
  static Bytes vt_alloc_at_least(void* ctx, std::size_t len, Alignment alignment,
                                 std::uintptr_t ret) {
    void* p = vt_alloc(ctx, len, alignment, ret);
    if (p == nullptr) return Bytes();
    return Bytes(static_cast<std::byte*>(p), static_cast<BlockAllocator*>(ctx)->block_size());
  }
};

}  // namespace

BlockAllocator::BlockAllocator(Bytes buffer, std::size_t block_size)
    : block_size_(std::max<std::size_t>(block_size, 1)) {
  const std::size_t align_bytes =
      std::min<std::size_t>(std::size_t{1} << std::countr_zero(block_size_), 4096);
  block_alignment_ = *Alignment::from_bytes(align_bytes);
  const auto base = reinterpret_cast<std::uintptr_t>(buffer.data());
  const std::uintptr_t limit = base + buffer.size();
  const std::uintptr_t bits_at = Alignment::of<std::uint64_t>().forward(base);
  // The largest n whose bitmap plus blocks fit.
  std::size_t n = buffer.size() / block_size_;
  while (n > 0) {
    const std::size_t words = (n + 63) / 64;
    const std::uintptr_t blocks_at = block_alignment_.forward(bits_at + words * 8);
    if (blocks_at <= limit && n <= (limit - blocks_at) / block_size_) break;
    --n;
  }
  if (n == 0 || bits_at > limit) return;
  total_ = n;
  words_ = (n + 63) / 64;
  bits_ = reinterpret_cast<std::uint64_t*>(bits_at);
  blocks_ = reinterpret_cast<std::byte*>(block_alignment_.forward(bits_at + words_ * 8));
  reset();
}

Allocator BlockAllocator::allocator() { return Allocator{this, &vtable_for<BlockEntries>}; }

void BlockAllocator::reset() {
  if (total_ == 0) return;
  std::fill(bits_, bits_ + words_, ~std::uint64_t{0});
  if (total_ % 64 != 0) bits_[words_ - 1] = (std::uint64_t{1} << (total_ % 64)) - 1;
  used_ = 0;
  hint_ = 0;
}

std::size_t BlockAllocator::alloc_index() {
  for (std::size_t w = hint_; w < words_; ++w) {
    const std::uint64_t word = bits_[w];
    if (word == 0) continue;  // 64 used blocks skipped in one compare
    const auto bit = static_cast<std::size_t>(std::countr_zero(word));
    bits_[w] = word & (word - 1);  // clear the lowest set bit
    hint_ = w;
    ++used_;
    return w * 64 + bit;
  }
  hint_ = words_;
  return kNone;
}

bool BlockAllocator::free_index(std::size_t index, std::uintptr_t ret_addr) {
  if (!is_allocated(index)) {
    ++invalid_frees_;
    if (report_) {
      std::fprintf(stderr,
                   "alloy::BlockAllocator: refused free of block %zu: %s; called from 0x%lx\n",
                   index,
                   index < total_ ? "double free (the block is not allocated)"
                                  : "foreign (index out of range)",
                   static_cast<unsigned long>(ret_addr));
    }
    return false;
  }
  bits_[index / 64] |= std::uint64_t{1} << (index % 64);
  hint_ = std::min(hint_, index / 64);
  --used_;
  return true;
}

bool BlockAllocator::free_block(const void* p, std::uintptr_t ret_addr) {
  const std::size_t index = index_of(p);
  if (index == kNone) {
    ++invalid_frees_;
    if (report_) {
      std::fprintf(stderr,
                   "alloy::BlockAllocator: refused free of %p: %s; called from 0x%lx\n", p,
                   owns_range(p) ? "interior or misaligned pointer (not a block start)"
                                 : "foreign pointer (not in this allocator's blocks)",
                   static_cast<unsigned long>(ret_addr));
    }
    return false;
  }
  return free_index(index, ret_addr);
}

bool BlockAllocator::free_sized(const void* p, std::size_t len, std::uintptr_t ret_addr) {
  if (len > block_size_) {
    ++invalid_frees_;
    if (report_) {
      std::fprintf(stderr,
                   "alloy::BlockAllocator: refused free of %p (%zu bytes): wrong size (blocks "
                   "are %zu bytes); called from 0x%lx\n",
                   p, len, block_size_, static_cast<unsigned long>(ret_addr));
    }
    return false;
  }
  return free_block(p, ret_addr);
}

bool BlockAllocator::owns_range(const void* p) const {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  const auto lo = reinterpret_cast<std::uintptr_t>(blocks_);
  return total_ != 0 && a >= lo && a - lo < total_ * block_size_;
}

std::size_t BlockAllocator::index_of(const void* p) const {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  const auto lo = reinterpret_cast<std::uintptr_t>(blocks_);
  if (total_ == 0 || a < lo) return kNone;
  const std::size_t offset = a - lo;
  if (offset % block_size_ != 0) return kNone;
  const std::size_t index = offset / block_size_;
  return index < total_ ? index : kNone;
}

BlockAllocator::Stats BlockAllocator::stats() const {
  Stats s;
  s.block_size = block_size_;
  s.total_blocks = total_;
  s.used_blocks = used_;
  s.free_blocks = total_ - used_;
  s.utilization = total_ == 0 ? 0.0 : static_cast<double>(used_) / static_cast<double>(total_);
  return s;
}

}  // namespace alloy
