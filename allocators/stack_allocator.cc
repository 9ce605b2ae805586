#include "alloy/allocators/stack_allocator.h"

#include "alloy/alloc_iface/make_vtable.h"

#include <cstdio>
#include <cstring>

namespace alloy {
namespace {

// Below each block: the top of the stack and the top block's start before
// it, and the block's own serial (markers name their top block by it).
struct BlockHeader {
  std::size_t previous_top;
  std::size_t previous_block;
  std::uint64_t serial;
};
constexpr std::size_t kHeader = sizeof(BlockHeader);

struct StackEntries {
  static void* vt_alloc(void* ctx, std::size_t len, Alignment alignment, std::uintptr_t) {
    return static_cast<StackAllocator*>(ctx)->alloc(len, alignment);
  }
  static bool vt_resize(void* ctx, Bytes memory, Alignment, std::size_t new_len, std::uintptr_t) {
    return static_cast<StackAllocator*>(ctx)->resize(memory, new_len);
  }
  static void* vt_remap(void* ctx, Bytes memory, Alignment, std::size_t new_len, std::uintptr_t) {
    return static_cast<StackAllocator*>(ctx)->resize(memory, new_len) ? memory.data()
                                                                       : nullptr;
  }
  static void vt_free(void* ctx, Bytes memory, Alignment, std::uintptr_t ret_addr) {
    (void)static_cast<StackAllocator*>(ctx)->free(memory, ret_addr);
  }
  static Ownership vt_owns(void* ctx, const void* p) {
    return ownership(static_cast<StackAllocator*>(ctx)->owns(p));
  }
};

const char* describe(StackAllocator::ErrorKind kind) {
  switch (kind) {
    case StackAllocator::ErrorKind::kOutOfOrderFree:
      return "out-of-order free (block is below the top)";
    case StackAllocator::ErrorKind::kStaleFree:
      return "free of a block above the top (already freed or unwound)";
    case StackAllocator::ErrorKind::kForeignFree:
      return "free of memory this stack does not own";
    case StackAllocator::ErrorKind::kBadMarker:
      return "unwind to a marker above the top";
    case StackAllocator::ErrorKind::kStaleMarker:
      return "unwind to a stale marker (its top block was freed, unwound or reset)";
    case StackAllocator::ErrorKind::kInteriorFree:
      return "free of an interior pointer (not the start of the top block)";
    case StackAllocator::ErrorKind::kNone:
      break;
  }
  return "no error";
}

}  // namespace

Allocator StackAllocator::allocator() { return Allocator{this, &vtable_for<StackEntries>}; }

void* StackAllocator::alloc(std::size_t len, Alignment alignment) {
  const auto base = reinterpret_cast<std::uintptr_t>(buffer_.data());
  const std::uintptr_t data = alignment.forward(base + top_ + kHeader);
  if (data < base + top_) return nullptr;  // wrapped
  const std::size_t start = data - base;
  if (start > buffer_.size() || len > buffer_.size() - start) return nullptr;
  const BlockHeader header{top_, top_block_, next_serial_++};
  std::memcpy(buffer_.data() + start - kHeader, &header, kHeader);
  top_ = start + len;
  top_block_ = start;
  return buffer_.data() + start;
}

bool StackAllocator::resize(Bytes memory, std::size_t new_len) {
  if (!owns(memory.data())) return false;
  const std::size_t start = static_cast<std::size_t>(memory.data() - buffer_.data());
  if (start != top_block_) {
    // An older block keeps its bytes until it is popped; free() finds it by
    // its start, so the shorter length the caller now holds is fine.
    return new_len <= memory.size();
  }
  if (new_len > buffer_.size() - start) return false;
  top_ = start + new_len;
  return true;
}

bool StackAllocator::free(Bytes memory, std::uintptr_t ret_addr) {
  if (!owns(memory.data())) {
    refuse(ErrorKind::kForeignFree, memory.data(), memory.size(), ret_addr);
    return false;
  }
  const std::size_t start = static_cast<std::size_t>(memory.data() - buffer_.data());
  const std::size_t end = start + memory.size();
  if (start != top_block_ || end > top_) {
    ErrorKind kind = ErrorKind::kOutOfOrderFree;
    if (start >= top_ || end > top_) {
      kind = ErrorKind::kStaleFree;  // above the top: freed, unwound or reset already
    } else if (top_block_ != kNoBlock && start > top_block_) {
      kind = ErrorKind::kInteriorFree;  // inside the top block
    }
    refuse(kind, memory.data(), memory.size(), ret_addr);
    return false;
  }
  BlockHeader header;
  std::memcpy(&header, buffer_.data() + start - kHeader, kHeader);
  if (header.previous_top > start - kHeader ||
      (header.previous_block != kNoBlock && header.previous_block >= start)) {
    // The header was overwritten (an underrun of this block): refuse rather
    // than rewind to a garbage top.
    refuse(ErrorKind::kOutOfOrderFree, memory.data(), memory.size(), ret_addr);
    return false;
  }
  top_ = header.previous_top;
  top_block_ = header.previous_block;
  return true;
}

std::uint64_t StackAllocator::serial_at(std::size_t block) const {
  BlockHeader header;
  std::memcpy(&header, buffer_.data() + block - kHeader, kHeader);
  return header.serial;
}

StackAllocator::Marker StackAllocator::mark() const {
  return Marker{top_, top_block_, top_block_ == kNoBlock ? 0 : serial_at(top_block_)};
}

// Whether the marker's top block is still on the stack: walk down from the
// top block (one header per block the unwind would drop) to the marker's
// block and compare serials, so a block freed and handed out again at the
// same start does not pass for the one the marker saw.
bool StackAllocator::on_stack(const Marker& marker) const {
  std::size_t block = top_block_;
  while (block != kNoBlock && (marker.top_block == kNoBlock || block > marker.top_block)) {
    BlockHeader header;
    std::memcpy(&header, buffer_.data() + block - kHeader, kHeader);
    if (header.previous_block != kNoBlock && header.previous_block >= block) {
      return false;  // a damaged header: do not trust the chain
    }
    block = header.previous_block;
  }
  if (marker.top_block == kNoBlock) return block == kNoBlock && marker.offset == 0;
  return block == marker.top_block && marker.offset >= block &&
         serial_at(block) == marker.serial;
}

bool StackAllocator::unwind(Marker marker, std::uintptr_t ret_addr) {
  if (marker.offset > top_) {
    refuse(ErrorKind::kBadMarker, buffer_.data() + marker.offset, 0, ret_addr);
    return false;
  }
  if (!on_stack(marker)) {
    refuse(ErrorKind::kStaleMarker, buffer_.data() + marker.offset, 0, ret_addr);
    return false;
  }
  top_ = marker.offset;
  top_block_ = marker.top_block;
  return true;
}

bool StackAllocator::owns(const void* p) const {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  const auto base = reinterpret_cast<std::uintptr_t>(buffer_.data());
  return a >= base && a < base + buffer_.size();
}

void StackAllocator::refuse(ErrorKind kind, const void* p, std::size_t len,
                            std::uintptr_t ret_addr) {
  ++refused_;
  last_error_ = Error{kind, p, len, ret_addr};
  if (report_) {
    std::fprintf(stderr,
                 "alloy::StackAllocator: refused %s: %p (%zu bytes), called from 0x%lx; "
                 "top at offset %zu of %zu\n",
                 describe(kind), p, len, static_cast<unsigned long>(ret_addr), top_,
                 buffer_.size());
  }
}

}  // namespace alloy
