#include "alloy/allocators/fixed_buffer_allocator.h"

#include "alloy/alloc_iface/make_vtable.h"
#include "alloy/allocators/bump_cursor.h"
#include "alloy/allocators/wrong_free.h"

namespace alloy {
namespace {

// Index of the first `alignment`-aligned byte at or after `index`, or
// SIZE_MAX when `len` bytes from there do not fit in `buffer`.
std::size_t fit(Bytes buffer, std::size_t index, std::size_t len, Alignment alignment) {
  const auto base = reinterpret_cast<std::uintptr_t>(buffer.data());
  const std::uintptr_t aligned = alignment.forward(base + index);
  if (aligned < base + index) return SIZE_MAX;  // wrapped
  const std::size_t start = aligned - base;
  if (start > buffer.size() || len > buffer.size() - start) return SIZE_MAX;
  return start;
}

// The handle's entries, for either allocator (Self's alloc, resize, free).
template <class Self>
struct Entries {
  static void* vt_alloc(void* ctx, std::size_t len, Alignment alignment, std::uintptr_t) {
    return static_cast<Self*>(ctx)->alloc(len, alignment);
  }
  static bool vt_resize(void* ctx, Bytes memory, Alignment, std::size_t new_len,
                        std::uintptr_t) {
    return static_cast<Self*>(ctx)->resize(memory, new_len);
  }
  static void* vt_remap(void* ctx, Bytes memory, Alignment, std::size_t new_len,
                        std::uintptr_t) {
    return static_cast<Self*>(ctx)->resize(memory, new_len) ? memory.data() : nullptr;
  }
  static void vt_free(void* ctx, Bytes memory, Alignment, std::uintptr_t ret_addr) {
    static_cast<Self*>(ctx)->free(memory, ret_addr);
  }
  static Ownership vt_owns(void* ctx, const void* p) {
    return ownership(static_cast<Self*>(ctx)->owns(p));
  }
};

bool inside(Bytes buffer, const void* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  const auto base = reinterpret_cast<std::uintptr_t>(buffer.data());
  return a >= base && a < base + buffer.size();
}

// The shared free rule against end index `end`: kForeign, kDouble (at or
// above the end), or kNone with *rewind telling whether it is the last block.
WrongFree classify(Bytes buffer, Bytes memory, std::size_t end, bool* rewind) {
  if (!inside(buffer, memory.data())) return WrongFree::kForeign;
  const auto base = reinterpret_cast<std::uintptr_t>(buffer.data());
  switch (bump_free_kind(reinterpret_cast<std::uintptr_t>(memory.data()), memory.size(),
                         base + end)) {
    case BumpFree::kRewind:
      *rewind = true;
      return WrongFree::kNone;
    case BumpFree::kOlder:
      *rewind = false;
      return WrongFree::kNone;
    case BumpFree::kStale:
      break;
  }
  return WrongFree::kDouble;
}

void report(const char* who, WrongFree wrong, Bytes memory, std::uintptr_t ret_addr) {
  refuse_bump_free(who, wrong, memory.data(), memory.size(), ret_addr);
}

}  // namespace

// ---- FixedBufferAllocator ----

Allocator FixedBufferAllocator::allocator() {
  return Allocator{this, &vtable_for<Entries<FixedBufferAllocator>>};
}

void* FixedBufferAllocator::alloc(std::size_t len, Alignment alignment) {
  const std::size_t start = fit(buffer_, end_index_, len, alignment);
  if (start == SIZE_MAX) return nullptr;
  end_index_ = start + len;
  return buffer_.data() + start;
}

bool FixedBufferAllocator::resize(Bytes memory, std::size_t new_len) {
  if (!is_last_allocation(memory)) return new_len <= memory.size();
  const std::size_t start = static_cast<std::size_t>(memory.data() - buffer_.data());
  if (new_len > buffer_.size() - start) return false;
  end_index_ = start + new_len;
  return true;
}

void FixedBufferAllocator::free(Bytes memory, std::uintptr_t ret_addr) {
  bool rewind = false;
  const WrongFree wrong = classify(buffer_, memory, end_index_, &rewind);
  if (wrong != WrongFree::kNone) {
    ++refused_;
    report("alloy::FixedBufferAllocator", wrong, memory, ret_addr);
    return;
  }
  if (rewind) end_index_ = static_cast<std::size_t>(memory.data() - buffer_.data());
}

bool FixedBufferAllocator::owns(const void* p) const { return inside(buffer_, p); }

// ---- ThreadSafeFixedBufferAllocator ----

Allocator ThreadSafeFixedBufferAllocator::allocator() {
  return Allocator{this, &vtable_for<Entries<ThreadSafeFixedBufferAllocator>>};
}

void* ThreadSafeFixedBufferAllocator::alloc(std::size_t len, Alignment alignment) {
  std::size_t end = end_index_.load(std::memory_order_relaxed);
  for (;;) {
    const std::size_t start = fit(buffer_, end, len, alignment);
    if (start == SIZE_MAX) return nullptr;
    // acq_rel: the range may have been freed (rewound) by another thread
    // just before; acquire orders our use after its last writes, and release
    // lets a later rewind-and-reuse by someone else see ours.
    if (end_index_.compare_exchange_weak(end, start + len, std::memory_order_acq_rel,
                                         std::memory_order_relaxed)) {
      return buffer_.data() + start;
    }
    retries_.fetch_add(1, std::memory_order_relaxed);
  }
}

bool ThreadSafeFixedBufferAllocator::resize(Bytes memory, std::size_t new_len) {
  const std::size_t start = static_cast<std::size_t>(memory.data() - buffer_.data());
  std::size_t expected = start + memory.size();
  if (new_len > buffer_.size() - start) return false;
  if (end_index_.compare_exchange_strong(expected, start + new_len,
                                         std::memory_order_acq_rel,
                                         std::memory_order_relaxed)) {
    return true;
  }
  return new_len <= memory.size();  // not last (any more): shrink is a no-op
}

void ThreadSafeFixedBufferAllocator::free(Bytes memory, std::uintptr_t ret_addr) {
  bool rewind = false;
  // A live block always lies below the end index, whatever other threads do,
  // so one relaxed look is enough to tell a stale free.
  const WrongFree wrong =
      classify(buffer_, memory, end_index_.load(std::memory_order_relaxed), &rewind);
  if (wrong != WrongFree::kNone) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    report("alloy::ThreadSafeFixedBufferAllocator", wrong, memory, ret_addr);
    return;
  }
  const std::size_t start = static_cast<std::size_t>(memory.data() - buffer_.data());
  std::size_t expected = start + memory.size();
  // Rewinds only if it is still the last allocation; otherwise a no-op.
  end_index_.compare_exchange_strong(expected, start, std::memory_order_acq_rel,
                                     std::memory_order_relaxed);
}

bool ThreadSafeFixedBufferAllocator::owns(const void* p) const {
  return inside(buffer_, p);
}

}  // namespace alloy
