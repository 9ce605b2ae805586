// Huge blocks (> 2 MiB, one mapping each, grown with mremap) and the
// process-wide caches of huge mappings and empty segments.
#include <sys/mman.h>

#include "alloy/allocators/engine/core_state.h"

namespace alloy::engine::detail {

// ---- Huge blocks. ----
std::size_t huge_map_size(std::size_t off, std::size_t size) noexcept {
  return (off + size + kSegmentSize - 1) & ~kSegmentMask;
}

void huge_link(HeapCore* h, Segment* seg) noexcept {
  Guard g(h->huge_lock);
  seg->prev = nullptr;
  seg->next = h->huge;
  if (h->huge) h->huge->prev = seg;
  h->huge = seg;
}
void huge_unlink_locked(HeapCore* h, Segment* seg) noexcept {
  if (seg->prev) seg->prev->next = seg->next; else h->huge = seg->next;
  if (seg->next) seg->next->prev = seg->prev;
}

// Grows a huge mapping to `want` bytes, in place or moved (MREMAP_FIXED onto
// a fresh aligned reservation). Returns the new base or null.
Segment* huge_remap(Segment* seg, std::size_t old_size, std::size_t want, bool may_move) noexcept {
  if (mremap(seg, old_size, want, 0) != MAP_FAILED) {
    g_os_mapped.fetch_add(want - old_size, std::memory_order_relaxed);
    owns_mark(seg, want, true);
    return seg;
  }
  if (!may_move) return nullptr;
  void* res = mmap(nullptr, want + kSegmentSize, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (res == MAP_FAILED) return nullptr;
  const auto r = reinterpret_cast<std::uintptr_t>(res);
  const std::uintptr_t a = (r + kSegmentMask) & ~kSegmentMask;
  void* moved = mremap(seg, old_size, want, MREMAP_MAYMOVE | MREMAP_FIXED, reinterpret_cast<void*>(a));
  if (moved == MAP_FAILED) {
    munmap(res, want + kSegmentSize);
    return nullptr;
  }
  if (a > r) munmap(res, a - r);
  const std::size_t tail = r + want + kSegmentSize - (a + want);
  if (tail != 0) munmap(reinterpret_cast<void*>(a + want), tail);
  owns_mark(seg, old_size, false);
  owns_mark(reinterpret_cast<void*>(a), want, true);
  g_os_mapped.fetch_add(want - old_size, std::memory_order_relaxed);
  return reinterpret_cast<Segment*>(a);
}

void huge_cache_evict(std::uint64_t now, bool all, HugeEntry* out, std::size_t* nout) noexcept {
  for (std::size_t i = 0; i < g_huge_cache_count;) {
    if (all || now - g_huge_cache[i].t > kHugeCacheTtlMs) {
      out[(*nout)++] = g_huge_cache[i];
      g_huge_cache_bytes -= g_huge_cache[i].mapped;
      g_huge_cache[i] = g_huge_cache[--g_huge_cache_count];
    } else {
      ++i;
    }
  }
}

void huge_unmap_entries(HugeEntry* e, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    owns_mark(e[i].seg, e[i].mapped, false);
    os_unmap(e[i].seg, e[i].mapped);
  }
}

bool huge_cache_put(Segment* seg, std::size_t mapped) noexcept {
  if (mapped > kHugeCacheMaxBytes) return false;
  HugeEntry victims[kHugeCacheEntries + 1];
  std::size_t nv = 0;
  const std::uint64_t now = now_ms();
  {
    Guard g(g_huge_cache_lock);
    huge_cache_evict(now, false, victims, &nv);
    while (g_huge_cache_count > 0 &&
           (g_huge_cache_count == kHugeCacheEntries || g_huge_cache_bytes + mapped > kHugeCacheMaxBytes)) {
      std::size_t oldest = 0;
      for (std::size_t i = 1; i < g_huge_cache_count; ++i) {
        if (g_huge_cache[i].t < g_huge_cache[oldest].t) oldest = i;
      }
      victims[nv++] = g_huge_cache[oldest];
      g_huge_cache_bytes -= g_huge_cache[oldest].mapped;
      g_huge_cache[oldest] = g_huge_cache[--g_huge_cache_count];
    }
    g_huge_cache[g_huge_cache_count++] = HugeEntry{seg, mapped, now};
    g_huge_cache_bytes += mapped;
  }
  huge_unmap_entries(victims, nv);
  schedule_global_purge(now + kHugeCacheTtlMs + 1);
  return true;
}

std::uint64_t huge_cache_expire(std::uint64_t now) noexcept {
  HugeEntry victims[kHugeCacheEntries];
  std::size_t nv = 0;
  std::uint64_t next = 0;
  {
    Guard g(g_huge_cache_lock);
    huge_cache_evict(now, false, victims, &nv);
    for (std::size_t i = 0; i < g_huge_cache_count; ++i) {
      const std::uint64_t t = g_huge_cache[i].t + kHugeCacheTtlMs + 1;
      if (next == 0 || t < next) next = t;
    }
  }
  huge_unmap_entries(victims, nv);
  return next;
}

// Best fit >= want, else (unless fit_only) the largest entry (the caller grows it).
bool huge_cache_take(std::size_t want, HugeEntry* out, bool fit_only) noexcept {
  Guard g(g_huge_cache_lock);
  if (g_huge_cache_count == 0) return false;
  std::size_t best = kHugeCacheEntries, largest = 0;
  for (std::size_t i = 0; i < g_huge_cache_count; ++i) {
    const std::size_t m = g_huge_cache[i].mapped;
    if (m >= want && (best == kHugeCacheEntries || m < g_huge_cache[best].mapped)) best = i;
    if (m > g_huge_cache[largest].mapped) largest = i;
  }
  if (fit_only && best == kHugeCacheEntries) return false;
  const std::size_t pick = best != kHugeCacheEntries ? best : largest;
  *out = g_huge_cache[pick];
  g_huge_cache_bytes -= out->mapped;
  g_huge_cache[pick] = g_huge_cache[--g_huge_cache_count];
  return true;
}

void huge_cache_flush() noexcept {
  HugeEntry victims[kHugeCacheEntries];
  std::size_t nv = 0;
  {
    Guard g(g_huge_cache_lock);
    huge_cache_evict(0, true, victims, &nv);
  }
  huge_unmap_entries(victims, nv);
}

void segcache_flush() noexcept {
  Segment* victims[kSegmentCacheMax];
  std::size_t nv = 0;
  {
    Guard g(g_segcache_lock);
    while (g_segcache_count > 0) victims[nv++] = g_segcache[--g_segcache_count];
  }
  for (std::size_t i = 0; i < nv; ++i) {
    owns_mark(victims[i], kSegmentSize, false);
    os_unmap(victims[i], kSegmentSize);
  }
}

void huge_init_header(Segment* seg, ThreadHeap* l, std::size_t mapped, std::size_t off) noexcept {
  ::new (seg) Segment();
  seg->local = l;
  seg->mapped = mapped;
  seg->huge_offset = off;
  seg->is_huge = 1;
  for (std::size_t i = 0; i < kSlices; ++i) {
    seg->pages[i].slice_offset = static_cast<std::uint16_t>(i * sizeof(Span));
  }
  seg->pages[0].kind = kHugeBlock;
  seg->pages[0].slice_count = 1;
  seg->pages[0].used = 1;
  seg->pages[0].block_size = 0;
}


void huge_guard_at(Segment* seg, std::size_t mapped, bool on) noexcept {
  if (huge_guard() == 0) return;
  // Failure (the mapping limit) leaves the page open: no guard, no harm.
  (void)mprotect(reinterpret_cast<char*>(seg) + mapped - kOsPage, kOsPage,
                 on ? PROT_NONE : PROT_READ | PROT_WRITE);
}
void huge_guard_set(Segment* seg, bool on) noexcept { huge_guard_at(seg, seg->mapped, on); }

bool huge_free(Segment* seg) noexcept {
  HeapCore* h = seg->local->heap;
  {
    Guard g(h->huge_lock);
    // A freed huge block's header says so until its mapping is reused (from
    // the huge cache) or unmapped: a second free is refused, not unlinked twice.
    if (seg->pages[0].kind != kHugeBlock) return false;
    seg->pages[0].kind = kFreeSpan;
    huge_unlink_locked(h, seg);
  }
  const std::size_t mapped = seg->mapped;
  heap_uncommit(h, mapped);
  // (The secure mode places blocks at other offsets; any mapping is reused.)
  if ((seg->huge_offset == kHugeHeader || huge_guard() != 0) &&
      !h->eager.load(std::memory_order_relaxed) &&
      huge_cache_put(seg, mapped)) {
    return true;
  }
  owns_mark(seg, mapped, false);
  os_unmap(seg, mapped);
  return true;
}


std::size_t heap_huge_bytes(HeapCore* h, std::size_t* count) noexcept {
  Guard g(h->huge_lock);
  std::size_t bytes = 0, n = 0;
  for (Segment* seg = h->huge; seg != nullptr; seg = seg->next) {
    bytes += seg->mapped - seg->huge_offset;
    ++n;
  }
  if (count) *count = n;
  return bytes;
}

// Grows huge block p to `size` bytes in place (or moved when may_move);
// returns the block's (possibly new) address or null.
void* huge_grow(void* p, std::size_t size, bool may_move) noexcept {
  Segment* seg = segment_of(p);
  HeapCore* h = seg->local->heap;
  const std::size_t off = seg->huge_offset;
  if (size > (std::size_t{1} << 46)) return nullptr;
  const std::size_t want = huge_map_size(off, size + huge_guard());
  const std::size_t old = seg->mapped;
  if (want <= old) return p;
  if (!heap_commit(h, want - old)) return nullptr;
  Guard g(h->huge_lock);
  Segment* prev = seg->prev;
  Segment* next = seg->next;
  huge_guard_set(seg, false);  // mremap wants the mapping as one VMA
  Segment* n = huge_remap(seg, old, want, may_move);
  if (n == nullptr) {
    huge_guard_set(seg, true);
    heap_uncommit(h, want - old);
    return nullptr;
  }
  n->mapped = want;
  huge_guard_set(n, true);
  if (n != seg) {
    if (prev) prev->next = n; else h->huge = n;
    if (next) next->prev = n;
  }
  return reinterpret_cast<char*>(n) + off;
}

}  // namespace alloy::engine::detail
