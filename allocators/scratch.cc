#include "alloy/allocators/scratch.h"

#include <algorithm>
#include <cstring>

#include "alloy/alloc_iface/make_vtable.h"
#include "alloy/allocators/wrong_free.h"
#include "alloy/base/config.h"

#if defined(ALLOY_HAVE_ASAN)
#include <sanitizer/asan_interface.h>
#endif

namespace alloy {
namespace {

constexpr Alignment kChunkAlignment = Alignment::from_log2(4);
constexpr std::size_t kMaxGrowth = std::size_t{1} << 30;

void poison(std::uintptr_t lo, std::uintptr_t hi) {
  if (!Scratch::kPoisons || hi <= lo) return;
#if defined(ALLOY_HAVE_ASAN)
  // Parts of the range may be poisoned already (an earlier restore).
  ASAN_UNPOISON_MEMORY_REGION(reinterpret_cast<void*>(lo), hi - lo);
#endif
  std::memset(reinterpret_cast<void*>(lo), static_cast<int>(Scratch::kPoisonByte), hi - lo);
#if defined(ALLOY_HAVE_ASAN)
  ASAN_POISON_MEMORY_REGION(reinterpret_cast<void*>(lo), hi - lo);
#endif
}

}  // namespace

Scratch& Scratch::local() {
  static thread_local Scratch scratch;
  return scratch;
}

Scratch::Scratch(Allocator child, std::size_t first_chunk)
    : chunks_(child), next_size_(std::max(first_chunk, kHeader + 64)) {}

Scratch::~Scratch() { release_at(ALLOY_RETURN_ADDRESS()); }

struct Scratch::Entries {
  // A new chunk is asked for with the handle's ret_addr.
  static void* vt_alloc(void* ctx, std::size_t len, Alignment alignment,
                        std::uintptr_t ret_addr) {
    auto* self = static_cast<Scratch*>(ctx);
    if (void* p = bump_take(self->cur_, self->end_, len, alignment.bytes())) [[likely]] {
      Scratch::unpoison(p, len);
      return p;
    }
    return self->alloc_slow_at(len, alignment.bytes(), ret_addr);
  }
  static bool vt_resize(void* ctx, Bytes memory, Alignment, std::size_t new_len,
                        std::uintptr_t) {
    return static_cast<Scratch*>(ctx)->resize_last(memory, new_len);
  }
  static void* vt_remap(void* ctx, Bytes memory, Alignment, std::size_t new_len,
                        std::uintptr_t) {
    return static_cast<Scratch*>(ctx)->resize_last(memory, new_len) ? memory.data() : nullptr;
  }
  static void vt_free(void* ctx, Bytes memory, Alignment, std::uintptr_t ret_addr) {
    static_cast<Scratch*>(ctx)->free_last(memory, ret_addr);
  }
  static Ownership vt_owns(void* ctx, const void* p) {
    return ownership(static_cast<Scratch*>(ctx)->owns(p));
  }
};

Allocator Scratch::allocator() { return Allocator{this, &vtable_for<Entries>}; }

void Scratch::unpoison([[maybe_unused]] void* p, [[maybe_unused]] std::size_t len) {
#if defined(ALLOY_HAVE_ASAN) && !defined(NDEBUG)
  ASAN_UNPOISON_MEMORY_REGION(p, len);
#endif
}

void Scratch::enter(Chunk* c) {
  current_ = c;
  cur_ = start_of(c);
  end_ = end_of(c);
}

void Scratch::free_after(Chunk* c, std::uintptr_t ret_addr) {
  for (Chunk* n = c != nullptr ? c->next : chunks_.first(); n != nullptr; n = n->next) {
    unpoison(n, n->size);  // the child may hand these bytes to anyone next
  }
  chunks_.free_after(c, ret_addr);
}

void* Scratch::alloc_slow(std::size_t len, std::size_t align) {
  return alloc_slow_at(len, align, ALLOY_RETURN_ADDRESS());
}

void* Scratch::alloc_slow_at(std::size_t len, std::size_t align, std::uintptr_t ret_addr) {
  std::size_t need = 0;
  if (__builtin_add_overflow(len, kHeader + (align - 1), &need) || need > PTRDIFF_MAX) {
    return nullptr;
  }
  // Reuse the next retained chunk when it is big enough; otherwise the
  // retained tail (all free by definition) makes way for a bigger chunk.
  Chunk* next = current_ != nullptr ? current_->next : chunks_.first();
  if (next != nullptr && next->size < need) {
    free_after(current_, ret_addr);
    next = nullptr;
  }
  if (next == nullptr) {  // current_ is the newest chunk (or there is none)
    std::size_t size = std::max(need, next_size_);
    next = chunks_.append(size, kChunkAlignment, ret_addr);
    if (next == nullptr && size > need) next = chunks_.append(need, kChunkAlignment, ret_addr);
    if (next == nullptr) return nullptr;
    next_size_ = std::min(next_size_ * 2, kMaxGrowth);
  }
  enter(next);
  const std::uintptr_t p = (cur_ + (align - 1)) & ~(std::uintptr_t{align} - 1);
  cur_ = p + len;
  unpoison(reinterpret_cast<void*>(p), len);
  return reinterpret_cast<void*>(p);
}

bool Scratch::restore(Checkpoint cp) {
  auto* target = static_cast<Chunk*>(cp.chunk);
  // The checkpoint must be at or below the top: its chunk is the current one
  // or an earlier one in the chain.
  if (target == current_) {
    if (cp.cur > cur_) return false;
  } else {
    bool found = target == nullptr;
    for (Chunk* c = current_ != nullptr ? current_->prev : nullptr; c != nullptr && !found;
         c = c->prev) {
      found = c == target;
    }
    if (!found) return false;
  }
  if (target == nullptr) {
    if (chunks_.empty()) return true;  // nothing was ever allocated
    target = chunks_.first();
    cp.cur = start_of(target);
  }
  if (kPoisons) {
    for (Chunk* c = target;; c = c->next) {
      const std::uintptr_t lo = c == target ? cp.cur : start_of(c);
      const std::uintptr_t hi = c == current_ ? cur_ : end_of(c);
      poison(lo, hi);
      if (c == current_) break;
    }
  }
  current_ = target;
  cur_ = cp.cur;
  end_ = end_of(target);
  return true;
}

void Scratch::release() { release_at(ALLOY_RETURN_ADDRESS()); }

void Scratch::release_at(std::uintptr_t ret_addr) {
  free_after(nullptr, ret_addr);
  current_ = nullptr;
  cur_ = end_ = 0;
}

std::size_t Scratch::capacity() const { return chunks_.usable_bytes(); }

std::size_t Scratch::chunk_count() const { return chunks_.count(); }

bool Scratch::owns(const void* p) const { return chunks_.find(p) != nullptr; }

bool Scratch::resize_last(Bytes memory, std::size_t new_len) {
  const auto start = reinterpret_cast<std::uintptr_t>(memory.data());
  if (start + memory.size() != cur_) return new_len <= memory.size();
  if (new_len > end_ - start) return false;
  cur_ = start + new_len;
  unpoison(memory.data(), new_len);
  return true;
}

void Scratch::free_last(Bytes memory, std::uintptr_t ret_addr) {
  const auto start = reinterpret_cast<std::uintptr_t>(memory.data());
  WrongFree wrong = WrongFree::kNone;
  if (current_ != nullptr && start >= start_of(current_) && start < end_) {
    if (bump_apply_free(start, memory.size(), cur_)) return;
    wrong = WrongFree::kDouble;
  } else if (kCheckedFrees) {
    // Which chunk? Earlier than the current one: a no-op. Later: dropped by
    // a restore. None: foreign.
    wrong = WrongFree::kForeign;
    bool past_current = current_ == nullptr;
    for (const Chunk* c = chunks_.first(); c != nullptr; c = c->next) {
      if (start >= start_of(c) && start < end_of(c)) {
        wrong = past_current ? WrongFree::kDouble : WrongFree::kNone;
        break;
      }
      if (c == current_) past_current = true;
    }
    if (wrong == WrongFree::kNone) return;
  } else {
    return;
  }
  ++refused_;
  report_wrong_free("alloy::Scratch", to_string(wrong), memory.data(), memory.size(), ret_addr,
                    wrong == WrongFree::kDouble
                        ? "the block lies at or above the cursor (freed, or dropped by a "
                          "restored checkpoint)"
                        : nullptr);
}

}  // namespace alloy
