#include "alloy/allocators/wrappers/thread_safe_allocator.h"

namespace alloy {
namespace {

// Both guards are made from the allocator itself, so Ops<Guard> stays one
// template.
struct AbslGuard {
  detail::AnnotatedLock lock;
  explicit AbslGuard(absl::Mutex& m, std::mutex&) : lock(m) {}
};
struct StdGuard {
  std::lock_guard<std::mutex> lock;
  explicit StdGuard(absl::Mutex&, std::mutex& m) : lock(m) {}
};

}  // namespace

template <class Guard>
struct ThreadSafeAllocator::Ops {
  static void* alloc(void* ctx, std::size_t len, Alignment alignment,
                     std::uintptr_t ret_addr) {
    auto* self = static_cast<ThreadSafeAllocator*>(ctx);
    Guard guard(self->mutex_, self->std_mutex_);
    return self->child_.raw_alloc(len, alignment, ret_addr);
  }
  static bool resize(void* ctx, Bytes memory, Alignment alignment, std::size_t new_len,
                     std::uintptr_t ret_addr) {
    auto* self = static_cast<ThreadSafeAllocator*>(ctx);
    Guard guard(self->mutex_, self->std_mutex_);
    return self->child_.raw_resize(memory, alignment, new_len, ret_addr);
  }
  static void* remap(void* ctx, Bytes memory, Alignment alignment, std::size_t new_len,
                     std::uintptr_t ret_addr) {
    auto* self = static_cast<ThreadSafeAllocator*>(ctx);
    Guard guard(self->mutex_, self->std_mutex_);
    return self->child_.raw_remap(memory, alignment, new_len, ret_addr);
  }
  static void free(void* ctx, Bytes memory, Alignment alignment, std::uintptr_t ret_addr) {
    auto* self = static_cast<ThreadSafeAllocator*>(ctx);
    Guard guard(self->mutex_, self->std_mutex_);
    self->child_.raw_free(memory, alignment, ret_addr);
  }
};

const VTable ThreadSafeAllocator::kAbslVTable = {
    Ops<AbslGuard>::alloc, Ops<AbslGuard>::resize, Ops<AbslGuard>::remap,
    Ops<AbslGuard>::free};
const VTable ThreadSafeAllocator::kStdVTable = {Ops<StdGuard>::alloc, Ops<StdGuard>::resize,
                                                Ops<StdGuard>::remap, Ops<StdGuard>::free};

}  // namespace alloy
