#include "allocators/wrappers/thread_safe_allocator.h"

namespace alloy {

void* ThreadSafeAllocator::do_alloc(void* ctx, std::size_t len, Alignment alignment,
                                    std::uintptr_t ret_addr) {
  auto* self = static_cast<ThreadSafeAllocator*>(ctx);
  detail::AnnotatedLock lock(self->mutex_);
  return self->child_.raw_alloc(len, alignment, ret_addr);
}

bool ThreadSafeAllocator::do_resize(void* ctx, Bytes memory, Alignment alignment,
                                    std::size_t new_len, std::uintptr_t ret_addr) {
  auto* self = static_cast<ThreadSafeAllocator*>(ctx);
  detail::AnnotatedLock lock(self->mutex_);
  return self->child_.raw_resize(memory, alignment, new_len, ret_addr);
}

void* ThreadSafeAllocator::do_remap(void* ctx, Bytes memory, Alignment alignment,
                                    std::size_t new_len, std::uintptr_t ret_addr) {
  auto* self = static_cast<ThreadSafeAllocator*>(ctx);
  detail::AnnotatedLock lock(self->mutex_);
  return self->child_.raw_remap(memory, alignment, new_len, ret_addr);
}

void ThreadSafeAllocator::do_free(void* ctx, Bytes memory, Alignment alignment,
                                  std::uintptr_t ret_addr) {
  auto* self = static_cast<ThreadSafeAllocator*>(ctx);
  detail::AnnotatedLock lock(self->mutex_);
  self->child_.raw_free(memory, alignment, ret_addr);
}

}  // namespace alloy
