#include "alloy/allocators/wrappers/counting_allocator.h"

#include "alloy/alloc_iface/make_vtable.h"

namespace alloy {
namespace {

constexpr auto kRelaxed = std::memory_order_relaxed;

template <bool kShared>
void add(std::atomic<std::size_t>& counter, std::size_t delta) {
  if constexpr (kShared) {
    counter.fetch_add(delta, kRelaxed);
  } else {
    counter.store(counter.load(kRelaxed) + delta, kRelaxed);
  }
}

// counter -= delta, stopping at zero; false if it had to stop there.
template <bool kShared>
bool sub(std::atomic<std::size_t>& counter, std::size_t delta) {
  std::size_t old = counter.load(kRelaxed);
  for (;;) {
    const std::size_t now = delta > old ? 0 : old - delta;
    if constexpr (kShared) {
      if (counter.compare_exchange_weak(old, now, kRelaxed)) break;
    } else {
      counter.store(now, kRelaxed);
      break;
    }
  }
  return delta <= old;
}

// live += bytes, then raise the peak if this is a new high.
template <bool kShared>
void add_live(std::atomic<std::size_t>& live, std::atomic<std::size_t>& peak,
              std::size_t bytes) {
  std::size_t now = 0;
  if constexpr (kShared) {
    now = live.fetch_add(bytes, kRelaxed) + bytes;
  } else {
    now = live.load(kRelaxed) + bytes;
    live.store(now, kRelaxed);
  }
  std::size_t high = peak.load(kRelaxed);
  if (now <= high) return;
  if constexpr (kShared) {
    while (now > high && !peak.compare_exchange_weak(high, now, kRelaxed)) {
    }
  } else {
    peak.store(now, kRelaxed);
  }
}

}  // namespace

template <bool kShared>
struct CountingAllocator::Ops {
  static void change_live(CountingAllocator* self, Bytes memory, std::size_t new_len,
                          std::uintptr_t ret_addr) {
    const std::size_t old_len = memory.size();
    if (new_len > old_len) {
      add_live<kShared>(self->live_bytes_, self->peak_bytes_, new_len - old_len);
    } else if (!sub<kShared>(self->live_bytes_, old_len - new_len)) {
      self->log_.refuse("alloy::CountingAllocator", WrongFree::kCounterUnderflow,
                        memory.data(), memory.size(), ret_addr,
                        "shrink of a block longer than what is live; live bytes stopped at zero");
    }
  }

  static void* vt_alloc(void* ctx, std::size_t len, Alignment alignment,
                        std::uintptr_t ret_addr) {
    auto* self = static_cast<CountingAllocator*>(ctx);
    add<kShared>(self->allocs_, 1);
    void* p = self->child_.raw_alloc(len, alignment, ret_addr);
    if (p == nullptr) {
      add<kShared>(self->alloc_failures_, 1);
      return nullptr;
    }
    add_live<kShared>(self->live_bytes_, self->peak_bytes_, len);
    return p;
  }

  // Size feedback: the child's answer, charged in full (the usable length is
  // the caller's to use and to free with).
  static Bytes vt_alloc_at_least(void* ctx, std::size_t len, Alignment alignment,
                                 std::uintptr_t ret_addr) {
    auto* self = static_cast<CountingAllocator*>(ctx);
    add<kShared>(self->allocs_, 1);
    Bytes b = self->child_.raw_alloc_at_least(len, alignment, ret_addr);
    if (b.data() == nullptr) {
      add<kShared>(self->alloc_failures_, 1);
      return b;
    }
    add_live<kShared>(self->live_bytes_, self->peak_bytes_, b.size());
    return b;
  }

  static void* vt_alloc_zeroed(void* ctx, std::size_t len, Alignment alignment,
                               std::uintptr_t ret_addr) {
    auto* self = static_cast<CountingAllocator*>(ctx);
    add<kShared>(self->allocs_, 1);
    void* p = self->child_.raw_alloc_zeroed(len, alignment, ret_addr);
    if (p == nullptr) {
      add<kShared>(self->alloc_failures_, 1);
      return nullptr;
    }
    add_live<kShared>(self->live_bytes_, self->peak_bytes_, len);
    return p;
  }

  static Ownership vt_owns(void* ctx, const void* ptr) {
    return static_cast<CountingAllocator*>(ctx)->child_.owns(ptr);
  }

  static bool vt_resize(void* ctx, Bytes memory, Alignment alignment, std::size_t new_len,
                        std::uintptr_t ret_addr) {
    auto* self = static_cast<CountingAllocator*>(ctx);
    add<kShared>(self->resizes_, 1);
    if (!self->child_.raw_resize(memory, alignment, new_len, ret_addr)) {
      add<kShared>(self->resize_failures_, 1);
      return false;
    }
    change_live(self, memory, new_len, ret_addr);
    return true;
  }

  static void* vt_remap(void* ctx, Bytes memory, Alignment alignment, std::size_t new_len,
                        std::uintptr_t ret_addr) {
    auto* self = static_cast<CountingAllocator*>(ctx);
    add<kShared>(self->remaps_, 1);
    void* p = self->child_.raw_remap(memory, alignment, new_len, ret_addr);
    if (p == nullptr) {
      add<kShared>(self->remap_failures_, 1);
      return nullptr;
    }
    change_live(self, memory, new_len, ret_addr);
    return p;
  }

  static void vt_free(void* ctx, Bytes memory, Alignment alignment, std::uintptr_t ret_addr) {
    auto* self = static_cast<CountingAllocator*>(ctx);
    if (memory.size() > self->live_bytes_.load(kRelaxed) || self->live_blocks() == 0) {
      // More than is live: not a block (of that length) that came through here.
      self->log_.refuse("alloy::CountingAllocator", WrongFree::kCounterUnderflow,
                        memory.data(), memory.size(), ret_addr, "not passed to the child");
      return;
    }
    add<kShared>(self->frees_, 1);
    if (!sub<kShared>(self->live_bytes_, memory.size())) {
      self->log_.refuse("alloy::CountingAllocator", WrongFree::kCounterUnderflow,
                        memory.data(), memory.size(), ret_addr,
                        "racing wrong frees; live bytes stopped at zero");
    }
    self->child_.raw_free(memory, alignment, ret_addr);
  }
};

const VTable CountingAllocator::kSharedVTable = make_vtable<Ops<true>>();
const VTable CountingAllocator::kSingleThreadVTable = make_vtable<Ops<false>>();

std::size_t CountingAllocator::live_blocks() const {
  // Frees first: a free is never counted before its alloc, so reading the
  // frees before the allocs cannot come out negative once quiet; clamp the
  // transient case anyway.
  const std::size_t frees = frees_.load(kRelaxed);
  const std::size_t failures = alloc_failures_.load(kRelaxed);
  const std::size_t allocs = allocs_.load(kRelaxed) + live_at_reset_.load(kRelaxed);
  const std::size_t done = frees + failures;
  return allocs > done ? allocs - done : 0;
}

CountingStats CountingAllocator::stats() const {
  CountingStats s;
  s.live_blocks = live_blocks();
  s.live_bytes = live_bytes_.load(kRelaxed);
  s.peak_bytes = peak_bytes_.load(kRelaxed);
  s.allocs = allocs_.load(kRelaxed);
  s.alloc_failures = alloc_failures_.load(kRelaxed);
  s.resizes = resizes_.load(kRelaxed);
  s.resize_failures = resize_failures_.load(kRelaxed);
  s.remaps = remaps_.load(kRelaxed);
  s.remap_failures = remap_failures_.load(kRelaxed);
  s.frees = frees_.load(kRelaxed);
  return s;
}

void CountingAllocator::reset_totals() {
  // live_blocks is derived from the totals: carry the current value over.
  live_at_reset_.store(live_blocks(), kRelaxed);
  peak_bytes_.store(live_bytes_.load(kRelaxed), kRelaxed);
  for (auto* c : {&allocs_, &alloc_failures_, &resizes_, &resize_failures_, &remaps_,
                  &remap_failures_, &frees_}) {
    c->store(0, kRelaxed);
  }
}

}  // namespace alloy
