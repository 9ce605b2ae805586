// alloy::Heap's block operations on the engine's internals (alloc, free,
// resize, remap, realloc of a HeapCore's blocks): part of the engine core, so
// engine::realloc keeps a user heap's block in its heap without the core
// depending on alloy::Heap (heap.cc) or alloc_iface.
#include <cstring>

#include "alloy/allocators/engine/engine.h"
#include "alloy/allocators/engine/fast_path.h"
#include "alloy/allocators/engine/internal.h"

namespace alloy::engine::detail {

namespace d = ::alloy::engine::detail;

// The heap whose visit() is calling its callback on this thread, with the
// heap's lock held: a free from the callback must neither take that lock
// again nor release it (BiasedLock is not reentrant).
__thread HeapCore* t_visiting __attribute__((tls_model("initial-exec"))) = nullptr;


void* heap_alloc_raw(HeapCore* h, std::size_t size, std::size_t align) noexcept {
  const BiasedLock::Mode mode = h->lock.acquire();
  void* p = nullptr;
  // A profiled heap (sampling.cc): a sampled allocation comes from the heap's
  // ThreadHeap of sampled blocks (the usual one if that fails).
  bool sampled = false;
  if (d::kProfileHooks && h->profile != nullptr) [[unlikely]] {
    if (d::heap_sample_charge(h, size)) {
      p = d::local_alloc(d::heap_sampled_local(h), size, align);
      sampled = p != nullptr;
    }
  }
  // The default heap's inline pop first, on this heap's one ThreadHeap, at the
  // class local_alloc would pick.
  if (p == nullptr && size <= d::kDirectMax && align <= 16) {
    p = d::direct_pop(&h->local, d::direct_slot(size, align));
  }
  if (p == nullptr) p = d::local_alloc(&h->local, size, align);
  h->lock.release(mode);
  if (p != nullptr && h->account != nullptr) [[unlikely]] {
    // An account's heap: charged outside the lock (a soft-limit callback may
    // allocate); a refused block goes straight back, uncredited.
    d::Segment* seg = d::segment_of(p);
    d::Span* pg = d::span_of(seg, p);
    const std::size_t usable = pg->kind == d::kSmallPage ? pg->block_size : d::usable_size_of(p);
    if (!h->account->charge(h->account, usable, size)) {
      if (pg->kind == d::kHugeBlock) {
        (void)d::huge_free(seg);
      } else {
        d::Guard g(h->lock);
        d::local_push(pg, p);
      }
      return nullptr;
    }
  }
  if (sampled) [[unlikely]] d::heap_sample_record(h, p, size);  // outside the heap's lock
  return p;
}

namespace {

void refuse(const char* op, const void* p, std::size_t size, const char* why,
            std::uintptr_t ret) noexcept {
  if constexpr (d::kChecked) d::report("Heap", op, p, size, why, ret);
}

// True if block b is on one of pg's free lists; the walk is bounded by the
// page's capacity. The caller owns pg's ThreadHeap.
bool on_free_list(d::Span* pg, const void* b) noexcept {
  std::size_t budget = std::size_t{pg->capacity} + 1;
  const std::uintptr_t start = d::page_start(d::segment_of(pg), pg);
  for (d::Block* l : {pg->free, pg->local_free}) {
    for (; l != nullptr && budget != 0 && d::link_ok(pg, l, start); l = d::decode_link(l), --budget) {
      if (l == b) return true;
    }
  }
  return false;
}

// Checked builds: whether small block p may be on a free list (d::kFreedMark);
// false only for a block that certainly is not.
[[maybe_unused]] bool may_be_free(d::Span* pg, const void* p) noexcept {
  if (pg->block_size <= sizeof(void*)) return true;
  const auto* word = static_cast<const std::uintptr_t*>(p) + 1;
#if defined(ALLOY_HAVE_ASAN)
  if (__asan_address_is_poisoned(word)) return true;  // freed: local_push / free_cross poison it
#endif
  return *word == d::kFreedMark;
}

constexpr const char* kDoubleFree = "already free (a double free)";

// Why small or large block p of pg may not be freed, or null; the caller
// owns pg's ThreadHeap (its thread, or the user heap's lock). Every build: the
// block was carved, is not the head of a free list, and a large block is
// not already on its way back; checked builds walk the free lists.
const char* owner_check(d::Span* pg, const void* p) noexcept {
  if (pg->kind == d::kSmallPage) {
    const auto off = reinterpret_cast<std::uintptr_t>(p) -
                     d::page_start(d::segment_of(pg), pg);
    if (off / pg->block_size >= pg->capacity) return "never handed out";
    if (p == pg->free || p == pg->local_free ||
        (pg->thread_free.load(std::memory_order_acquire) & ~d::kTfFlags) ==
            reinterpret_cast<std::uintptr_t>(p)) {
      return kDoubleFree;
    }
    if constexpr (d::kChecked) {
      d::page_collect(pg);  // blocks freed from other threads, onto local_free
      if (may_be_free(pg, p) && on_free_list(pg, p)) return kDoubleFree;
    }
    return nullptr;
  }
  if (d::live(pg) == 0 || (pg->thread_free.load(std::memory_order_acquire) & ~d::kTfFlags) != 0) {
    return kDoubleFree;
  }
  return nullptr;
}

// Lock-free side: p's page belongs to another thread (or the user heap's
// lock is busy). Only the atomic thread_free list can be looked at.
const char* cross_check(d::Span* pg, const void* p) noexcept {
  const std::uintptr_t tf = pg->thread_free.load(std::memory_order_acquire) & ~d::kTfFlags;
  if (pg->kind == d::kLargeBlock ? tf != 0 : tf == reinterpret_cast<std::uintptr_t>(p)) {
    return kDoubleFree;
  }
  return nullptr;
}

}  // namespace

// Every free of a Heap or handle: p is checked (block_check, then the
// owner or cross checks) and freed into the heap that owns it, or refused.
// A small or large block of a user heap whose lock is free right now takes
// the owner's path under the lock (no CAS, no later collection); checked
// builds always wait for the lock, so every free walks the free lists.
void heap_free(void* p, std::uintptr_t ret) noexcept {
  if (p == nullptr) return;
  d::Segment* seg;
  d::Span* pg;
  if (const char* why = d::block_check(p, &seg, &pg)) {
    refuse("free of", p, 0, why, ret);
    return;
  }
  HeapCore* h = seg->local->heap;
  // A sampled block (sampling.cc) is forgotten once, before it goes back (so
  // a new sample of its address is never the one forgotten): here when freed
  // by the owner's push or as a huge block, in free_cross otherwise.
  d::ThreadHeap* const sampled =
      d::kProfileHooks && seg->local->sampler != nullptr ? seg->local : nullptr;
  auto owner_push = [&] {
    if (sampled != nullptr) [[unlikely]] d::prof_free(sampled, p);
    d::local_push(pg, p);
  };
  // An account's block is credited once: here when freed under the lock or
  // as a huge block, in free_cross otherwise.
  d::HeapAccount* const acct = h->account;
  const std::size_t usable = acct != nullptr ? d::usable_size_of(p) : 0;
  if (pg->kind == d::kHugeBlock) {
    // A huge block's double free is seen by huge_free alone: forgotten first
    // (a second free finds no sample).
    if (sampled != nullptr) [[unlikely]] d::prof_free(sampled, p);
    if (!d::huge_free(seg)) {
      refuse("free of", p, 0, kDoubleFree, ret);
    } else if (acct != nullptr) {
      acct->credit(acct, usable);
    }
    return;
  }
  const char* why = nullptr;
  if (h->is_default) {
    if (seg->owner_tid.load(std::memory_order_relaxed) == d::thread_id()) {
      why = owner_check(pg, p);
      if (why == nullptr) d::local_push(pg, p);
    } else {
      why = cross_check(pg, p);
      if (why == nullptr) d::free_cross(seg, pg, p);
    }
  } else if (h == t_visiting || &h->local == t_scope_lane) {
    // Visit's callback, or an AccountScope that leases h: the lock is ours already.
    why = owner_check(pg, p);
    if (why == nullptr) owner_push();
    // A lease in carve mode keeps the freed block charged (scope.cc).
    if (why == nullptr && acct != nullptr && !seg->local->carve) acct->credit(acct, usable);
  } else if (!h->leased.load(std::memory_order_relaxed) && (d::kChecked || h->lock.try_lock())) {
    // (A heap an AccountScope leases keeps its lock for the scope: cross path.)
    if constexpr (d::kChecked) h->lock.lock();
    why = owner_check(pg, p);
    if (why == nullptr) owner_push();  // the owner's free, as on the default heap
    h->lock.unlock();
    if (why == nullptr && acct != nullptr) acct->credit(acct, usable);
  } else {
    why = cross_check(pg, p);
    if (why == nullptr) d::free_cross(seg, pg, p);
  }
  if (why != nullptr) refuse("free of", p, 0, why, ret);
}

namespace {

void* owner_alloc(HeapCore* h, std::size_t size, std::size_t align) noexcept {
  if (h->is_default) return engine::alloc_aligned(size, align);
  // A heap this thread leases for an AccountScope: its lock is held already.
  if (&h->local == t_scope_lane) {
    return h->local.carve ? scope_carve_alloc(&h->local, size, align, false)
                          : scope_alloc(size, align, false);
  }
  return heap_alloc_raw(h, size, align);
}

// large_grow_owned from whoever may: the owning thread of a default-heap
// segment, or anyone holding the user heap's lock.
bool grow_large(HeapCore* h, d::Segment* seg, d::Span* pg, std::size_t size) noexcept {
  if (h->is_default) {
    const std::uintptr_t owner = seg->owner_tid.load(std::memory_order_relaxed);
    return owner != 0 && owner == d::thread_id() && d::large_grow_owned(seg, pg, size);
  }
  if (h == t_visiting) return d::large_grow_owned(seg, pg, size);
  d::Guard g(h->lock);
  return d::large_grow_owned(seg, pg, size);
}

}  // namespace

bool heap_resize(void* p, std::size_t size, std::uintptr_t ret) noexcept {
  d::Segment* seg;
  d::Span* pg;
  if (const char* why = d::block_check(p, &seg, &pg)) {
    refuse("resize of", p, size, why, ret);
    return false;
  }
  if (size <= d::usable_size_of(p)) return true;
  if (seg->local->heap->account != nullptr) return false;  // an account's blocks do not grow
  if (pg->kind == d::kLargeBlock) {
    return size <= d::kLargeMax && grow_large(seg->local->heap, seg, pg, size);
  }
  return pg->kind == d::kHugeBlock && d::huge_grow(p, size, false) != nullptr;
}


// Only huge blocks move cheaply (mremap keeps their alignment offset); the
// mapping grows against its own heap's ceiling.
void* heap_remap(void* p, std::size_t size, std::uintptr_t ret) noexcept {
  d::Segment* seg;
  d::Span* pg;
  if (const char* why = d::block_check(p, &seg, &pg)) {
    refuse("remap of", p, size, why, ret);
    return nullptr;
  }
  if (pg->kind != d::kHugeBlock) return nullptr;
  if (size <= d::usable_size_of(p)) return p;
  if (seg->local->heap->account != nullptr) return nullptr;  // an account's blocks do not grow
  return d::huge_grow(p, size, true);
}


// A sized free of a Heap or handle (Allocator::free): checked builds refuse a
// size above the block's usable size, then heap_free.
void heap_free_sized(void* p, std::size_t size, std::uintptr_t ret) noexcept {
  if constexpr (d::kChecked) {
    d::Segment* seg;
    d::Span* pg;
    if (d::block_check(p, &seg, &pg) == nullptr && size > d::usable_size_of(p)) {
      refuse("free of", p, size, "larger than the block", ret);
      return;
    }
  }
  heap_free(p, ret);
}

void* heap_realloc(void* p, std::size_t size, std::size_t align, std::uintptr_t ret) noexcept {
  if (p == nullptr || size == 0) return nullptr;
  Segment* seg;
  Span* pg;
  if (const char* why = block_check(p, &seg, &pg)) {
    refuse("realloc of", p, size, why, ret);
    return nullptr;
  }
  HeapCore* h = seg->local->heap;
  const std::size_t usable = usable_size_of(p);
  // An account's large and huge blocks do not grow in place (their usable
  // size is what was charged): they move, charged anew.
  const bool grows = h->account == nullptr;
  if (pg->kind == kHugeBlock) {
    if (size > usable) {
      if (grows) return huge_grow(p, size, true);  // null: over the ceiling, p intact
    } else if (size > kLargeMax) {
      return p;
    }
    // Down to a small or large block of the same heap: the mapping goes back.
  } else if (keeps_in_place(size, usable)) {
    return p;
  } else if (grows && pg->kind == kLargeBlock && size > usable && size <= kLargeMax &&
             grow_large(h, seg, pg, size)) {
    return p;
  }
  void* q = owner_alloc(h, size, align);
  if (q == nullptr) return size <= usable ? p : nullptr;  // a shrink that cannot move stays
  std::memcpy(q, p, size < usable ? size : usable);
  heap_free(p, ret);
  return q;
}

}  // namespace alloy::engine::detail
