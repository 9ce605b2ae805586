#include "alloy/allocators/bump_allocator.h"

#include "alloy/alloc_iface/make_vtable.h"
#include "alloy/allocators/wrong_free.h"

namespace alloy {
namespace {

struct BumpEntries {
  static void* vt_alloc(void* ctx, std::size_t len, Alignment alignment, std::uintptr_t) {
    return static_cast<BumpAllocator*>(ctx)->alloc_inline(len, alignment.bytes());
  }

  static bool vt_resize(void* ctx, Bytes memory, Alignment, std::size_t new_len,
                        std::uintptr_t) {
    return static_cast<BumpAllocator*>(ctx)->resize(memory, new_len);
  }

  static void* vt_remap(void* ctx, Bytes memory, Alignment, std::size_t new_len,
                        std::uintptr_t) {
    return static_cast<BumpAllocator*>(ctx)->resize(memory, new_len) ? memory.data()
                                                                      : nullptr;
  }

  static void vt_free(void* ctx, Bytes memory, Alignment, std::uintptr_t ret_addr) {
    static_cast<BumpAllocator*>(ctx)->free(memory, ret_addr);
  }
  static Ownership vt_owns(void* ctx, const void* p) {
    return ownership(static_cast<BumpAllocator*>(ctx)->owns(p));
  }
};

}  // namespace

Allocator BumpAllocator::allocator() { return Allocator{this, &vtable_for<BumpEntries>}; }

bool BumpAllocator::resize(Bytes memory, std::size_t new_len) {
  const auto start = reinterpret_cast<std::uintptr_t>(memory.data());
  if (start + memory.size() != cur_) return new_len <= memory.size();
  if (new_len > end_ - start) return false;
  cur_ = start + new_len;
  return true;
}

void BumpAllocator::free(Bytes memory, std::uintptr_t ret_addr) {
  const auto start = reinterpret_cast<std::uintptr_t>(memory.data());
  WrongFree wrong = WrongFree::kForeign;
  if (start >= base_ && start < end_) {
    if (bump_apply_free(start, memory.size(), cur_)) return;
    wrong = WrongFree::kDouble;
  }
  ++refused_;
  refuse_bump_free("alloy::BumpAllocator", wrong, memory.data(), memory.size(), ret_addr);
}

}  // namespace alloy
