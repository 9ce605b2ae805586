// The public entry points of engine.h: thin calls into the inline fast path
// (fast_path.h) and the slow paths of the other files.
#include <sys/mman.h>

#include <cstring>

#include "alloy/allocators/engine/core_state.h"
#include "alloy/allocators/engine/engine.h"
#include "alloy/allocators/engine/fast_path.h"


// ===========================================================================
// Public entry points (engine.h).
// ===========================================================================
namespace alloy::engine {

using namespace detail;

void* alloc(std::size_t size) noexcept { return inline_alloc(size); }

void* alloc_zeroed(std::size_t size) noexcept {
  if (size <= kSmallMax) {
    void* p = inline_alloc(size);
    if (p != nullptr) std::memset(p, 0, size);
    return p;
  }
  ThreadHeap* l = t_local;
  if (l == &g_scope_local) return scope_alloc(size, 16, true);  // an AccountScope
  if (l->carve) return scope_carve_alloc(l, size, 16, true);
  if (l == &g_empty_local) {
    l = thread_init();
    if (l == nullptr) return nullptr;
  }
  // Heap profiles: charged as alloc_generic charges malloc's (sampling.cc);
  // a sampled block comes from the profile's heap, not zeroed.
  if (prof_on()) [[unlikely]] {
    if (void* q = prof_alloc_big(size, 16)) {
      std::memset(q, 0, size);
      return q;
    }
  }
  if (size <= kLargeMax) {
    bool zero = false;
    void* p = large_alloc(l, size, 16, &zero);
    if (p != nullptr && !zero) std::memset(p, 0, size);
    return p;
  }
  std::size_t dirty = size;
  void* p = huge_alloc(l->heap, l, size, 16, &dirty);
  if (p != nullptr && dirty != 0) std::memset(p, 0, dirty);
  return p;
}

void* alloc_aligned(std::size_t size, std::size_t alignment) noexcept {
  if (alignment <= 16) return inline_alloc(size);
  return alloc_generic(t_local, size, alignment);
}

void free(void* p) noexcept { inline_free(p); }

void free_sized(void* p, std::size_t size) noexcept {
#if !defined(NDEBUG)
  if (p != nullptr) {
    const std::size_t usable = usable_size_of(p);
    if (size > usable) {
      report("engine", "free_sized of", p, size, "larger than the block",
             reinterpret_cast<std::uintptr_t>(__builtin_return_address(0)));
      return;
    }
  }
#else
  (void)size;
#endif
  inline_free(p);
}

std::size_t usable_size(const void* p) noexcept { return usable_size_of(p); }

bool owns(const void* p) noexcept { return inline_owns(p); }

void* realloc(void* p, std::size_t size) noexcept {
  Segment* seg = segment_of(p);
  Span* pg = span_of(seg, p);
  // A block of an alloy::Heap stays in its heap (its ceiling, visit, destroy).
  if (HeapCore* h = seg->local->heap; !h->is_default) {
    if (h == &g_prof_heap) [[unlikely]] return prof_realloc(p, size);  // a sampled block moves out
    return heap_realloc(p, size, 16, 0);
  }
  const std::size_t usable = usable_size_of(p);
  const bool huge = pg->kind == kHugeBlock;
  if (huge ? size <= usable : keeps_in_place(size, usable)) return p;
  if (huge && size > usable) {
    if (void* q = huge_grow(p, size, true)) return q;
  }
  if (pg->kind == kLargeBlock && size > usable && size <= kLargeMax &&
      large_grow_in_place(seg, pg, size)) {
    return p;
  }
  // A large block that must move to grow is likely to grow again (append
  // loops): give it 25% headroom so the next growths stay in place. Its
  // slack is whole slices it does not touch, so it costs no RSS. A small
  // block gets only its size class's own slack (at most 1/8): many small
  // buffers grown to a cap by small reallocs (redis's listpacks) would keep
  // the headroom for good (issue 12: +20% RSS under redis).
  std::size_t want = size;
  if (size > usable && size > kSmallMax && size <= kLargeMax) {
    const std::size_t roomy = usable + usable / 4;
    if (roomy > want) want = roomy <= kLargeMax ? roomy : kLargeMax;
  }
  void* q = inline_alloc(want);
  if (q == nullptr && want != size) q = inline_alloc(size);
  if (q == nullptr) return nullptr;
  std::memcpy(q, p, usable < size ? usable : size);
  inline_free(p);
  return q;
}

bool resize_in_place(void* p, std::size_t size) noexcept {
  if (size <= usable_size_of(p)) return true;
  Segment* seg = segment_of(p);
  Span* pg = span_of(seg, p);
  if (seg->local->heap->account != nullptr) return false;  // an account's blocks do not grow
  if (pg->kind == kLargeBlock) return size <= kLargeMax && large_grow_in_place(seg, pg, size);
  if (pg->kind != kHugeBlock) return false;
  return huge_grow(p, size, false) != nullptr;
}

bool secure_mode() noexcept {
  if (g_secure_state == kSecureUnknown) ensure_process_init();
  return g_secure_state == kSecureOn;
}

void secure_release(void* p) noexcept {
  Segment* seg = segment_of(p);
  Span* pg = span_of(seg, p);
  if (seg->owner_tid.load(std::memory_order_relaxed) == owner_id() && pg->kind != kHugeBlock) {
    local_push(pg, p);
  } else {
    free_cross(seg, pg, p);
  }
}

void set_thread_exit_hook(void (*hook)()) noexcept {
  g_thread_exit_hook.store(hook, std::memory_order_release);
}

bool in_default_heap(const void* p) noexcept { return segment_of(p)->local->heap->is_default; }

void set_abort_on_error(bool on) noexcept { g_abort_on_error.store(on, std::memory_order_relaxed); }

void set_eager_purge(bool on) noexcept {
  g_default_heap.eager.store(on, std::memory_order_relaxed);
}

void collect() noexcept { heap_collect(&g_default_heap); }

}  // namespace alloy::engine
