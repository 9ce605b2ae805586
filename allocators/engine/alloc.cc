// The allocation slow paths: what runs when the inline pop of fast_path.h
// finds no block.
#include <sys/mman.h>

#include <cstring>

#include "alloy/allocators/engine/core_state.h"
#include "alloy/allocators/engine/fast_path.h"

namespace alloy::engine::detail {

void* local_alloc(ThreadHeap* l, std::size_t size, std::size_t align) noexcept {
  if (size == 0) size = 1;
  if (align > 8) {
    if (align > kSmallMax) {
      if (size <= kLargeMax && align <= kLargeAlignMax) return large_alloc(l, size, align);
      return huge_alloc(l->heap, l, size, align);
    }
    if (size > kSmallMax) goto big;
    size = (size + align - 1) & ~(align - 1);
  }
  if (size <= kSmallMax) {
    const unsigned c = class_of(size);
    Span* pg = l->queues[c].first;
    if (pg != nullptr && pg->free != nullptr) {
      if (Block* b = page_pop_checked(pg)) return b;
    }
    return alloc_from_class(l, c);
  }
big:
  if (size <= kLargeMax) return large_alloc(l, size, align);
  return huge_alloc(l->heap, l, size, align);
}

// t_local is g_empty_local (the thread's first allocation) or g_scope_local
// (the thread is in an AccountScope): the only ThreadHeaps without a heap.
[[gnu::noinline, gnu::cold]] static void* alloc_pageless(ThreadHeap* l, std::size_t size,
                                                         std::size_t align) noexcept {
  if (l == &g_scope_local) return scope_alloc(size, align, false);
  l = thread_init();
  if (l == nullptr) return nullptr;
  return local_alloc(l, size, align);
}

namespace {
// Inlined into both callers: alloc_generic stays one test in front of it.
[[gnu::always_inline]] inline void* alloc_unsampled(ThreadHeap* l, std::size_t size,
                                                    std::size_t align) noexcept {
  if (size <= kDirectMax && align <= 16 && size != 0) {
    // The page ran dry but the owner freed blocks into it: swap them in.
    Span* pg = l->direct[direct_slot(size, 16)];
    // The inline pop refused a non-null head: report it (link_corrupted).
    if (pg->free != nullptr) {
      if (Block* b = page_pop_checked(pg)) return b;
    }
    if (pg->local_free != nullptr) {
      Block* b = pg->local_free;
      pg->free = b;
      pg->local_free = nullptr;
      return page_take_block(pg, b);
    }
  }
  if (l->heap == nullptr) [[unlikely]] return alloc_pageless(l, size, align);
  // Idle give-back for a thread that allocates lightly (spans.cc). Not
  // before the swap above: a purge pass may reset that very page.
  purge_tick(l);
  return local_alloc(l, size, align);
}
}  // namespace

// Heap profiles (sampling.cc): charged here, never on the inline fast path.
// Out of line, so that with profiling off alloc_generic is one load and
// branch in front of alloc_unsampled (inlined or a tail call): with the
// charge inline, every slow-path visit paid a frame that kept size, align
// and l live across the call (churn8k: +7% instructions, profiling off).
// A scoped allocation (AccountScope) stays in its account's heap: unsampled.
[[gnu::noinline, gnu::cold]] static void* alloc_sampling(ThreadHeap* l, std::size_t size,
                                                         std::size_t align) noexcept {
  if (l == &g_scope_local) return alloc_unsampled(l, size, align);
  // Large and huge requests are charged before a block is taken, so a
  // sampled one takes no block of this heap only to give it back.
  if (size > kSmallMax) {
    if (void* q = prof_alloc_big(size, align)) return q;
    return alloc_unsampled(l, size, align);
  }
  void* p = alloc_unsampled(l, size, align);
  if (p == nullptr) return nullptr;
  // Sizes the inline fast path does not serve come here every time (no
  // direct page's list to charge): their size class is charged inline, no
  // span lookup, unless the countdown crosses (prof_alloc_slow samples).
  if (size > kDirectMax && align <= 16) {
    const auto charged = static_cast<std::int64_t>(class_size(class_of(size)));
    if (t_prof_countdown > charged) {
      t_prof_countdown -= charged;
      return p;
    }
  }
  return prof_alloc_slow(p, size, align);
}

void* alloc_generic(ThreadHeap* l, std::size_t size, std::size_t align) noexcept {
  // An AccountScope's leased heap in carve mode (scope.cc): unsampled too.
  if (l->carve) [[unlikely]] return scope_carve_alloc(l, size, align, false);
  if (prof_on()) [[unlikely]] return alloc_sampling(l, size, align);
  return alloc_unsampled(l, size, align);
}

void* huge_alloc(HeapCore* h, ThreadHeap* l, std::size_t size, std::size_t align,
                 std::size_t* dirty) noexcept {
  if (dirty != nullptr) *dirty = size;
  if (align > kHugeAlignMax || size > (std::size_t{1} << 46)) return nullptr;
  std::size_t off = align > kHugeHeader ? align : kHugeHeader;
  const std::size_t guard = huge_guard();  // the secure mode's guard page
  const std::size_t want = huge_map_size(off, size + guard);
  Segment* seg = nullptr;
  std::size_t mapped = want;
  HugeEntry e;
  if (off == kHugeHeader && !h->eager.load(std::memory_order_relaxed) &&
      huge_cache_take(want, &e, dirty != nullptr || guard != 0)) {
    seg = e.seg;
    mapped = e.mapped;
    if (dirty != nullptr) *dirty = mapped - off < size ? mapped - off : size;  // grown tail is new
    // A cached mapping keeps its guard page; an mremap needs it open.
    if (guard != 0 && mapped != want) huge_guard_at(seg, mapped, false);
    if (mapped < want) {
      Segment* grown = huge_remap(seg, mapped, want, true);
      if (grown == nullptr) {
        owns_mark(seg, mapped, false);
        os_unmap(seg, mapped);
        seg = nullptr;
        mapped = want;
        if (dirty != nullptr) *dirty = size;
      } else {
        seg = grown;
        mapped = want;
      }
    } else if (mapped > want && !h->is_default) {
      // A user heap is charged what its block maps: trim the cached tail so
      // a capped heap is not refused (or charged) for a bigger old mapping.
      if (mremap(seg, mapped, want, 0) != MAP_FAILED) {
        g_os_mapped.fetch_sub(mapped - want, std::memory_order_relaxed);
        owns_mark(reinterpret_cast<char*>(seg) + want, mapped - want, false);
        mapped = want;
      }
    }
  }
  if (!heap_commit(h, mapped)) {
    bool ok = false;
    if (!h->is_default) {
      local_purge(l, 0, true);
      ok = heap_commit(h, mapped);
    }
    if (!ok) {
      if (seg != nullptr && !huge_cache_put(seg, mapped)) {
        owns_mark(seg, mapped, false);
        os_unmap(seg, mapped);
      }
      return nullptr;
    }
  }
  if (seg == nullptr) {
    seg = static_cast<Segment*>(os_map_aligned(mapped, kSegmentSize));
    if (seg == nullptr) {
      heap_uncommit(h, mapped);
      return nullptr;
    }
    owns_mark(seg, mapped, true);
    if (dirty != nullptr) *dirty = 0;  // a new mapping reads as zeros
  }
  if (guard != 0 && align <= kOsPage) {
    // The secure mode: the block ends at the guard page (within an OS page
    // of it), so a linear overflow faults; its start stays in the header's
    // 4 MiB unit (segment_of). A reused mapping's bytes may all be dirty.
    const std::size_t end_off = mapped - guard - ((size + kOsPage - 1) & ~(kOsPage - 1));
    off = end_off < kSegmentSize ? end_off : kSegmentSize - kOsPage;
    if (dirty != nullptr && *dirty != 0) *dirty = size;
  }
  huge_init_header(seg, l, mapped, off);
  if (guard != 0) huge_guard_at(seg, mapped, true);
  huge_link(h, seg);
  return reinterpret_cast<char*>(seg) + off;
}

}  // namespace alloy::engine::detail
