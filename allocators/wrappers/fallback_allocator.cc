#include "alloy/allocators/wrappers/fallback_allocator.h"

#include "alloy/allocators/bump_cursor.h"
#include "alloy/allocators/wrong_free.h"

namespace alloy {

void* FallbackAllocator::vt_alloc(void* ctx, std::size_t len, Alignment alignment,
                                  std::uintptr_t ret_addr) {
  auto* self = static_cast<FallbackAllocator*>(ctx);
  if (void* p = self->primary_.raw_alloc(len, alignment, ret_addr)) return p;
  return self->fallback_.raw_alloc(len, alignment, ret_addr);
}

bool FallbackAllocator::vt_resize(void* ctx, Bytes memory, Alignment alignment,
                                  std::size_t new_len, std::uintptr_t ret_addr) {
  auto* self = static_cast<FallbackAllocator*>(ctx);
  return self->route(memory.data()).raw_resize(memory, alignment, new_len, ret_addr);
}

void* FallbackAllocator::vt_remap(void* ctx, Bytes memory, Alignment alignment,
                                  std::size_t new_len, std::uintptr_t ret_addr) {
  auto* self = static_cast<FallbackAllocator*>(ctx);
  return self->route(memory.data()).raw_remap(memory, alignment, new_len, ret_addr);
}

void FallbackAllocator::vt_free(void* ctx, Bytes memory, Alignment alignment,
                                std::uintptr_t ret_addr) {
  auto* self = static_cast<FallbackAllocator*>(ctx);
  self->route(memory.data()).raw_free(memory, alignment, ret_addr);
}

Bytes FallbackAllocator::vt_alloc_at_least(void* ctx, std::size_t len, Alignment alignment,
                                           std::uintptr_t ret_addr) {
  auto* self = static_cast<FallbackAllocator*>(ctx);
  Bytes b = self->primary_.raw_alloc_at_least(len, alignment, ret_addr);
  if (b.data() != nullptr) return b;
  return self->fallback_.raw_alloc_at_least(len, alignment, ret_addr);
}

void* FallbackAllocator::vt_alloc_zeroed(void* ctx, std::size_t len, Alignment alignment,
                                         std::uintptr_t ret_addr) {
  auto* self = static_cast<FallbackAllocator*>(ctx);
  if (void* p = self->primary_.raw_alloc_zeroed(len, alignment, ret_addr)) return p;
  return self->fallback_.raw_alloc_zeroed(len, alignment, ret_addr);
}

Ownership FallbackAllocator::vt_owns(void* ctx, const void* ptr) {
  auto* self = static_cast<FallbackAllocator*>(ctx);
  if (self->owns_.owns != nullptr) {
    if (self->owns_(ptr)) return Ownership::kYes;
    return self->fallback_.owns(ptr);
  }
  const Ownership primary = self->primary_.owns(ptr);
  if (primary == Ownership::kYes) return Ownership::kYes;
  const Ownership fallback = self->fallback_.owns(ptr);
  // Not the fallback's, and the primary cannot tell: maybe the primary's.
  if (primary == Ownership::kUnknown && fallback == Ownership::kNo) return Ownership::kUnknown;
  return fallback;
}

namespace detail {

void* InlineBump::vt_alloc(void* ctx, std::size_t len, Alignment alignment,
                           std::uintptr_t) {
  auto* self = static_cast<InlineBump*>(ctx);
  const auto cur = reinterpret_cast<std::uintptr_t>(self->cur_);
  const auto end = reinterpret_cast<std::uintptr_t>(self->end_);
  const std::uintptr_t start = alignment.forward(cur);
  if (start < cur || start > end || len > end - start) return nullptr;
  self->cur_ += (start - cur) + len;
  return self->cur_ - len;
}

bool InlineBump::vt_resize(void* ctx, Bytes memory, Alignment, std::size_t new_len,
                           std::uintptr_t) {
  auto* self = static_cast<InlineBump*>(ctx);
  if (!self->is_last(memory)) return new_len <= memory.size();
  if (new_len > static_cast<std::size_t>(self->end_ - memory.data())) return false;
  self->cur_ = memory.data() + new_len;
  return true;
}

void* InlineBump::vt_remap(void* ctx, Bytes memory, Alignment alignment,
                           std::size_t new_len, std::uintptr_t ret_addr) {
  return vt_resize(ctx, memory, alignment, new_len, ret_addr) ? memory.data() : nullptr;
}

void InlineBump::vt_free(void* ctx, Bytes memory, Alignment, std::uintptr_t ret_addr) {
  auto* self = static_cast<InlineBump*>(ctx);
  WrongFree wrong = WrongFree::kForeign;
  if (self->owns(memory.data())) {
    auto cur = reinterpret_cast<std::uintptr_t>(self->cur_);
    if (bump_apply_free(reinterpret_cast<std::uintptr_t>(memory.data()), memory.size(), cur)) {
      self->cur_ = reinterpret_cast<std::byte*>(cur);
      return;
    }
    wrong = WrongFree::kDouble;
  }
  ++self->refused_;
  refuse_bump_free("alloy::StackFallback (inline buffer)", wrong, memory.data(), memory.size(),
                   ret_addr);
}

}  // namespace detail
}  // namespace alloy
