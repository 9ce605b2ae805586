#include "alloy/allocators/wrappers/thread_safe_allocator.h"

#include "alloy/alloc_iface/make_vtable.h"

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
  static void* vt_alloc(void* ctx, std::size_t len, Alignment alignment,
                        std::uintptr_t ret_addr) {
    auto* self = static_cast<ThreadSafeAllocator*>(ctx);
    Guard guard(self->mutex_, self->std_mutex_);
    return self->child_.raw_alloc(len, alignment, ret_addr);
  }
  static Bytes vt_alloc_at_least(void* ctx, std::size_t len, Alignment alignment,
                                 std::uintptr_t ret_addr) {
    auto* self = static_cast<ThreadSafeAllocator*>(ctx);
    Guard guard(self->mutex_, self->std_mutex_);
    return self->child_.raw_alloc_at_least(len, alignment, ret_addr);
  }
  static void* vt_alloc_zeroed(void* ctx, std::size_t len, Alignment alignment,
                               std::uintptr_t ret_addr) {
    auto* self = static_cast<ThreadSafeAllocator*>(ctx);
    Guard guard(self->mutex_, self->std_mutex_);
    return self->child_.raw_alloc_zeroed(len, alignment, ret_addr);
  }
  // Under the lock too: a child's owns may walk its chunks.
  static Ownership vt_owns(void* ctx, const void* ptr) {
    auto* self = static_cast<ThreadSafeAllocator*>(ctx);
    Guard guard(self->mutex_, self->std_mutex_);
    return self->child_.owns(ptr);
  }
  static bool vt_resize(void* ctx, Bytes memory, Alignment alignment, std::size_t new_len,
                        std::uintptr_t ret_addr) {
    auto* self = static_cast<ThreadSafeAllocator*>(ctx);
    Guard guard(self->mutex_, self->std_mutex_);
    return self->child_.raw_resize(memory, alignment, new_len, ret_addr);
  }
  static void* vt_remap(void* ctx, Bytes memory, Alignment alignment, std::size_t new_len,
                        std::uintptr_t ret_addr) {
    auto* self = static_cast<ThreadSafeAllocator*>(ctx);
    Guard guard(self->mutex_, self->std_mutex_);
    return self->child_.raw_remap(memory, alignment, new_len, ret_addr);
  }
  static void vt_free(void* ctx, Bytes memory, Alignment alignment, std::uintptr_t ret_addr) {
    auto* self = static_cast<ThreadSafeAllocator*>(ctx);
    Guard guard(self->mutex_, self->std_mutex_);
    self->child_.raw_free(memory, alignment, ret_addr);
  }
};

const VTable ThreadSafeAllocator::kAbslVTable = make_vtable<Ops<AbslGuard>>();
const VTable ThreadSafeAllocator::kStdVTable = make_vtable<Ops<StdGuard>>();

}  // namespace alloy
