// HeapCore lifetime: init, the registry of user heaps, collect, and the
// release of every mapping of a destroyed heap.
#include <sys/mman.h>

#include <new>

#include "alloy/allocators/engine/core_state.h"
#include "alloy/profile/sampler.h"

namespace alloy::engine::detail {

bool heap_init(HeapCore* h) noexcept {
  ensure_process_init();
  h->local.heap = h;
  h->local.tid = 0;
  return true;
}

void register_heap(HeapCore* h) noexcept {
  Guard g(g_heaps_lock);
  h->prev_heap = nullptr;
  h->next_heap = g_heaps;
  if (g_heaps) g_heaps->prev_heap = h;
  g_heaps = h;
}
void unregister_heap(HeapCore* h) noexcept {
  Guard g(g_heaps_lock);
  if (h->prev_heap) h->prev_heap->next_heap = h->next_heap; else g_heaps = h->next_heap;
  if (h->next_heap) h->next_heap->prev_heap = h->prev_heap;
}

void heap_collect(HeapCore* h) noexcept {
  if (h->is_default) {
    if (own_local() != &g_empty_local) local_collect_impl(own_local(), true);
    {
      Guard g(h->lock);
      for (ThreadHeap* l = h->idle; l != nullptr; l = l->pool_next) local_collect_impl(l, true);
    }
    huge_cache_flush();
    segcache_flush();
    return;
  }
  {
    Guard g(h->lock);
    local_collect_impl(&h->local, true);
    if (ThreadHeap* s = heap_sampled_local(h)) local_collect_impl(s, true);
  }
  huge_cache_flush();
  segcache_flush();
}

namespace {
void release_segments(HeapCore* h, ThreadHeap* l) noexcept {
  Segment* seg = l->segments;
  while (seg != nullptr) {
    Segment* next = seg->next;
    heap_uncommit(h, mask_bytes(seg->committed_mask));
    ALLOY_UNPOISON(seg, kSegmentSize);
    owns_mark(seg, kSegmentSize, false);
    os_unmap(seg, kSegmentSize);
    seg = next;
  }
  l->segments = nullptr;
}
}  // namespace

// Unmaps every segment and huge block of a user heap (destroy). A profiled
// heap's sampled ThreadHeap is left empty and usable, its samples forgotten.
void heap_release_all(HeapCore* h) noexcept {
  Guard g(h->lock);
  release_segments(h, &h->local);
  if (ThreadHeap* s = heap_sampled_local(h)) {
    release_segments(h, s);
    profile::Sampler* sampler = s->sampler;
    ::new (s) ThreadHeap();
    s->heap = h;
    s->sampler = sampler;
    sampler->forget_all();
  }
  Guard hg(h->huge_lock);
  Segment* seg = h->huge;
  while (seg != nullptr) {
    Segment* next = seg->next;
    heap_uncommit(h, seg->mapped);
    owns_mark(seg, seg->mapped, false);
    os_unmap(seg, seg->mapped);
    seg = next;
  }
  h->huge = nullptr;
}

}  // namespace alloy::engine::detail
