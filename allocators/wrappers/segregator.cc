#include "alloy/allocators/wrappers/segregator.h"

#include "alloy/allocators/wrong_free.h"

namespace alloy {

void* Segregator::vt_alloc(void* ctx, std::size_t len, Alignment alignment,
                           std::uintptr_t ret_addr) {
  auto* self = static_cast<Segregator*>(ctx);
  return self->side(len).raw_alloc(len, alignment, ret_addr);
}

bool Segregator::vt_resize(void* ctx, Bytes memory, Alignment alignment,
                           std::size_t new_len, std::uintptr_t ret_addr) {
  auto* self = static_cast<Segregator*>(ctx);
  // Crossing the threshold would leave the block on the wrong side for free.
  if (self->is_small(memory.size()) != self->is_small(new_len)) return false;
  return self->side(new_len).raw_resize(memory, alignment, new_len, ret_addr);
}

void* Segregator::vt_remap(void* ctx, Bytes memory, Alignment alignment,
                           std::size_t new_len, std::uintptr_t ret_addr) {
  auto* self = static_cast<Segregator*>(ctx);
  if (self->is_small(memory.size()) != self->is_small(new_len)) return nullptr;
  return self->side(new_len).raw_remap(memory, alignment, new_len, ret_addr);
}

void Segregator::vt_free(void* ctx, Bytes memory, Alignment alignment,
                         std::uintptr_t ret_addr) {
  auto* self = static_cast<Segregator*>(ctx);
  const bool small = self->is_small(memory.size());
  const Allocator& side = small ? self->small_ : self->large_;
  if constexpr (kCheckedFrees) {
    const Allocator& other = small ? self->large_ : self->small_;
    if (side.owns(memory.data()) == Ownership::kNo &&
        other.owns(memory.data()) == Ownership::kYes) [[unlikely]] {
      self->refused_.fetch_add(1, std::memory_order_relaxed);
      report_wrong_free("alloy::Segregator", to_string(WrongFree::kWrongSize), memory.data(),
                        memory.size(), ret_addr,
                        small ? "the length names the small side; the large side owns it"
                              : "the length names the large side; the small side owns it");
      return;
    }
  }
  side.raw_free(memory, alignment, ret_addr);
}

Bytes Segregator::vt_alloc_at_least(void* ctx, std::size_t len, Alignment alignment,
                                    std::uintptr_t ret_addr) {
  auto* self = static_cast<Segregator*>(ctx);
  Bytes b = self->side(len).raw_alloc_at_least(len, alignment, ret_addr);
  // A small block's length must keep naming the small side.
  if (self->is_small(len) && b.size() > self->threshold_) b = Bytes(b.data(), self->threshold_);
  return b;
}

void* Segregator::vt_alloc_zeroed(void* ctx, std::size_t len, Alignment alignment,
                                  std::uintptr_t ret_addr) {
  auto* self = static_cast<Segregator*>(ctx);
  return self->side(len).raw_alloc_zeroed(len, alignment, ret_addr);
}

Ownership Segregator::vt_owns(void* ctx, const void* ptr) {
  auto* self = static_cast<Segregator*>(ctx);
  const Ownership small = self->small_.owns(ptr);
  if (small == Ownership::kYes) return small;
  const Ownership large = self->large_.owns(ptr);
  if (large == Ownership::kYes || (small == Ownership::kNo && large == Ownership::kNo)) {
    return large;
  }
  return Ownership::kUnknown;
}

}  // namespace alloy
