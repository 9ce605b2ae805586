// Free spans (coalesced runs of slices), segments, and the purge policy that
// gives committed free slices back to the OS.
#include <sys/mman.h>

#include "alloy/allocators/engine/core_state.h"

namespace alloy::engine::detail {

// ---- Spans. ----
void span_insert(ThreadHeap* l, Span* s) noexcept {
  Span*& head = l->spans[s->slice_count];
  s->prev = nullptr;
  s->next = head;
  if (head) head->prev = s;
  head = s;
}
void span_remove(ThreadHeap* l, Span* s) noexcept {
  if (s->prev) s->prev->next = s->next; else l->spans[s->slice_count] = s->next;
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = nullptr;
}
void span_set_free(Segment* seg, std::size_t idx, std::size_t n, std::uint64_t t) noexcept {
  Span* first = &seg->pages[idx];
  first->kind = kFreeSpan;
  first->slice_count = static_cast<std::uint8_t>(n);
  first->slice_offset = 0;
  first->freed_at = t;
  if (n > 1) {
    Span* last = &seg->pages[idx + n - 1];
    last->kind = kFreeSpan;
    last->slice_count = 0;
    last->slice_offset = static_cast<std::uint16_t>((n - 1) * sizeof(Span));
  }
}

void span_purge(ThreadHeap* l, Segment* seg, std::size_t idx, std::size_t n) noexcept {
  const std::uint64_t bits = range_mask(idx, n) & seg->committed_mask;
  if (bits == 0) return;
  std::uint64_t rest = bits;
  while (rest != 0) {
    const std::size_t s = static_cast<std::size_t>(__builtin_ctzll(rest));
    std::size_t e = s;
    while (e < kSlices && ((rest >> e) & 1)) ++e;
    os_purge(reinterpret_cast<char*>(seg) + (s << kSliceShift), (e - s) << kSliceShift);
    rest &= ~range_mask(s, e - s);
  }
  seg->committed_mask &= ~bits;
  heap_uncommit(l->heap, static_cast<std::size_t>(__builtin_popcountll(bits)) * kSliceSize);
}


void span_free(ThreadHeap* l, Segment* seg, std::size_t idx, std::size_t n) noexcept {
  seg->used_slices -= static_cast<std::uint32_t>(n);
  // Even when the span merges into a free neighbour before it (and its first
  // descriptor is no longer a span's first), a pointer into it must resolve
  // to a free span, not to the block it held (block_check: a double free).
  seg->pages[idx].kind = kFreeSpan;
  const std::uint64_t now = now_ms();
  const std::size_t j = idx + n;
  if (j < kSlices && seg->pages[j].kind == kFreeSpan) {
    Span* nx = &seg->pages[j];
    span_remove(l, nx);
    n += nx->slice_count;
  }
  if (idx > 1 && seg->pages[idx - 1].kind == kFreeSpan) {
    Span* pv = &seg->pages[idx - 1];
    pv = reinterpret_cast<Span*>(reinterpret_cast<char*>(pv) - pv->slice_offset);
    span_remove(l, pv);
    const std::size_t pidx = static_cast<std::size_t>(pv - seg->pages);
    n += idx - pidx;
    idx = pidx;
  }
  span_set_free(seg, idx, n, now);
  span_insert(l, &seg->pages[idx]);
  if (l->heap->eager.load(std::memory_order_relaxed)) {
    span_purge(l, seg, idx, n);
    if (seg->used_slices == 0 && l->heap->visiting.load(std::memory_order_relaxed) == 0) {
      segment_release(l, seg);
    }
  }
}

// Marks slices [a, a+n) of free span s used, returning what is left of s to
// the bins (caller sets kinds).
Span* span_take(ThreadHeap* l, Span* s, std::size_t a, std::size_t n) noexcept {
  Segment* seg = segment_of(s);
  const std::size_t idx = static_cast<std::size_t>(s - seg->pages);
  const std::size_t cnt = s->slice_count;
  span_remove(l, s);
  const std::uint64_t t = s->freed_at;
  if (a > idx) {
    span_set_free(seg, idx, a - idx, t);
    span_insert(l, &seg->pages[idx]);
  }
  if (a + n < idx + cnt) {
    span_set_free(seg, a + n, idx + cnt - a - n, t);
    span_insert(l, &seg->pages[a + n]);
  }
  seg->used_slices += static_cast<std::uint32_t>(n);
  Span* pg = &seg->pages[a];
  pg->slice_count = static_cast<std::uint8_t>(n);
  return pg;
}

// A free run of n slices starting at a multiple of align_slices; marked used
// (caller sets kinds) but not yet committed. Prefers touched memory: first
// the smallest span that starts with n committed slices, else the placement
// (at either end of any span) that overlaps the most committed slices, so a
// big page is laid over touched fragments instead of fresh slices (realloc
// workload: fewer fresh slices, so fewer purged for them and refaulted).
Span* span_find(ThreadHeap* l, std::size_t n, std::size_t align_slices) noexcept {
  for (std::size_t b = n; b <= kSlices; ++b) {
    for (Span* s = l->spans[b]; s != nullptr; s = s->next) {
      Segment* seg = segment_of(s);
      const std::size_t idx = static_cast<std::size_t>(s - seg->pages);
      const std::size_t a = (idx + align_slices - 1) / align_slices * align_slices;
      if (a + n > idx + b) continue;
      if ((range_mask(a, n) & ~seg->committed_mask) != 0) continue;
      return span_take(l, s, a, n);
    }
  }
  Span* best = nullptr;
  std::size_t best_a = 0;
  int best_score = -1;
  for (std::size_t b = n; b <= kSlices; ++b) {
    for (Span* s = l->spans[b]; s != nullptr; s = s->next) {
      Segment* seg = segment_of(s);
      const std::size_t idx = static_cast<std::size_t>(s - seg->pages);
      const std::uint64_t committed = seg->committed_mask & range_mask(idx, b);
      const std::size_t a = (idx + align_slices - 1) / align_slices * align_slices;
      if (a + n > idx + b) continue;
      if (committed == 0) {
        if (best_score < 0) {
          best = s;
          best_a = a;
          best_score = 0;
        }
        continue;
      }
      // Only at either end of the span: a page in the middle would leave
      // two fragments.
      const std::size_t ends[2] = {a, (idx + b - n) / align_slices * align_slices};
      for (std::size_t e : ends) {
        const int score = __builtin_popcountll(range_mask(e, n) & committed);
        if (score > best_score) {
          best = s;
          best_a = e;
          best_score = score;
        }
      }
    }
  }
  return best != nullptr ? span_take(l, best, best_a, n) : nullptr;
}

// ---- Segments. ----

Segment* segment_new(ThreadHeap* l) noexcept {
  // Before taking fresh memory, reclaim what exited threads' pages got back
  // from cross-thread frees (one idle ThreadHeap per new segment, round robin).
  if (l->heap == &g_default_heap) local_collect_idle_one();
  if (!heap_commit(l->heap, kMetaCharge)) return nullptr;
  Segment* seg = nullptr;
  {
    Guard g(g_segcache_lock);
    if (g_segcache_count > 0) seg = g_segcache[--g_segcache_count];
  }
  if (seg == nullptr) {
    void* m = os_map_aligned(kSegmentSize, kSegmentSize);
    if (m == nullptr) {
      heap_uncommit(l->heap, kMetaCharge);
      return nullptr;
    }
    owns_mark(m, kSegmentSize, true);
    seg = static_cast<Segment*>(m);
  }
  ::new (seg) Segment();
  seg->local = l;
  seg->mapped = kSegmentSize;
  seg->committed_mask = 1;
  seg->pages[0].kind = kMetaSlice;
  seg->pages[0].slice_count = 1;
  span_set_free(seg, 1, kSlices - 1, 0);
  span_insert(l, &seg->pages[1]);
  seg->next = l->segments;
  if (l->segments) l->segments->prev = seg;
  l->segments = seg;
  l->segment_count++;
  seg->owner_tid.store(l->tid, std::memory_order_release);
  return seg;
}

void segment_unlink(ThreadHeap* l, Segment* seg) noexcept {
  if (seg->prev) seg->prev->next = seg->next; else l->segments = seg->next;
  if (seg->next) seg->next->prev = seg->prev;
  l->segment_count--;
}

void segment_release(ThreadHeap* l, Segment* seg) noexcept {
  span_remove(l, &seg->pages[1]);
  segment_unlink(l, seg);
  heap_uncommit(l->heap, mask_bytes(seg->committed_mask));
  ALLOY_UNPOISON(seg, kSegmentSize);
  seg->owner_tid.store(0, std::memory_order_relaxed);
  os_purge(seg, kSegmentSize);
  {
    Guard g(g_segcache_lock);
    if (g_segcache_count < kSegmentCacheMax) {
      g_segcache[g_segcache_count++] = seg;
      return;
    }
  }
  owns_mark(seg, kSegmentSize, false);
  os_unmap(seg, kSegmentSize);
}

void local_purge(ThreadHeap* l, std::uint64_t cutoff, bool force) noexcept {
  Segment* seg = l->segments;
  while (seg != nullptr) {
    Segment* next = seg->next;
    for (std::size_t idx = 1; idx < kSlices;) {
      Span* pg = &seg->pages[idx];
      const std::size_t n = pg->slice_count;
      if (n == 0) break;
      if (pg->kind == kFreeSpan && (force || pg->freed_at <= cutoff)) span_purge(l, seg, idx, n);
      idx += n;
    }
    if (seg->used_slices == 0 && (force || (seg->committed_mask & ~std::uint64_t{1}) == 0) &&
        l->heap->visiting.load(std::memory_order_relaxed) == 0) {
      segment_release(l, seg);
    }
    seg = next;
  }
}

void maybe_purge(ThreadHeap* l) noexcept {
  const std::uint64_t now = now_ms();
  if (now - l->last_purge < kPurgeDelayMs) return;
  l->last_purge = now;
  local_purge(l, now - kPurgeDelayMs, false);
}


// Each class keeps its last page when it empties (no thrash at a page
// boundary). Before the ThreadHeap grows by a segment, give those kept empty pages
// back as free spans: a workload whose sizes drift (append loops, phases)
// would otherwise keep one touched page per class it ever used (realloc
// workload: ~15 MiB). Returns true if any span was freed.
bool retire_kept_pages(ThreadHeap* l) noexcept {
  bool any = false;
  for (unsigned c = 1; c < kClasses; ++c) {
    Span* pg = l->queues[c].first;
    if (pg != nullptr && pg == l->queues[c].last && pg->used == 0 &&
        pg->thread_free.load(std::memory_order_acquire) == 0) {
      page_retire(l, pg, true);
      any = true;
    }
  }
  return any;
}

// The heap is about to fault in `need` fresh slices: give back as many
// committed free slices first (smallest spans first: the fragments a bigger
// request could not use; then the pages classes keep), so growth that cannot
// reuse them costs no RSS. Peak RSS then follows live pages, not the
// fragmentation history (realloc workload: 32.6 -> 29.7 MB peak, mimalloc
// 30.2; the cost is refaulting purged slices when they are reused: realloc
// 7.6k -> 10.2k page faults, churn 2.9k -> 4.9k, a few % CPU).
void purge_for_fresh(ThreadHeap* l, std::size_t need) noexcept {
  std::size_t done = 0;
  for (int round = 0; round < 2 && done < need; ++round) {
    if (round == 1 && !retire_kept_pages(l)) break;
    for (std::size_t b = 1; b <= kSlices && done < need; ++b) {
      for (Span* s = l->spans[b]; s != nullptr && done < need; s = s->next) {
        Segment* seg = segment_of(s);
        const std::size_t idx = static_cast<std::size_t>(s - seg->pages);
        const std::uint64_t bits = range_mask(idx, b) & seg->committed_mask;
        if (bits == 0) continue;
        done += static_cast<std::size_t>(__builtin_popcountll(bits));
        span_purge(l, seg, idx, b);
      }
    }
  }
}

// A used span of n slices, committed; null past the ceiling or out of memory.
// *zero (if given) tells whether every slice was uncommitted, i.e. untouched
// or purged since, so it reads as zeros.
Span* span_get(ThreadHeap* l, std::size_t n, std::size_t align_slices, std::uint8_t kind,
               bool* zero) noexcept {
  for (int attempt = 0; attempt < 2; ++attempt) {
    Span* pg = span_find(l, n, align_slices);
    if (pg == nullptr && retire_kept_pages(l)) pg = span_find(l, n, align_slices);
    if (pg == nullptr && segment_new(l) != nullptr) pg = span_find(l, n, align_slices);
    if (pg != nullptr) {
      Segment* seg = segment_of(pg);
      const std::size_t idx = static_cast<std::size_t>(pg - seg->pages);
      const std::uint64_t fresh = range_mask(idx, n) & ~seg->committed_mask;
      // A small page on fresh slices that the ceiling will not let the heap
      // charge whole is charged per OS page as its blocks are carved
      // (page_charge), so a small ceiling still serves small blocks.
      bool lazy = false;
      if (fresh != 0 &&
          !heap_commit(l->heap, static_cast<std::size_t>(__builtin_popcountll(fresh)) * kSliceSize)) {
        lazy = kind == kSmallPage && fresh == range_mask(idx, n);
        if (!lazy) {
          span_free(l, seg, idx, n);
          if (attempt == 0) local_purge(l, 0, true);  // give back free memory, retry once
          continue;
        }
      }
      {
        if (!lazy) seg->committed_mask |= fresh;
        pg->lazy = lazy ? 1 : 0;
        if (zero != nullptr) *zero = fresh == range_mask(idx, n);
        for (std::size_t i = 0; i < n; ++i) {
          seg->pages[idx + i].kind = kind;
          seg->pages[idx + i].slice_offset = static_cast<std::uint16_t>(i * sizeof(Span));
        }
        pg->slice_count = static_cast<std::uint8_t>(n);
        // After the kinds are set: purging may retire pages, whose spans
        // coalesce with free neighbours.
        if (fresh != 0 && !lazy && !l->heap->eager.load(std::memory_order_relaxed)) {
          purge_for_fresh(l, static_cast<std::size_t>(__builtin_popcountll(fresh)));
        }
        ALLOY_UNPOISON(reinterpret_cast<char*>(seg) + (idx << kSliceShift), n << kSliceShift);
        return pg;
      }
    }
    if (attempt == 0) local_purge(l, 0, true);  // give back free memory, retry once
  }
  return nullptr;
}

}  // namespace alloy::engine::detail
