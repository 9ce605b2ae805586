// Small pages (blocks of one size class, carved lazily) and large blocks
// (whole slices); the page queues are inline in core_state.h.
#include <sys/mman.h>

#include <cstring>

#include "alloy/allocators/engine/core_state.h"
#include "alloy/allocators/engine/fast_path.h"

namespace alloy::engine::detail {

// ---- Pages. ----
// A lazily charged page (Span::lazy) pays for the OS pages its first
// `capacity` blocks reach; false past the ceiling.
bool page_charge(Span* pg, std::size_t capacity) noexcept {
  if (pg->lazy == 0) return true;
  const std::size_t units = (capacity * pg->block_size + kOsPage - 1) / kOsPage;
  const std::size_t have = pg->lazy - 1u;
  if (units <= have) return true;
  if (!heap_commit(segment_of(pg)->local->heap, (units - have) * kOsPage)) return false;
  pg->lazy = static_cast<std::uint8_t>(units + 1);
  return true;
}

// Carves the next blocks of pg (about one OS page); false when a lazily
// charged page may not grow past the ceiling.
bool page_extend(Span* pg) noexcept {
  Segment* seg = segment_of(pg);
  const std::size_t bsize = pg->block_size;
  std::size_t count = bsize >= kOsPage ? 1 : kOsPage / bsize;
  const std::size_t left = reserved(pg) - pg->capacity;
  if (count > left) count = left;
  if (!page_charge(pg, pg->capacity + count)) {
    // What the pages already charged still hold, if anything.
    const std::size_t fit = (pg->lazy - 1u) * kOsPage / bsize;
    if (fit <= pg->capacity) return false;
    count = fit - pg->capacity;
  }
  // An AccountScope's lease in carve mode charges what it carves (scope.cc).
  const bool carve = seg->local->carve;
  if (carve && !carve_fits(static_cast<std::ptrdiff_t>(count * bsize))) return false;
  if (pg->lazy == 0) {
    // Slices are committed as the carving reaches them (span_get commits
    // the first; purge_kept_pages may have given them all back): a
    // big-class page costs what its blocks touch.
    const std::size_t idx = static_cast<std::size_t>(pg - seg->pages);
    const std::size_t first = (pg->capacity * bsize) >> kSliceShift;
    const std::size_t last = ((pg->capacity + count) * bsize - 1) >> kSliceShift;
    const std::uint64_t need = range_mask(idx + first, last - first + 1) & ~seg->committed_mask;
    if (need != 0) {
      if (!heap_commit(seg->local->heap,
                       static_cast<std::size_t>(slices_in(need)) * kSliceSize)) {
        return false;
      }
      seg->committed_mask |= need;
    }
  }
  char* start = reinterpret_cast<char*>(page_start(seg, pg)) + pg->capacity * bsize;
  if (g_secure_state == kSecureOn && count > 1) {
    // Secure mode: the new blocks go onto the list in random order, so the
    // address of the next block is not the last one's plus its size.
    std::uint16_t order[kOsPage / 8];
    for (std::size_t i = 0; i < count; ++i) order[i] = static_cast<std::uint16_t>(i);
    std::uint64_t x = reinterpret_cast<std::uintptr_t>(start) ^ g_link_key ^ now_ms();
    for (std::size_t i = count - 1; i > 0; --i) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      const std::size_t j = static_cast<std::size_t>(x % (i + 1));
      const std::uint16_t t = order[i];
      order[i] = order[j];
      order[j] = t;
    }
    Block* head = pg->free;
    for (std::size_t i = 0; i < count; ++i) {
      auto* b = reinterpret_cast<Block*>(start + order[i] * bsize);
      b->next = encode_link(b, head);
      mark_freed(b, bsize);
      head = b;
    }
    pg->free = head;
    pg->capacity = static_cast<std::uint16_t>(pg->capacity + count);
    if (carve) carve_note(static_cast<std::ptrdiff_t>(count * bsize), static_cast<std::ptrdiff_t>(count));
    return true;
  }
  for (std::size_t i = 0; i + 1 < count; ++i) {
    auto* b = reinterpret_cast<Block*>(start + i * bsize);
    b->next = encode_link(b, reinterpret_cast<Block*>(start + (i + 1) * bsize));
    mark_freed(start + i * bsize, bsize);
  }
  auto* last = reinterpret_cast<Block*>(start + (count - 1) * bsize);
  last->next = encode_link(last, pg->free);
  mark_freed(start + (count - 1) * bsize, bsize);
  pg->free = reinterpret_cast<Block*>(start);
  pg->capacity = static_cast<std::uint16_t>(pg->capacity + count);
  if (carve) carve_note(static_cast<std::ptrdiff_t>(count * bsize), static_cast<std::ptrdiff_t>(count));
  return true;
}


Span* page_new(ThreadHeap* l, unsigned c) noexcept {
  const std::size_t n = class_slices(c);
  Span* pg = span_get(l, n, 1, kSmallPage);
  if (pg == nullptr) return nullptr;
  pg->size_class = static_cast<std::uint8_t>(c);
  pg->block_size = static_cast<std::uint32_t>(class_size(c));
  pg->capacity = 0;
  pg->used = 0;
  pg->free = nullptr;
  pg->local_free = nullptr;
  pg->thread_free.store(0, std::memory_order_relaxed);
  pg->pending_next = nullptr;
  if (!page_extend(pg)) {
    page_free_span(l, pg);
    return nullptr;
  }
  return pg;
}

void page_free_span(ThreadHeap* l, Span* pg) noexcept {
  if (pg->kind == kLargeBlock && span_cache_put(l, pg)) {
    purge_tick(l);
    return;
  }
  Segment* seg = segment_of(pg);
  if (l->carve && pg->kind == kSmallPage) {  // a lease in carve mode: its carved blocks go
    carve_note(-static_cast<std::ptrdiff_t>(std::size_t{pg->capacity} * pg->block_size),
               -static_cast<std::ptrdiff_t>(pg->capacity));
  }
  if (pg->lazy != 0) {
    // Its slices are not in committed_mask: give back what it charged.
    const std::size_t bytes = (pg->lazy - 1u) * kOsPage;
    if (bytes != 0) os_purge(reinterpret_cast<void*>(page_start(seg, pg)), bytes);
    heap_uncommit(l->heap, bytes);
    pg->lazy = 0;
  }
  pg->free = pg->local_free = nullptr;
  pg->used = 0;
  pg->capacity = 0;
  pg->block_size = 0;
  pg->thread_free.store(0, std::memory_order_relaxed);
  span_free(l, seg, static_cast<std::size_t>(pg - seg->pages), pg->slice_count);
  // The clock every kTickEvery-th span freed (reading it twice per freed
  // large block was 8% of breathe's instructions).
  if (!l->heap->eager.load(std::memory_order_relaxed)) purge_tick(l);
}

void page_retire(ThreadHeap* l, Span* pg, bool force) noexcept {
  if (pg->thread_free.load(std::memory_order_acquire) & kTfAnnounced) return;  // drain comes back
  PageQueue* q = &l->queues[pg->size_class];
  if (!force && !l->heap->eager.load(std::memory_order_relaxed) && q->first == pg && q->last == pg) {
    return;  // keep the last page of a class: avoids thrashing at a page boundary
  }
  queue_remove(q, pg);
  direct_update(l, pg->size_class);
  page_free_span(l, pg);
}

void unfull(ThreadHeap* l, Span* pg) noexcept {
  queue_remove(&l->full, pg);
  pg->thread_free.fetch_and(~kTfFull, std::memory_order_acq_rel);
  clear_full(pg);
  // To the back: the page has a single free block now; at the front, every
  // such free would make the next allocation take it and park it again
  // (churn workload: a park/unfull cycle per block). At the back it gathers
  // more frees before allocation reaches it.
  PageQueue* q = &l->queues[pg->size_class];
  const bool was_empty = q->first == nullptr;
  queue_push_back(q, pg);
  if (was_empty) direct_update(l, pg->size_class);
}

void drain_pending(ThreadHeap* l) noexcept {
  Span* pg = l->pending.exchange(nullptr, std::memory_order_acquire);
  while (pg != nullptr) {
    Span* next = pg->pending_next;
    pg->thread_free.fetch_and(~kTfAnnounced, std::memory_order_acq_rel);
    page_collect(pg);
    if (pg->kind == kLargeBlock) {
      if (live(pg) == 0 && !(pg->thread_free.load(std::memory_order_acquire) & kTfAnnounced)) {
        page_free_span(l, pg);
      }
    } else if (pg->kind == kSmallPage) {
      if (is_full(pg) && (pg->free || live(pg) == 0)) {
        unfull(l, pg);
      }
      if (live(pg) == 0) page_retire(l, pg, false);
    }
    pg = next;
  }
}

void* alloc_from_class(ThreadHeap* l, unsigned c) noexcept {
  if (l->pending.load(std::memory_order_relaxed) != nullptr) drain_pending(l);
  PageQueue* q = &l->queues[c];
  Span* const first_before = q->first;
  Span* pg;
  while ((pg = q->first) != nullptr) {
    page_collect(pg);
    if (pg->free != nullptr) break;
    if (pg->capacity < reserved(pg)) {
      // Reuse freed blocks of the next page before touching fresh memory.
      Span* nx = pg->next;
      if (nx != nullptr && (nx->free != nullptr || nx->local_free != nullptr)) {
        queue_remove(q, pg);
        queue_push_back(q, pg);
        continue;
      }
      if (!page_extend(pg)) pg = nullptr;  // at the ceiling: a new page may still fit
      break;
    }
    // Park it as full unless a cross-thread free just arrived (same CAS).
    std::uintptr_t w = pg->thread_free.load(std::memory_order_relaxed);
    bool parked = false;
    while ((w & ~kTfFlags) == 0) {
      if (pg->thread_free.compare_exchange_weak(w, w | kTfFull, std::memory_order_acq_rel,
                                                std::memory_order_relaxed)) {
        parked = true;
        break;
      }
    }
    if (!parked) continue;  // collect the new frees
    set_full(pg);
    queue_remove(q, pg);
    queue_push_front(&l->full, pg);
  }
  if (pg == nullptr) {
    pg = page_new(l, c);
    if (pg == nullptr) {
      direct_update(l, c);
      return nullptr;
    }
    queue_push_front(q, pg);
  }
  if (q->first != first_before) direct_update(l, c);
  if (Block* b = page_pop_checked(pg)) return b;
  return alloc_from_class(l, c);  // the list was corrupted and dropped
}

// ---- The cache of freed large blocks' spans (ThreadHeap::span_cache). ----
namespace {
// Takes the span of slice count n out of the cache (it must be there).
Span* span_cache_remove(ThreadHeap* l, std::size_t n) noexcept {
  Span* pg = l->span_cache[n];
  l->span_cache[n] = nullptr;
  l->span_cache_bins &= ~(std::uint32_t{1} << n);
  l->span_cache_slices -= static_cast<std::uint32_t>(n);
  pg->kind = kLargeBlock;
  ALLOY_UNPOISON(reinterpret_cast<char*>(page_start(segment_of(pg), pg)), n << kSliceShift);
  return pg;
}
// Frees the cached span of slice count n to the bins.
void span_cache_release(ThreadHeap* l, std::size_t n) noexcept {
  Span* pg = span_cache_remove(l, n);
  Segment* seg = segment_of(pg);
  span_free(l, seg, static_cast<std::size_t>(pg - seg->pages), n);
}
}  // namespace

bool span_cache_put(ThreadHeap* l, Span* pg) noexcept {
  // Only the default heap's own threads (a user heap's teardown frees its
  // segments whole), not while a lease carves or the thread exits, not
  // for an eager heap (it purges at free) nor a span it could not hold.
  const std::size_t n = pg->slice_count;
  if (n > ThreadHeap::kSpanCacheMaxCount || l->heap != &g_default_heap || l->carve || l->exiting ||
      pg->lazy != 0 || l->heap->eager.load(std::memory_order_relaxed)) {
    return false;
  }
  // Room first: the older span of this count goes to the bins, then the
  // smallest ones while the cache would hold too many slices.
  if (l->span_cache[n] != nullptr) span_cache_release(l, n);
  while (l->span_cache_slices + n > ThreadHeap::kSpanCacheMaxSlices) {
    span_cache_release(l, static_cast<std::size_t>(__builtin_ctz(l->span_cache_bins)));
  }
  pg->free = pg->local_free = nullptr;
  pg->used = 0;  // a double free reaches free_local_slow, which refuses the kind
  pg->capacity = 0;
  pg->thread_free.store(0, std::memory_order_relaxed);
  pg->kind = kCachedSpan;
  ALLOY_POISON(reinterpret_cast<char*>(page_start(segment_of(pg), pg)), n << kSliceShift);
  l->span_cache[n] = pg;
  l->span_cache_bins |= std::uint32_t{1} << n;
  l->span_cache_slices += static_cast<std::uint32_t>(n);
  // A purge pass flushes the cache (local_purge): make sure one comes, so
  // an idle program gives these slices back too.
  if (l->purge_at == 0) l->purge_at = 1;
  return true;
}

Span* span_cache_take(ThreadHeap* l, std::size_t n) noexcept {
  if (n > ThreadHeap::kSpanCacheMaxCount || l->span_cache[n] == nullptr) return nullptr;
  return span_cache_remove(l, n);
}

void span_cache_flush(ThreadHeap* l) noexcept {
  while (l->span_cache_bins != 0) {
    span_cache_release(l, static_cast<std::size_t>(__builtin_ctz(l->span_cache_bins)));
  }
}

void* large_alloc(ThreadHeap* l, std::size_t size, std::size_t align, bool* zero) noexcept {
  if (l->pending.load(std::memory_order_relaxed) != nullptr) drain_pending(l);
  const std::size_t n = (size + kSliceSize - 1) >> kSliceShift;
  const std::size_t as = align > kSliceSize ? align >> kSliceShift : 1;
  Span* pg = nullptr;
  if (l->span_cache_bins != 0) {
    if (as == 1) pg = span_cache_take(l, n);
    if (pg != nullptr) {
      purge_tick(l);
      if (zero != nullptr) *zero = false;
    } else if (l->dirty < n || !span_fits_committed(l, n, as)) {
      // The bins hold no n touched slices: give them the cached spans
      // before fresh slices are taken (peak RSS as without the cache).
      span_cache_flush(l);
    }
  }
  if (pg == nullptr) pg = span_get(l, n, as, kLargeBlock, zero);
  if (pg == nullptr) return nullptr;
  pg->size_class = 0;
  pg->block_size = static_cast<std::uint32_t>(n << kSliceShift);
  pg->used = 1;
  pg->capacity = 1;
  pg->free = pg->local_free = nullptr;
  pg->thread_free.store(kTfFull, std::memory_order_relaxed);  // cross frees announce it
  set_full(pg);  // and the owner's free takes the slow path
  return reinterpret_cast<void*>(page_start(segment_of(pg), pg));
}


// Grows large block pg (2 .. 32 slices) to `size` bytes (<= kLargeMax) by
// taking the free span right after it. The caller owns the ThreadHeap: spans are
// its plain fields.
bool large_grow_owned(Segment* seg, Span* pg, std::size_t size) noexcept {
  ThreadHeap* l = seg->local;
  const std::size_t idx = static_cast<std::size_t>(pg - seg->pages);
  const std::size_t cur = pg->slice_count;
  const std::size_t n = (size + kSliceSize - 1) >> kSliceShift;
  if (n <= cur) return true;
  const std::size_t j = idx + cur;  // first slice after the block
  if (j >= kSlices) return false;
  Span* nx = &seg->pages[j];
  const std::size_t extra = n - cur;
  if (nx->kind != kFreeSpan || nx->slice_count < extra) return false;
  const std::uint64_t fresh = range_mask(j, extra) & ~seg->committed_mask;
  if (fresh != 0 &&
      !heap_commit(l->heap, static_cast<std::size_t>(slices_in(fresh)) * kSliceSize)) {
    return false;
  }
  const std::size_t have = nx->slice_count;
  const std::uint64_t t = nx->freed_at;
  span_remove(l, nx);
  if (have > extra) {
    span_set_free(seg, j + extra, have - extra, t);
    span_insert(l, &seg->pages[j + extra]);
  }
  seg->committed_mask |= fresh;
  dirty_clear(l, seg, range_mask(j, extra));
  seg->used_slices += static_cast<std::uint32_t>(extra);
  l->used_slices += static_cast<std::uint32_t>(extra);
  for (std::size_t i = cur; i < n; ++i) {
    seg->pages[idx + i].kind = kLargeBlock;
    seg->pages[idx + i].slice_offset = static_cast<std::uint16_t>(i * sizeof(Span));
  }
  pg->slice_count = static_cast<std::uint8_t>(n);
  pg->block_size = static_cast<std::uint32_t>(n << kSliceShift);
  ALLOY_UNPOISON(reinterpret_cast<char*>(seg) + (j << kSliceShift), extra << kSliceShift);
  return true;
}

// large_grow_owned from the thread that owns the block's segment.
bool large_grow_in_place(Segment* seg, Span* pg, std::size_t size) noexcept {
  const std::uintptr_t owner = seg->owner_tid.load(std::memory_order_relaxed);
  if (owner == 0 || owner != thread_id()) return false;
  return large_grow_owned(seg, pg, size);
}

}  // namespace alloy::engine::detail
