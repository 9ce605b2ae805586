#include "alloy/allocators/wrappers/limit_allocator.h"

#include "alloy/alloc_iface/make_vtable.h"

namespace alloy {
namespace {
constexpr auto kRelaxed = std::memory_order_relaxed;
}  // namespace

std::size_t LimitAllocator::remaining() const {
  const std::size_t ceiling = ceiling_.load(kRelaxed);
  const std::size_t used = used_.load(kRelaxed);
  return used >= ceiling ? 0 : ceiling - used;
}

template <bool kShared>
struct LimitAllocator::Ops {
  // Adds `bytes` to used_ if that stays within the ceiling.
  static bool reserve(LimitAllocator* self, std::size_t bytes) {
    std::size_t used = self->used_.load(kRelaxed);
    std::size_t now = 0;
    for (;;) {
      const std::size_t ceiling = self->ceiling_.load(kRelaxed);
      if (used > ceiling || bytes > ceiling - used) {
        self->refusals_.fetch_add(1, kRelaxed);  // the rare path
        return false;
      }
      now = used + bytes;
      if constexpr (kShared) {
        if (self->used_.compare_exchange_weak(used, now, kRelaxed)) break;
      } else {
        self->used_.store(now, kRelaxed);
        break;
      }
    }
    std::size_t peak = self->peak_.load(kRelaxed);
    if (now <= peak) return true;
    if constexpr (kShared) {
      while (now > peak && !self->peak_.compare_exchange_weak(peak, now, kRelaxed)) {
      }
    } else {
      self->peak_.store(now, kRelaxed);
    }
    return true;
  }

  // Subtracts `bytes` from used_, stopping at zero (reported) rather than
  // wrapping: only racing wrong frees can get there.
  static void release(LimitAllocator* self, std::size_t bytes, const void* p = nullptr,
                      std::uintptr_t ret_addr = 0) {
    std::size_t used = self->used_.load(kRelaxed);
    std::size_t now = 0;
    for (;;) {
      now = bytes > used ? 0 : used - bytes;
      if constexpr (kShared) {
        if (self->used_.compare_exchange_weak(used, now, kRelaxed)) break;
      } else {
        self->used_.store(now, kRelaxed);
        break;
      }
    }
    if (bytes > used) {
      self->log_.refuse("alloy::LimitAllocator", WrongFree::kCounterUnderflow, p, bytes,
                        ret_addr, "used() stopped at zero");
    }
  }

  static void* vt_alloc(void* ctx, std::size_t len, Alignment alignment,
                        std::uintptr_t ret_addr) {
    auto* self = static_cast<LimitAllocator*>(ctx);
    if (!reserve(self, len)) return nullptr;
    void* p = self->child_.raw_alloc(len, alignment, ret_addr);
    if (p == nullptr) release(self, len);
    return p;
  }

  // Size feedback: len is reserved first; the child's extra is charged too
  // when the ceiling has room for it, else only len is reported.
  static Bytes vt_alloc_at_least(void* ctx, std::size_t len, Alignment alignment,
                                 std::uintptr_t ret_addr) {
    auto* self = static_cast<LimitAllocator*>(ctx);
    if (!reserve(self, len)) return Bytes();
    Bytes b = self->child_.raw_alloc_at_least(len, alignment, ret_addr);
    if (b.data() == nullptr) {
      release(self, len);
      return b;
    }
    if (b.size() > len && !reserve(self, b.size() - len)) return Bytes(b.data(), len);
    return b;
  }

  static void* vt_alloc_zeroed(void* ctx, std::size_t len, Alignment alignment,
                               std::uintptr_t ret_addr) {
    auto* self = static_cast<LimitAllocator*>(ctx);
    if (!reserve(self, len)) return nullptr;
    void* p = self->child_.raw_alloc_zeroed(len, alignment, ret_addr);
    if (p == nullptr) release(self, len);
    return p;
  }

  static Ownership vt_owns(void* ctx, const void* ptr) {
    return static_cast<LimitAllocator*>(ctx)->child_.owns(ptr);
  }

  static bool vt_resize(void* ctx, Bytes memory, Alignment alignment, std::size_t new_len,
                        std::uintptr_t ret_addr) {
    auto* self = static_cast<LimitAllocator*>(ctx);
    const std::size_t old_len = memory.size();
    if (new_len <= old_len) {
      // Shrinking never needs room; account only once the child agreed.
      if (!self->child_.raw_resize(memory, alignment, new_len, ret_addr)) return false;
      release(self, old_len - new_len);
      return true;
    }
    if (!reserve(self, new_len - old_len)) return false;
    if (self->child_.raw_resize(memory, alignment, new_len, ret_addr)) return true;
    release(self, new_len - old_len);
    return false;
  }

  static void* vt_remap(void* ctx, Bytes memory, Alignment alignment, std::size_t new_len,
                        std::uintptr_t ret_addr) {
    auto* self = static_cast<LimitAllocator*>(ctx);
    const std::size_t old_len = memory.size();
    if (new_len <= old_len) {
      void* p = self->child_.raw_remap(memory, alignment, new_len, ret_addr);
      if (p != nullptr) release(self, old_len - new_len);
      return p;
    }
    if (!reserve(self, new_len - old_len)) return nullptr;
    void* p = self->child_.raw_remap(memory, alignment, new_len, ret_addr);
    if (p == nullptr) release(self, new_len - old_len);
    return p;
  }

  static void vt_free(void* ctx, Bytes memory, Alignment alignment, std::uintptr_t ret_addr) {
    auto* self = static_cast<LimitAllocator*>(ctx);
    if (memory.size() > self->used_.load(kRelaxed)) {
      // Longer than everything counted: not a block (of that length) we gave.
      self->log_.refuse("alloy::LimitAllocator", WrongFree::kCounterUnderflow, memory.data(),
                        memory.size(), ret_addr, "not passed to the child");
      return;
    }
    // Give the budget back only once the memory really is gone.
    self->child_.raw_free(memory, alignment, ret_addr);
    release(self, memory.size(), memory.data(), ret_addr);
  }
};

const VTable LimitAllocator::kSharedVTable = make_vtable<Ops<true>>();
const VTable LimitAllocator::kSingleThreadVTable = make_vtable<Ops<false>>();

}  // namespace alloy
