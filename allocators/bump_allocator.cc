#include "alloy/allocators/bump_allocator.h"

namespace alloy {
namespace {

void* bump_alloc(void* ctx, std::size_t len, Alignment alignment, std::uintptr_t) {
  return static_cast<BumpAllocator*>(ctx)->alloc_inline(len, alignment.bytes());
}

bool bump_resize(void* ctx, Bytes memory, Alignment, std::size_t new_len,
                 std::uintptr_t) {
  return static_cast<BumpAllocator*>(ctx)->resize(memory, new_len);
}

void* bump_remap(void* ctx, Bytes memory, Alignment, std::size_t new_len,
                 std::uintptr_t) {
  return static_cast<BumpAllocator*>(ctx)->resize(memory, new_len) ? memory.data()
                                                                    : nullptr;
}

void bump_free(void* ctx, Bytes memory, Alignment, std::uintptr_t) {
  static_cast<BumpAllocator*>(ctx)->free(memory);
}

constexpr VTable kBumpVTable = {bump_alloc, bump_resize, bump_remap, bump_free};

}  // namespace

Allocator BumpAllocator::allocator() { return Allocator{this, &kBumpVTable}; }

bool BumpAllocator::resize(Bytes memory, std::size_t new_len) {
  const auto start = reinterpret_cast<std::uintptr_t>(memory.data());
  if (start + memory.size() != cur_) return new_len <= memory.size();
  if (new_len > end_ - start) return false;
  cur_ = start + new_len;
  return true;
}

void BumpAllocator::free(Bytes memory) {
  if (is_last(memory)) cur_ = reinterpret_cast<std::uintptr_t>(memory.data());
}

}  // namespace alloy
