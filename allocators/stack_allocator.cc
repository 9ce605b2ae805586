#include "alloy/allocators/stack_allocator.h"

#include <cstdio>
#include <cstring>

namespace alloy {
namespace {

// Below each block: the top of the stack and the top block's start before it.
struct BlockHeader {
  std::size_t previous_top;
  std::size_t previous_block;
};
constexpr std::size_t kHeader = sizeof(BlockHeader);

void* vt_alloc(void* ctx, std::size_t len, Alignment alignment, std::uintptr_t) {
  return static_cast<StackAllocator*>(ctx)->alloc(len, alignment);
}
bool vt_resize(void* ctx, Bytes memory, Alignment, std::size_t new_len, std::uintptr_t) {
  return static_cast<StackAllocator*>(ctx)->resize(memory, new_len);
}
void* vt_remap(void* ctx, Bytes memory, Alignment, std::size_t new_len, std::uintptr_t) {
  return static_cast<StackAllocator*>(ctx)->resize(memory, new_len) ? memory.data()
                                                                     : nullptr;
}
void vt_free(void* ctx, Bytes memory, Alignment, std::uintptr_t ret_addr) {
  (void)static_cast<StackAllocator*>(ctx)->free(memory, ret_addr);
}

constexpr VTable kStackVTable = {vt_alloc, vt_resize, vt_remap, vt_free};

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
    case StackAllocator::ErrorKind::kNone:
      break;
  }
  return "no error";
}

}  // namespace

Allocator StackAllocator::allocator() { return Allocator{this, &kStackVTable}; }

void* StackAllocator::alloc(std::size_t len, Alignment alignment) {
  const auto base = reinterpret_cast<std::uintptr_t>(buffer_.data());
  const std::uintptr_t data = alignment.forward(base + top_ + kHeader);
  if (data < base + top_) return nullptr;  // wrapped
  const std::size_t start = data - base;
  if (start > buffer_.size() || len > buffer_.size() - start) return nullptr;
  const BlockHeader header{top_, top_block_};
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
    refuse(end <= top_ ? ErrorKind::kOutOfOrderFree : ErrorKind::kStaleFree, memory.data(),
           memory.size(), ret_addr);
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

bool StackAllocator::unwind(Marker marker, std::uintptr_t ret_addr) {
  if (marker.offset > top_) {
    refuse(ErrorKind::kBadMarker, buffer_.data() + marker.offset, 0, ret_addr);
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
                 "alloy::StackAllocator: refused %s: %p (%zu bytes), called from %p; "
                 "top at offset %zu of %zu\n",
                 describe(kind), p, len, reinterpret_cast<void*>(ret_addr), top_,
                 buffer_.size());
  }
}

}  // namespace alloy
