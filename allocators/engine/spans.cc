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
  l->span_bins |= std::uint64_t{1} << s->slice_count;
}
void span_remove(ThreadHeap* l, Span* s) noexcept {
  if (s->prev) {
    s->prev->next = s->next;
  } else {
    l->spans[s->slice_count] = s->next;
    if (s->next == nullptr) l->span_bins &= ~(std::uint64_t{1} << s->slice_count);
  }
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

// ---- Dirty slices and their purge schedule. ----
// Invariant: a slice of a free span is in its segment's purge_mask exactly
// when it is committed (it may hold RSS), and l->dirty counts those slices
// over l's segments. Used spans are never in purge_mask.

// The committed slices of `bits` (a span that just became free, at `now`)
// are dirty. A free span is purged once it has stayed free for the purge
// delay (its freed_at; a span that coalesces takes the newest time, so a
// slice is never purged sooner than the delay after its own free); the
// segment's deadline is when its oldest dirty span comes due, and the
// ThreadHeap's the earliest of those.
void dirty_add(ThreadHeap* l, Segment* seg, std::uint64_t bits, std::uint64_t now) noexcept {
  bits &= seg->committed_mask & ~seg->purge_mask & ~std::uint64_t{1};
  if (bits == 0) return;
  seg->purge_mask |= bits;
  l->dirty += static_cast<std::uint32_t>(slices_in(bits));
  if (seg->purge_expire == 0) seg->purge_expire = now + kPurgeDelayMs;
  if (l->purge_at == 0 || seg->purge_expire < l->purge_at) l->purge_at = seg->purge_expire;
}

namespace {
// Purges the dirty spans of seg that have been free since `cutoff` or
// longer (all of them when force); returns when the next one comes due
// (0: none left), which becomes the segment's deadline.
std::uint64_t segment_purge_old(ThreadHeap* l, Segment* seg, std::uint64_t cutoff, bool force) noexcept {
  std::uint64_t next = 0;
  if (force) {
    segment_purge_bits(l, seg, seg->purge_mask);
  } else {
    std::uint64_t old = 0;
    for (std::size_t idx = 1; idx < kSlices;) {
      Span* pg = &seg->pages[idx];
      const std::size_t n = pg->slice_count;
      if (n == 0) break;
      if (pg->kind == kFreeSpan && (seg->purge_mask & range_mask(idx, n)) != 0) {
        if (pg->freed_at <= cutoff) {
          old |= range_mask(idx, n);
        } else if (next == 0 || pg->freed_at + kPurgeDelayMs < next) {
          next = pg->freed_at + kPurgeDelayMs;
        }
      }
      idx += n;
    }
    segment_purge_bits(l, seg, old);
  }
  seg->purge_expire = seg->purge_mask != 0 ? (next != 0 ? next : 1) : 0;
  return seg->purge_expire;
}
}  // namespace

// Slices of `bits` are used again (or purged): no longer dirty.
void dirty_clear(ThreadHeap* l, Segment* seg, std::uint64_t bits) noexcept {
  bits &= seg->purge_mask;
  if (bits == 0) return;
  seg->purge_mask &= ~bits;
  l->dirty -= static_cast<std::uint32_t>(slices_in(bits));
  if (seg->purge_mask == 0) seg->purge_expire = 0;
}

// Gives the committed slices of `bits` (all in free spans) back to the OS:
// one madvise per run of adjacent slices, whatever spans they belong to.
void segment_purge_bits(ThreadHeap* l, Segment* seg, std::uint64_t bits) noexcept {
  bits &= seg->committed_mask & ~std::uint64_t{1};
  if (bits == 0) return;
  std::uint64_t rest = bits;
  while (rest != 0) {
    const std::size_t s = static_cast<std::size_t>(__builtin_ctzll(rest));
    std::size_t e = s;
    while (e < kSlices && ((rest >> e) & 1)) ++e;
    os_purge(reinterpret_cast<char*>(seg) + (s << kSliceShift), (e - s) << kSliceShift);
    rest &= ~range_mask(s, e - s);
  }
  dirty_clear(l, seg, bits);
  seg->committed_mask &= ~bits;
  heap_uncommit(l->heap, static_cast<std::size_t>(slices_in(bits)) * kSliceSize);
}

void span_purge(ThreadHeap* l, Segment* seg, std::size_t idx, std::size_t n) noexcept {
  segment_purge_bits(l, seg, range_mask(idx, n));
}


void span_free(ThreadHeap* l, Segment* seg, std::size_t idx, std::size_t n) noexcept {
  seg->used_slices -= static_cast<std::uint32_t>(n);
  l->used_slices -= static_cast<std::uint32_t>(n);
  // Even when the span merges into a free neighbour before it (and its first
  // descriptor is no longer a span's first), a pointer into it must resolve
  // to a free span, not to the block it held (block_check: a double free).
  seg->pages[idx].kind = kFreeSpan;
  const std::uint64_t now = now_ms();
  const std::uint64_t freed = range_mask(idx, n);
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
  dirty_add(l, seg, freed, now);
  const bool eager = l->heap->eager.load(std::memory_order_relaxed);
  // An empty segment goes back at once when it held nothing to reuse (or
  // eagerly, or with the others when most of the heap is free), else when
  // its dirty slices are due (local_purge).
  if (eager) {
    span_purge(l, seg, idx, n);
  } else if (purge_if_mostly_free(l, seg)) {
    return;  // seg went back with the other empty segments
  }
  if (seg->used_slices == 0 && (eager || (seg->committed_mask & ~std::uint64_t{1}) == 0) &&
      l->heap->visiting.load(std::memory_order_relaxed) == 0) {
    segment_release(l, seg);
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
  l->used_slices += static_cast<std::uint32_t>(n);
  dirty_clear(l, seg, range_mask(a, n));
  Span* pg = &seg->pages[a];
  pg->slice_count = static_cast<std::uint8_t>(n);
  return pg;
}

// Whether span_find's first choice exists: a free span that starts (at a
// multiple of align_slices) with n committed slices. Takes nothing.
bool span_fits_committed(const ThreadHeap* l, std::size_t n, std::size_t align_slices) noexcept {
  for (std::uint64_t m = l->span_bins & ~range_mask(0, n); m != 0; m &= m - 1) {
    const std::size_t b = static_cast<std::size_t>(__builtin_ctzll(m));
    for (const Span* s = l->spans[b]; s != nullptr; s = s->next) {
      const Segment* seg = segment_of(s);
      const std::size_t idx = static_cast<std::size_t>(s - seg->pages);
      const std::size_t a = (idx + align_slices - 1) / align_slices * align_slices;
      if (a + n <= idx + b && (range_mask(a, n) & ~seg->committed_mask) == 0) return true;
    }
  }
  return false;
}

// A free run of n slices starting at a multiple of align_slices; marked used
// (caller sets kinds) but not yet committed. Prefers touched memory: first
// the smallest span that starts with n committed slices, else the placement
// (at either end of any span) that overlaps the most committed slices, so a
// big page is laid over touched fragments instead of fresh slices (realloc
// workload: fewer fresh slices, so fewer purged for them and refaulted).
Span* span_find(ThreadHeap* l, std::size_t n, std::size_t align_slices) noexcept {
  // Only the bins that hold spans (span_bins): most of the 63 are empty.
  const std::uint64_t bins = l->span_bins & ~range_mask(0, n);
  for (std::uint64_t m = bins; m != 0; m &= m - 1) {
    const std::size_t b = static_cast<std::size_t>(__builtin_ctzll(m));
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
  for (std::uint64_t m = bins; m != 0; m &= m - 1) {
    const std::size_t b = static_cast<std::size_t>(__builtin_ctzll(m));
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
        const int score = static_cast<int>(slices_in(range_mask(e, n) & committed));
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
    void* m = os_map_segment();
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
  std::size_t slices = kSlices - 1;
  if (g_secure_state == kSecureOn) {
    // The secure mode's guard between segments (README "Hardening"): the
    // last slice is never handed out and is PROT_NONE, so an overflow off
    // the end of the segment's last span faults instead of reaching the
    // next segment's header. Address space only: the slice holds no RSS.
    --slices;
    Span* guard = &seg->pages[kSlices - 1];
    guard->kind = kMetaSlice;
    guard->slice_count = 1;
    (void)mprotect(reinterpret_cast<char*>(seg) + kSegmentSize - kSliceSize, kSliceSize, PROT_NONE);
  }
  span_set_free(seg, 1, slices, 0);
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

namespace {
// Takes an empty segment out of l: its free span, its list link, its dirty
// and committed figures and its owner. What happens to its memory next
// (cached, purged, unmapped) is the caller's.
void segment_detach(ThreadHeap* l, Segment* seg) noexcept {
  span_remove(l, &seg->pages[1]);
  segment_unlink(l, seg);
  dirty_clear(l, seg, seg->purge_mask);
  heap_uncommit(l->heap, mask_bytes(seg->committed_mask));
  ALLOY_UNPOISON(seg, kSegmentSize);
  seg->owner_tid.store(0, std::memory_order_relaxed);
}
}  // namespace

void segment_release(ThreadHeap* l, Segment* seg) noexcept {
  segment_detach(l, seg);
  bool room;
  {
    Guard g(g_segcache_lock);
    room = g_segcache_count < kSegmentCacheMax;
  }
  // A cached segment holds no RSS but its header; an unmapped one needs no
  // purge at all.
  if (room && (seg->committed_mask & ~std::uint64_t{1}) != 0) {
    os_purge(reinterpret_cast<char*>(seg) + kSliceSize, kSegmentSize - kSliceSize);
  }
  if (room) {
    Guard g(g_segcache_lock);
    if (g_segcache_count < kSegmentCacheMax) {
      g_segcache[g_segcache_count++] = seg;
      return;
    }
  }
  owns_mark(seg, kSegmentSize, false);
  os_unmap(seg, kSegmentSize);
}

// Purges every segment of l whose deadline is at or before `now` (every
// dirty slice when force), and releases the segments left empty.
void local_purge(ThreadHeap* l, std::uint64_t now, bool force) noexcept {
  span_cache_flush(l);  // cached spans become dirty: purged after the delay
  if (!force) purge_kept_pages(l);
  std::uint64_t next = 0;
  Segment* seg = l->segments;
  while (seg != nullptr) {
    Segment* following = seg->next;
    if (force || (seg->purge_expire != 0 && seg->purge_expire <= now)) {
      segment_purge_old(l, seg, now >= kPurgeDelayMs ? now - kPurgeDelayMs : 0, force);
      if (seg->used_slices == 0 && seg->purge_mask == 0 &&
          l->heap->visiting.load(std::memory_order_relaxed) == 0) {
        segment_release(l, seg);
        seg = following;
        continue;
      }
    }
    if (seg->purge_expire != 0 && (next == 0 || seg->purge_expire < next)) next = seg->purge_expire;
    seg = following;
  }
  l->purge_at = next;
}

std::atomic<std::uint64_t> g_global_purge_at{0};

namespace {
void purge_global(std::uint64_t now) noexcept {
  HeapCore* h = &g_default_heap;
  std::uint64_t next = 0;
  if (h->lock.try_lock()) {
    g_global_purge_at.store(0, std::memory_order_relaxed);
    for (ThreadHeap* l = h->idle; l != nullptr; l = l->pool_next) {
      if (l->purge_at != 0 && l->purge_at <= now) local_purge(l, now, false);
      if (l->purge_at != 0 && (next == 0 || l->purge_at < next)) next = l->purge_at;
    }
    h->lock.unlock();
  } else {
    return;  // the lock holder (a starting or exiting thread) is busy; next tick
  }
  const std::uint64_t huge_next = huge_cache_expire(now);
  if (huge_next != 0 && (next == 0 || huge_next < next)) next = huge_next;
  if (next != 0) schedule_global_purge(next);
}
}  // namespace

void schedule_global_purge(std::uint64_t at) noexcept {
  std::uint64_t cur = g_global_purge_at.load(std::memory_order_relaxed);
  while ((cur == 0 || at < cur) &&
         !g_global_purge_at.compare_exchange_weak(cur, at, std::memory_order_relaxed)) {
  }
}

// The purge tick (slow paths only, see purge_tick): purges what is due.
void maybe_purge(ThreadHeap* l) noexcept {
  const std::uint64_t global = g_global_purge_at.load(std::memory_order_relaxed);
  if (l->purge_at == 0 && global == 0) return;
  const std::uint64_t now = now_ms();
  if (l->purge_at != 0 && l->purge_at <= now) local_purge(l, now, false);
  if (global != 0 && global <= now && l->heap == &g_default_heap) purge_global(now);
}

namespace {
std::uint32_t dirty_budget(const ThreadHeap* l) noexcept {
  const std::uint32_t share = l->segment_count * static_cast<std::uint32_t>(kSlices) / kDirtyFraction;
  return share > kDirtyMinSlices ? share : kDirtyMinSlices;
}

// Purges dirty slices until at most `target` are left, segments holding no
// used span first (nothing there is likely to be reused soon), then the
// others in list order; the ThreadHeap's deadline follows.
void purge_down_to(ThreadHeap* l, std::uint32_t target) noexcept {
  for (int pass = 0; pass < 2; ++pass) {
    for (Segment* seg = l->segments; seg != nullptr && l->dirty > target; seg = seg->next) {
      if (pass == 0 && seg->used_slices != 0) continue;
      segment_purge_bits(l, seg, seg->purge_mask);
    }
  }
  std::uint64_t next = 0;
  for (Segment* seg = l->segments; seg != nullptr; seg = seg->next) {
    if (seg->purge_expire != 0 && (next == 0 || seg->purge_expire < next)) next = seg->purge_expire;
  }
  l->purge_at = next;
}
}  // namespace

// The ThreadHeap is about to commit fresh slices: if its dirty slices exceed
// the budget (kDirtyMinSlices, or 1/kDirtyFraction of its segments' slices),
// purge segments until they are under half of it, so growth the free
// fragments cannot serve adds little RSS. Each such purge gives back at
// least half a budget, so they are rare: what purged before every fresh
// slice made a working set that breathes by a few slices pay a madvise and
// a page fault per slice (issue 12: sqlite3 4869 madvise calls, mimalloc 14).
void purge_over_budget(ThreadHeap* l) noexcept {
  const std::uint32_t budget = dirty_budget(l);
  if (l->dirty <= budget) return;
  purge_down_to(l, budget / 2);
}

namespace {
// Releases the empty segments segs[0..n) of l as segment_release does, but
// sorted by address, so adjacent ones (segments come from reservations of
// many) take one madvise per run going to the segment cache and one munmap
// per run unmapped: a 400 MiB heap torn down costs about ten calls, not one
// per segment. The headers inside a cached run are purged too: a cached
// segment is re-initialised when reused.
void segments_release_batch(ThreadHeap* l, Segment** segs, std::size_t n) noexcept {
  for (std::size_t i = 1; i < n; ++i) {
    Segment* x = segs[i];
    std::size_t j = i;
    for (; j > 0 && segs[j - 1] > x; --j) segs[j] = segs[j - 1];
    segs[j] = x;
  }
  for (std::size_t i = 0; i < n; ++i) segment_detach(l, segs[i]);
  auto run_end = [&](std::size_t i, std::size_t limit) {
    while (i + 1 < limit &&
           reinterpret_cast<char*>(segs[i + 1]) == reinterpret_cast<char*>(segs[i]) + kSegmentSize) {
      ++i;
    }
    return i + 1;
  };
  std::size_t keep;
  {
    Guard g(g_segcache_lock);
    keep = kSegmentCacheMax - g_segcache_count;
  }
  if (keep > n) keep = n;
  for (std::size_t i = 0; i < keep;) {
    const std::size_t e = run_end(i, keep);
    os_purge(reinterpret_cast<char*>(segs[i]) + kSliceSize, (e - i) * kSegmentSize - kSliceSize);
    i = e;
  }
  std::size_t unmap_from = keep;
  {
    Guard g(g_segcache_lock);
    for (std::size_t i = 0; i < keep; ++i) {
      if (g_segcache_count < kSegmentCacheMax) {
        g_segcache[g_segcache_count++] = segs[i];
      } else {  // another thread filled the cache meanwhile
        owns_mark(segs[i], kSegmentSize, false);
        os_unmap(segs[i], kSegmentSize);
      }
    }
  }
  for (std::size_t i = unmap_from; i < n;) {
    const std::size_t e = run_end(i, n);
    for (std::size_t k = i; k < e; ++k) owns_mark(segs[k], kSegmentSize, false);
    os_unmap(segs[i], (e - i) * kSegmentSize);
    i = e;
  }
}
}  // namespace

// A span of seg was just freed and seg holds no used span any more: when
// the ThreadHeap's dirty slices exceed the budget and kMostlyFree times its
// used ones (the program freed most of what it touched), its segments
// without used spans go back now (segments_release_batch) rather than after
// the delay, which only a later call would see. A working set that breathes
// keeps most of its slices used, so it never gets here. Only whole
// segments, in address-ordered runs, so a heap torn down block by block (at
// exit, between phases) pays a few calls: purging the scattered free runs
// of segments that still hold blocks cost churn8k and capped 200+ calls
// (mimalloc 33), one madvise per empty segment bigfrag 139 (mimalloc 45).
// Not while the thread exits (its heap's dirty slices wait for the thread
// that adopts it, thread_exit_hook) or a walk holds segment pointers
// (Heap::visit). True if seg itself was released.
bool purge_if_mostly_free(ThreadHeap* l, Segment* seg) noexcept {
  if (seg->used_slices != 0 || seg->purge_mask == 0 || l->exiting) return false;
  if (l->dirty <= kDirtyMinSlices || l->dirty <= kMostlyFree * l->used_slices) return false;
  if (l->dirty <= dirty_budget(l)) return false;
  if (l->heap->visiting.load(std::memory_order_relaxed) != 0) return false;
  constexpr std::size_t kBatch = 64;
  Segment* batch[kBatch];
  std::size_t n = 0;
  for (Segment* s = l->segments; s != nullptr;) {
    Segment* following = s->next;
    if (s->used_slices == 0) {
      batch[n++] = s;
      if (n == kBatch) {
        segments_release_batch(l, batch, n);
        n = 0;
      }
    }
    s = following;
  }
  segments_release_batch(l, batch, n);
  return true;
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

// The empty page each class keeps (see retire_kept_pages) is purged in
// place once it has been empty and untouched from one purge pass to the
// next: its carving restarts and its slices go back, but it stays its
// class's page. Not retired: a pass may run inside a free of that very page
// (free_local_slow), or while a caller walks a page queue. An idle program
// gives these back too. "Untouched" is a signature of its two free-list
// heads kept in pending_next, unused while the page is not announced
// (thread_free 0): purging every kept page at every pass made g++ 1400
// madvise calls, this 12.
void purge_kept_pages(ThreadHeap* l) noexcept {
  for (unsigned c = 1; c < kClasses; ++c) {
    Span* pg = l->queues[c].first;
    if (pg == nullptr || pg != l->queues[c].last || pg->used != 0 || pg->capacity == 0 ||
        pg->lazy != 0 || pg->thread_free.load(std::memory_order_acquire) != 0) {
      continue;
    }
    const std::uintptr_t sig = (reinterpret_cast<std::uintptr_t>(pg->free) ^
                                (reinterpret_cast<std::uintptr_t>(pg->local_free) << 1)) | 1;
    if (reinterpret_cast<std::uintptr_t>(pg->pending_next) != sig) {
      pg->pending_next = reinterpret_cast<Span*>(sig);  // seen empty; purge if still so next pass
      continue;
    }
    pg->pending_next = nullptr;
    Segment* seg = segment_of(pg);
    const std::size_t idx = static_cast<std::size_t>(pg - seg->pages);
    pg->free = pg->local_free = nullptr;
    if (l->carve) {  // a lease in carve mode: its carved blocks go (scope.cc)
      carve_note(-static_cast<std::ptrdiff_t>(std::size_t{pg->capacity} * pg->block_size),
                 -static_cast<std::ptrdiff_t>(pg->capacity));
    }
    pg->capacity = 0;
    ALLOY_UNPOISON(reinterpret_cast<char*>(page_start(seg, pg)), std::size_t{pg->slice_count} << kSliceShift);
    segment_purge_bits(l, seg, range_mask(idx, pg->slice_count));
  }
}

// A used span of n slices, committed; null past the ceiling or out of memory.
// *zero (if given) tells whether every slice was uncommitted, i.e. untouched
// or purged since, so it reads as zeros.
Span* span_get(ThreadHeap* l, std::size_t n, std::size_t align_slices, std::uint8_t kind,
               bool* zero) noexcept {
  purge_tick(l);
  for (int attempt = 0; attempt < 2; ++attempt) {
    Span* pg = span_find(l, n, align_slices);
    if (pg == nullptr && retire_kept_pages(l)) pg = span_find(l, n, align_slices);
    if (pg == nullptr && segment_new(l) != nullptr) pg = span_find(l, n, align_slices);
    if (pg != nullptr) {
      Segment* seg = segment_of(pg);
      const std::size_t idx = static_cast<std::size_t>(pg - seg->pages);
      const std::uint64_t span_bits = range_mask(idx, n);
      const bool untouched = (span_bits & seg->committed_mask) == 0;
      // A small page commits its slices as its blocks are carved
      // (page_extend): a big-class page of 8 slices whose blocks reach one
      // slice costs one slice, not eight.
      const std::uint64_t fresh =
          (kind == kSmallPage ? range_mask(idx, 1) : span_bits) & ~seg->committed_mask;
      // A small page on fresh slices that the ceiling will not let the heap
      // charge whole is charged per OS page as its blocks are carved
      // (page_charge), so a small ceiling still serves small blocks.
      bool lazy = false;
      if (fresh != 0 &&
          !heap_commit(l->heap, static_cast<std::size_t>(slices_in(fresh)) * kSliceSize)) {
        lazy = kind == kSmallPage && untouched;
        if (!lazy) {
          span_free(l, seg, idx, n);
          if (attempt == 0) local_purge(l, 0, true);  // give back free memory, retry once
          continue;
        }
      }
      {
        if (!lazy) seg->committed_mask |= fresh;
        pg->lazy = lazy ? 1 : 0;
        if (zero != nullptr) *zero = untouched;
        for (std::size_t i = 0; i < n; ++i) {
          seg->pages[idx + i].kind = kind;
          seg->pages[idx + i].slice_offset = static_cast<std::uint16_t>(i * sizeof(Span));
        }
        pg->slice_count = static_cast<std::uint8_t>(n);
        // After the kinds are set (retired pages coalesce with free
        // neighbours): fresh slices cost RSS, so the empty pages classes
        // keep become dirty spans (reusable, purged if they stay free), and
        // dirty slices over the budget go back now.
        if (fresh != 0 && !lazy && !l->heap->eager.load(std::memory_order_relaxed)) {
          retire_kept_pages(l);
          purge_over_budget(l);
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
