#include "allocators/wrappers/limit_allocator.h"

namespace alloy {
namespace {
constexpr auto kRelaxed = std::memory_order_relaxed;
}  // namespace

std::size_t LimitAllocator::remaining() const {
  const std::size_t ceiling = ceiling_.load(kRelaxed);
  const std::size_t used = used_.load(kRelaxed);
  return used >= ceiling ? 0 : ceiling - used;
}

bool LimitAllocator::reserve(std::size_t bytes) {
  std::size_t used = used_.load(kRelaxed);
  std::size_t now = 0;
  do {
    const std::size_t ceiling = ceiling_.load(kRelaxed);
    if (used > ceiling || bytes > ceiling - used) {
      refusals_.fetch_add(1, kRelaxed);
      return false;
    }
    now = used + bytes;
  } while (!used_.compare_exchange_weak(used, now, kRelaxed));
  std::size_t peak = peak_.load(kRelaxed);
  while (now > peak && !peak_.compare_exchange_weak(peak, now, kRelaxed)) {
  }
  return true;
}

void* LimitAllocator::do_alloc(void* ctx, std::size_t len, Alignment alignment,
                               std::uintptr_t ret_addr) {
  auto* self = static_cast<LimitAllocator*>(ctx);
  if (!self->reserve(len)) return nullptr;
  void* p = self->child_.raw_alloc(len, alignment, ret_addr);
  if (p == nullptr) self->release(len);
  return p;
}

bool LimitAllocator::do_resize(void* ctx, Bytes memory, Alignment alignment,
                               std::size_t new_len, std::uintptr_t ret_addr) {
  auto* self = static_cast<LimitAllocator*>(ctx);
  const std::size_t old_len = memory.size();
  if (new_len <= old_len) {
    // Shrinking never needs room; account only once the child agreed.
    if (!self->child_.raw_resize(memory, alignment, new_len, ret_addr)) return false;
    self->release(old_len - new_len);
    return true;
  }
  if (!self->reserve(new_len - old_len)) return false;
  if (self->child_.raw_resize(memory, alignment, new_len, ret_addr)) return true;
  self->release(new_len - old_len);
  return false;
}

void* LimitAllocator::do_remap(void* ctx, Bytes memory, Alignment alignment,
                               std::size_t new_len, std::uintptr_t ret_addr) {
  auto* self = static_cast<LimitAllocator*>(ctx);
  const std::size_t old_len = memory.size();
  if (new_len <= old_len) {
    void* p = self->child_.raw_remap(memory, alignment, new_len, ret_addr);
    if (p != nullptr) self->release(old_len - new_len);
    return p;
  }
  if (!self->reserve(new_len - old_len)) return nullptr;
  void* p = self->child_.raw_remap(memory, alignment, new_len, ret_addr);
  if (p == nullptr) self->release(new_len - old_len);
  return p;
}

void LimitAllocator::do_free(void* ctx, Bytes memory, Alignment alignment,
                             std::uintptr_t ret_addr) {
  auto* self = static_cast<LimitAllocator*>(ctx);
  self->child_.raw_free(memory, alignment, ret_addr);
  self->release(memory.size());
}

}  // namespace alloy
