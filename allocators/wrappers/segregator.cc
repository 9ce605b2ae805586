#include "alloy/allocators/wrappers/segregator.h"

namespace alloy {

void* Segregator::do_alloc(void* ctx, std::size_t len, Alignment alignment,
                           std::uintptr_t ret_addr) {
  auto* self = static_cast<Segregator*>(ctx);
  return self->side(len).raw_alloc(len, alignment, ret_addr);
}

bool Segregator::do_resize(void* ctx, Bytes memory, Alignment alignment,
                           std::size_t new_len, std::uintptr_t ret_addr) {
  auto* self = static_cast<Segregator*>(ctx);
  // Crossing the threshold would leave the block on the wrong side for free.
  if (self->is_small(memory.size()) != self->is_small(new_len)) return false;
  return self->side(new_len).raw_resize(memory, alignment, new_len, ret_addr);
}

void* Segregator::do_remap(void* ctx, Bytes memory, Alignment alignment,
                           std::size_t new_len, std::uintptr_t ret_addr) {
  auto* self = static_cast<Segregator*>(ctx);
  if (self->is_small(memory.size()) != self->is_small(new_len)) return nullptr;
  return self->side(new_len).raw_remap(memory, alignment, new_len, ret_addr);
}

void Segregator::do_free(void* ctx, Bytes memory, Alignment alignment,
                         std::uintptr_t ret_addr) {
  auto* self = static_cast<Segregator*>(ctx);
  self->side(memory.size()).raw_free(memory, alignment, ret_addr);
}

}  // namespace alloy
