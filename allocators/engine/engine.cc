// The size-class engine: slow paths, spans, segments, huge blocks, threads.
// Data structures and the ownership model are described in internal.h.
// Malloc-path rule: nothing here calls malloc (syscalls, atomics, own memory).
#include <pthread.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <new>

#include "alloy/allocators/engine/engine.h"
#include "alloy/allocators/engine/fast_path.h"
#include "alloy/allocators/engine/internal.h"
#include "alloy/base/line_writer.h"

static_assert(alloy::engine::kMaxAlignment == alloy::engine::detail::kHugeAlignMax,
              "engine.h exports the alignment cap the huge path serves");

#if defined(ALLOY_HAVE_ASAN)
#define ALLOY_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define ALLOY_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define ALLOY_POISON(p, n) ((void)(p), (void)(n))
#define ALLOY_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace alloy::engine::detail {

constinit Page g_empty_page;
constinit Local g_empty_local;
__thread Local* t_local __attribute__((tls_model("initial-exec"))) = &g_empty_local;
constinit HeapCore g_default_heap;
constinit std::atomic<std::uint64_t*> g_owns_bits{nullptr};
constinit std::atomic<std::uint64_t*> g_head_bits{nullptr};

namespace {
// Reports and stats: a few lines at most.
using Line = base::LineWriter<1024>;
}  // namespace

void report(const char* who, const char* op, const void* p, std::size_t size, const char* why,
            std::uintptr_t caller) noexcept {
  Line line;
  line.add("alloy ").add(who).add(": ").add(op).add(" ").hex(reinterpret_cast<std::uintptr_t>(p));
  if (size != 0) line.add(" (").dec(size).add(" bytes)");
  line.add(" refused: ").add(why);
  if (caller != 0) line.add("; called from ").hex(caller);
  line.add("\n");
  line.write_to(2);
}

void SpinLock::lock() noexcept {
  for (int spins = 0;; ++spins) {
    if (word.load(std::memory_order_relaxed) == 0 &&
        word.exchange(1, std::memory_order_acquire) == 0) {
      return;
    }
    spin_backoff(spins);
  }
}

void local_collect_impl(Local* l, bool force) noexcept;

namespace {

constexpr std::uint64_t kPurgeDelayMs = 100;
constexpr std::uint64_t kHugeCacheTtlMs = 2000;
constexpr std::size_t kHugeCacheEntries = 8;
constexpr std::size_t kHugeCacheMaxBytes = std::size_t{256} << 20;
constexpr std::size_t kSegmentCacheMax = 16;
constexpr std::size_t kOsPage = 4096;

// ---- Size-class tables for Local::direct. ----
struct DirectRanges {
  std::uint8_t first[kClasses] = {};
  std::uint8_t last[kClasses] = {};
  constexpr DirectRanges() {
    for (std::size_t idx = 1; idx < kDirectSlots; ++idx) {
      const unsigned c = class_of(idx * 8);
      if (first[c] == 0) first[c] = static_cast<std::uint8_t>(idx);
      last[c] = static_cast<std::uint8_t>(idx);
    }
  }
};
constexpr DirectRanges kDirect;

// ---- Process state. ----
std::atomic<int> g_init{0};
SpinLock g_init_lock;
pthread_key_t g_key;
bool g_key_ok = false;

SpinLock g_heaps_lock;
HeapCore* g_heaps = nullptr;  // user heaps

SpinLock g_meta_lock;
char* g_meta_cur = nullptr;
std::size_t g_meta_left = 0;
Local* g_all_locals = nullptr;  // guarded by g_default_heap.lock

SpinLock g_segcache_lock;
Segment* g_segcache[kSegmentCacheMax];
std::size_t g_segcache_count = 0;

struct HugeEntry {
  Segment* seg;
  std::size_t mapped;
  std::uint64_t t;
};
SpinLock g_huge_cache_lock;
HugeEntry g_huge_cache[kHugeCacheEntries];
std::size_t g_huge_cache_count = 0;
std::size_t g_huge_cache_bytes = 0;

std::atomic<std::size_t> g_os_mapped{0};

// ---- OS. ----
std::uint64_t now_ms() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000 +
         static_cast<std::uint64_t>(ts.tv_nsec) / 1000000;
}

void* os_map(std::size_t n) noexcept {
  void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  g_os_mapped.fetch_add(n, std::memory_order_relaxed);
  return p;
}

void os_unmap(void* p, std::size_t n) noexcept {
  if (munmap(p, n) == 0) g_os_mapped.fetch_sub(n, std::memory_order_relaxed);
}

// n and align are multiples of kSegmentSize.
void* os_map_aligned(std::size_t n, std::size_t align) noexcept {
  if (n > (std::size_t{1} << 46)) return nullptr;
  auto* raw = static_cast<char*>(os_map(n + align));
  if (raw == nullptr) return nullptr;
  const auto addr = reinterpret_cast<std::uintptr_t>(raw);
  const std::uintptr_t a = (addr + align - 1) & ~(std::uintptr_t{align} - 1);
  const std::size_t head = a - addr;
  if (head != 0) os_unmap(raw, head);
  const std::size_t tail = align - head;
  if (tail != 0) os_unmap(reinterpret_cast<char*>(a) + n, tail);
  return reinterpret_cast<void*>(a);
}

void os_purge(void* p, std::size_t n) noexcept { madvise(p, n, MADV_DONTNEED); }

std::uint64_t* owns_bits() noexcept { return g_owns_bits.load(std::memory_order_acquire); }

// Marks [start, start + len) as engine memory (or not), and start's unit as
// a segment head.
void owns_mark(const void* start, std::size_t len, bool on) noexcept {
  std::uint64_t* bits = owns_bits();
  if (bits == nullptr) return;
  const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(start) >> kSegmentShift;
  if (std::uint64_t* heads = g_head_bits.load(std::memory_order_acquire);
      heads != nullptr && a < kOwnsBitsBytes * 8) {
    std::atomic_ref<std::uint64_t> w(heads[a / 64]);
    const std::uint64_t m = std::uint64_t{1} << (a % 64);
    if (on) w.fetch_or(m, std::memory_order_relaxed); else w.fetch_and(~m, std::memory_order_relaxed);
  }
  const std::uintptr_t b = (reinterpret_cast<std::uintptr_t>(start) + len - 1) >> kSegmentShift;
  for (std::uintptr_t u = a; u <= b; ++u) {
    if (u >= kOwnsBitsBytes * 8) return;
    std::atomic_ref<std::uint64_t> w(bits[u / 64]);
    const std::uint64_t m = std::uint64_t{1} << (u % 64);
    if (on) w.fetch_or(m, std::memory_order_relaxed); else w.fetch_and(~m, std::memory_order_relaxed);
  }
}

// ---- Commit accounting (the ceiling). ----
bool heap_commit(HeapCore* h, std::size_t bytes) noexcept {
  const std::size_t c = h->committed.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  if (c > h->ceiling.load(std::memory_order_relaxed)) {
    h->committed.fetch_sub(bytes, std::memory_order_relaxed);
    return false;
  }
  std::size_t pk = h->peak.load(std::memory_order_relaxed);
  while (c > pk && !h->peak.compare_exchange_weak(pk, c, std::memory_order_relaxed)) {
  }
  return true;
}
void heap_uncommit(HeapCore* h, std::size_t bytes) noexcept {
  h->committed.fetch_sub(bytes, std::memory_order_relaxed);
}

constexpr std::uint64_t range_mask(std::size_t idx, std::size_t n) {
  return (n >= 64 ? ~std::uint64_t{0} : ((std::uint64_t{1} << n) - 1)) << idx;
}

// ---- Metadata memory for Locals (never returned; Locals are recycled). ----
void* meta_alloc(std::size_t n) noexcept {
  n = (n + 63) & ~std::size_t{63};
  Guard g(g_meta_lock);
  if (g_meta_left < n) {
    const std::size_t chunk = n > (256u << 10) ? (n + kOsPage - 1) & ~(kOsPage - 1) : (256u << 10);
    auto* m = static_cast<char*>(os_map(chunk));
    if (m == nullptr) return nullptr;
    g_meta_cur = m;
    g_meta_left = chunk;
  }
  void* p = g_meta_cur;
  g_meta_cur += n;
  g_meta_left -= n;
  return p;
}

// ---- Page queues. ----
void queue_push_front(PageQueue* q, Page* pg) noexcept {
  pg->prev = nullptr;
  pg->next = q->first;
  if (q->first) q->first->prev = pg; else q->last = pg;
  q->first = pg;
}
void queue_push_back(PageQueue* q, Page* pg) noexcept {
  pg->next = nullptr;
  pg->prev = q->last;
  if (q->last) q->last->next = pg; else q->first = pg;
  q->last = pg;
}
void queue_remove(PageQueue* q, Page* pg) noexcept {
  if (pg->prev) pg->prev->next = pg->next; else q->first = pg->next;
  if (pg->next) pg->next->prev = pg->prev; else q->last = pg->prev;
  pg->next = pg->prev = nullptr;
}
void direct_update(Local* l, unsigned c) noexcept {
  if (class_size(c) > kDirectMax) return;
  Page* pg = l->queues[c].first ? l->queues[c].first : &g_empty_page;
  for (unsigned i = kDirect.first[c]; i <= kDirect.last[c]; ++i) l->direct[i] = pg;
}

// ---- Spans. ----
void span_insert(Local* l, Page* s) noexcept {
  Page*& head = l->spans[s->slice_count];
  s->prev = nullptr;
  s->next = head;
  if (head) head->prev = s;
  head = s;
}
void span_remove(Local* l, Page* s) noexcept {
  if (s->prev) s->prev->next = s->next; else l->spans[s->slice_count] = s->next;
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = nullptr;
}
void span_set_free(Segment* seg, std::size_t idx, std::size_t n, std::uint64_t t) noexcept {
  Page* first = &seg->pages[idx];
  first->kind = kFreeSpan;
  first->slice_count = static_cast<std::uint8_t>(n);
  first->slice_offset = 0;
  first->freed_at = t;
  if (n > 1) {
    Page* last = &seg->pages[idx + n - 1];
    last->kind = kFreeSpan;
    last->slice_count = 0;
    last->slice_offset = static_cast<std::uint16_t>((n - 1) * sizeof(Page));
  }
}

void span_purge(Local* l, Segment* seg, std::size_t idx, std::size_t n) noexcept {
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

void segment_release(Local* l, Segment* seg) noexcept;

void span_free(Local* l, Segment* seg, std::size_t idx, std::size_t n) noexcept {
  seg->used_slices -= static_cast<std::uint32_t>(n);
  // Even when the span merges into a free neighbour before it (and its first
  // descriptor is no longer a span's first), a pointer into it must resolve
  // to a free span, not to the block it held (block_check: a double free).
  seg->pages[idx].kind = kFreeSpan;
  const std::uint64_t now = now_ms();
  const std::size_t j = idx + n;
  if (j < kSlices && seg->pages[j].kind == kFreeSpan) {
    Page* nx = &seg->pages[j];
    span_remove(l, nx);
    n += nx->slice_count;
  }
  if (idx > 1 && seg->pages[idx - 1].kind == kFreeSpan) {
    Page* pv = &seg->pages[idx - 1];
    pv = reinterpret_cast<Page*>(reinterpret_cast<char*>(pv) - pv->slice_offset);
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
Page* span_take(Local* l, Page* s, std::size_t a, std::size_t n) noexcept {
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
  Page* pg = &seg->pages[a];
  pg->slice_count = static_cast<std::uint8_t>(n);
  return pg;
}

// A free run of n slices starting at a multiple of align_slices; marked used
// (caller sets kinds) but not yet committed. Prefers touched memory: first
// the smallest span that starts with n committed slices, else the placement
// (at either end of any span) that overlaps the most committed slices, so a
// big page is laid over touched fragments instead of fresh slices (realloc
// workload: fewer fresh slices, so fewer purged for them and refaulted).
Page* span_find(Local* l, std::size_t n, std::size_t align_slices) noexcept {
  for (std::size_t b = n; b <= kSlices; ++b) {
    for (Page* s = l->spans[b]; s != nullptr; s = s->next) {
      Segment* seg = segment_of(s);
      const std::size_t idx = static_cast<std::size_t>(s - seg->pages);
      const std::size_t a = (idx + align_slices - 1) / align_slices * align_slices;
      if (a + n > idx + b) continue;
      if ((range_mask(a, n) & ~seg->committed_mask) != 0) continue;
      return span_take(l, s, a, n);
    }
  }
  Page* best = nullptr;
  std::size_t best_a = 0;
  int best_score = -1;
  for (std::size_t b = n; b <= kSlices; ++b) {
    for (Page* s = l->spans[b]; s != nullptr; s = s->next) {
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
void local_collect_idle_one() noexcept;

Segment* segment_new(Local* l) noexcept {
  // Before taking fresh memory, reclaim what exited threads' pages got back
  // from cross-thread frees (one idle Local per new segment, round robin).
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

void segment_unlink(Local* l, Segment* seg) noexcept {
  if (seg->prev) seg->prev->next = seg->next; else l->segments = seg->next;
  if (seg->next) seg->next->prev = seg->prev;
  l->segment_count--;
}

void segment_release(Local* l, Segment* seg) noexcept {
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

void local_purge(Local* l, std::uint64_t cutoff, bool force) noexcept {
  Segment* seg = l->segments;
  while (seg != nullptr) {
    Segment* next = seg->next;
    for (std::size_t idx = 1; idx < kSlices;) {
      Page* pg = &seg->pages[idx];
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

void maybe_purge(Local* l) noexcept {
  const std::uint64_t now = now_ms();
  if (now - l->last_purge < kPurgeDelayMs) return;
  l->last_purge = now;
  local_purge(l, now - kPurgeDelayMs, false);
}

void page_retire(Local* l, Page* pg, bool force) noexcept;

// Each class keeps its last page when it empties (no thrash at a page
// boundary). Before the Local grows by a segment, give those kept empty pages
// back as free spans: a workload whose sizes drift (append loops, phases)
// would otherwise keep one touched page per class it ever used (realloc
// workload: ~15 MiB). Returns true if any span was freed.
bool retire_kept_pages(Local* l) noexcept {
  bool any = false;
  for (unsigned c = 1; c < kClasses; ++c) {
    Page* pg = l->queues[c].first;
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
void purge_for_fresh(Local* l, std::size_t need) noexcept {
  std::size_t done = 0;
  for (int round = 0; round < 2 && done < need; ++round) {
    if (round == 1 && !retire_kept_pages(l)) break;
    for (std::size_t b = 1; b <= kSlices && done < need; ++b) {
      for (Page* s = l->spans[b]; s != nullptr && done < need; s = s->next) {
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
Page* span_get(Local* l, std::size_t n, std::size_t align_slices, std::uint8_t kind,
               bool* zero = nullptr) noexcept {
  for (int attempt = 0; attempt < 2; ++attempt) {
    Page* pg = span_find(l, n, align_slices);
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
          seg->pages[idx + i].slice_offset = static_cast<std::uint16_t>(i * sizeof(Page));
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

// ---- Pages. ----
// A lazily charged page (Page::lazy) pays for the OS pages its first
// `capacity` blocks reach; false past the ceiling.
bool page_charge(Page* pg, std::size_t capacity) noexcept {
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
bool page_extend(Page* pg) noexcept {
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
  char* start = reinterpret_cast<char*>(page_start(seg, pg)) + pg->capacity * bsize;
  for (std::size_t i = 0; i + 1 < count; ++i) {
    reinterpret_cast<Block*>(start + i * bsize)->next = reinterpret_cast<Block*>(start + (i + 1) * bsize);
    mark_freed(start + i * bsize, bsize);
  }
  reinterpret_cast<Block*>(start + (count - 1) * bsize)->next = pg->free;
  mark_freed(start + (count - 1) * bsize, bsize);
  pg->free = reinterpret_cast<Block*>(start);
  pg->capacity = static_cast<std::uint16_t>(pg->capacity + count);
  return true;
}

void page_free_span(Local* l, Page* pg) noexcept;

Page* page_new(Local* l, unsigned c) noexcept {
  const std::size_t n = class_slices(c);
  Page* pg = span_get(l, n, 1, kSmallPage);
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

void page_free_span(Local* l, Page* pg) noexcept {
  Segment* seg = segment_of(pg);
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
  if (!l->heap->eager.load(std::memory_order_relaxed)) maybe_purge(l);
}

void page_retire(Local* l, Page* pg, bool force) noexcept {
  if (pg->thread_free.load(std::memory_order_acquire) & kTfAnnounced) return;  // drain comes back
  PageQueue* q = &l->queues[pg->size_class];
  if (!force && !l->heap->eager.load(std::memory_order_relaxed) && q->first == pg && q->last == pg) {
    return;  // keep the last page of a class: avoids thrashing at a page boundary
  }
  queue_remove(q, pg);
  direct_update(l, pg->size_class);
  page_free_span(l, pg);
}

void unfull(Local* l, Page* pg) noexcept {
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

void drain_pending(Local* l) noexcept {
  Page* pg = l->pending.exchange(nullptr, std::memory_order_acquire);
  while (pg != nullptr) {
    Page* next = pg->pending_next;
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

void* alloc_from_class(Local* l, unsigned c) noexcept {
  if (l->pending.load(std::memory_order_relaxed) != nullptr) drain_pending(l);
  PageQueue* q = &l->queues[c];
  Page* const first_before = q->first;
  Page* pg;
  while ((pg = q->first) != nullptr) {
    page_collect(pg);
    if (pg->free != nullptr) break;
    if (pg->capacity < reserved(pg)) {
      // Reuse freed blocks of the next page before touching fresh memory.
      Page* nx = pg->next;
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
  Block* b = pg->free;
  pg->free = b->next;
  pg->used++;
  ALLOY_UNPOISON(b, pg->block_size);
  return b;
}

void* large_alloc(Local* l, std::size_t size, std::size_t align, bool* zero = nullptr) noexcept {
  if (l->pending.load(std::memory_order_relaxed) != nullptr) drain_pending(l);
  const std::size_t n = (size + kSliceSize - 1) >> kSliceShift;
  const std::size_t as = align > kSliceSize ? align >> kSliceShift : 1;
  Page* pg = span_get(l, n, as, kLargeBlock, zero);
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

}  // namespace

// Grows large block pg (2 .. 32 slices) to `size` bytes (<= kLargeMax) by
// taking the free span right after it. The caller owns the Local: spans are
// its plain fields.
bool large_grow_owned(Segment* seg, Page* pg, std::size_t size) noexcept {
  Local* l = seg->local;
  const std::size_t idx = static_cast<std::size_t>(pg - seg->pages);
  const std::size_t cur = pg->slice_count;
  const std::size_t n = (size + kSliceSize - 1) >> kSliceShift;
  if (n <= cur) return true;
  const std::size_t j = idx + cur;  // first slice after the block
  if (j >= kSlices) return false;
  Page* nx = &seg->pages[j];
  const std::size_t extra = n - cur;
  if (nx->kind != kFreeSpan || nx->slice_count < extra) return false;
  const std::uint64_t fresh = range_mask(j, extra) & ~seg->committed_mask;
  if (fresh != 0 &&
      !heap_commit(l->heap, static_cast<std::size_t>(__builtin_popcountll(fresh)) * kSliceSize)) {
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
  seg->used_slices += static_cast<std::uint32_t>(extra);
  for (std::size_t i = cur; i < n; ++i) {
    seg->pages[idx + i].kind = kLargeBlock;
    seg->pages[idx + i].slice_offset = static_cast<std::uint16_t>(i * sizeof(Page));
  }
  pg->slice_count = static_cast<std::uint8_t>(n);
  pg->block_size = static_cast<std::uint32_t>(n << kSliceShift);
  ALLOY_UNPOISON(reinterpret_cast<char*>(seg) + (j << kSliceShift), extra << kSliceShift);
  return true;
}

namespace {
// large_grow_owned from the thread that owns the block's segment.
bool large_grow_in_place(Segment* seg, Page* pg, std::size_t size) noexcept {
  const std::uintptr_t owner = seg->owner_tid.load(std::memory_order_relaxed);
  if (owner == 0 || owner != thread_id()) return false;
  return large_grow_owned(seg, pg, size);
}

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
  return true;
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

void huge_init_header(Segment* seg, Local* l, std::size_t mapped, std::size_t off) noexcept {
  ::new (seg) Segment();
  seg->local = l;
  seg->mapped = mapped;
  seg->huge_offset = off;
  seg->is_huge = 1;
  for (std::size_t i = 0; i < kSlices; ++i) {
    seg->pages[i].slice_offset = static_cast<std::uint16_t>(i * sizeof(Page));
  }
  seg->pages[0].kind = kHugeBlock;
  seg->pages[0].slice_count = 1;
  seg->pages[0].used = 1;
  seg->pages[0].block_size = 0;
}

}  // namespace

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
  if (seg->huge_offset == kHugeHeader && !h->eager.load(std::memory_order_relaxed) &&
      huge_cache_put(seg, mapped)) {
    return true;
  }
  owns_mark(seg, mapped, false);
  os_unmap(seg, mapped);
  return true;
}

namespace {

// ---- Threads. ----
void thread_exit_hook(void* arg) noexcept {
  auto* l = static_cast<Local*>(arg);
  if (l == nullptr || l == &g_empty_local) return;
  local_collect_impl(l, true);
  for (Segment* seg = l->segments; seg != nullptr; seg = seg->next) {
    seg->owner_tid.store(0, std::memory_order_release);
  }
  l->tid = 0;
  if (t_local == l) t_local = &g_empty_local;
  Guard g(g_default_heap.lock);
  l->pool_next = g_default_heap.idle;
  g_default_heap.idle = l;
}

Local* thread_init() noexcept {
  ensure_process_init();
  HeapCore* h = &g_default_heap;
  Local* l = nullptr;
  {
    Guard g(h->lock);
    l = h->idle;
    if (l != nullptr) {
      h->idle = l->pool_next;
    } else {
      void* m = meta_alloc(sizeof(Local));
      if (m == nullptr) return nullptr;
      l = ::new (m) Local();
      l->heap = h;
      l->all_next = g_all_locals;
      g_all_locals = l;
    }
  }
  l->pool_next = nullptr;
  l->tid = thread_id();
  for (Segment* seg = l->segments; seg != nullptr; seg = seg->next) {
    seg->owner_tid.store(l->tid, std::memory_order_release);
  }
  t_local = l;
  if (g_key_ok) pthread_setspecific(g_key, l);
  return l;
}

extern "C" void alloy_engine_fork_prepare() { alloy::engine::fork_prepare(); }
extern "C" void alloy_engine_fork_parent() { alloy::engine::fork_parent(); }
extern "C" void alloy_engine_fork_child() { alloy::engine::fork_child(); }

}  // namespace

void local_collect_impl(Local* l, bool force) noexcept {
  drain_pending(l);
  for (unsigned c = 1; c < kClasses; ++c) {
    Page* pg = l->queues[c].first;
    while (pg != nullptr) {
      Page* next = pg->next;
      page_collect(pg);
      if (live(pg) == 0) page_retire(l, pg, force);
      pg = next;
    }
  }
  Page* pg = l->full.first;
  while (pg != nullptr) {
    Page* next = pg->next;
    page_collect(pg);
    if (pg->free != nullptr || live(pg) == 0) unfull(l, pg);
    if (live(pg) == 0) page_retire(l, pg, force);
    pg = next;
  }
  if (force) {
    local_purge(l, 0, true);
  } else {
    maybe_purge(l);
  }
}

void local_collect(Local* l, bool force) noexcept { local_collect_impl(l, force); }

namespace {
void local_collect_idle_one() noexcept {
  HeapCore* h = &g_default_heap;
  if (!h->lock.try_lock()) return;
  Local* victim = h->idle;
  if (victim != nullptr) {
    // Rotate it to the back so the next call collects another one.
    if (victim->pool_next != nullptr) {
      h->idle = victim->pool_next;
      Local* last = h->idle;
      while (last->pool_next != nullptr) last = last->pool_next;
      last->pool_next = victim;
      victim->pool_next = nullptr;
    }
    local_collect_impl(victim, true);
  }
  h->lock.unlock();
}
}  // namespace

void page_collect(Page* pg) noexcept {
  std::uintptr_t w = pg->thread_free.load(std::memory_order_relaxed);
  if ((w & ~kTfFlags) != 0) {
    while (!pg->thread_free.compare_exchange_weak(w, w & kTfFlags, std::memory_order_acquire,
                                                  std::memory_order_relaxed)) {
    }
    Block* tf = reinterpret_cast<Block*>(w & ~kTfFlags);
    {
      std::uint32_t count = 1;
      Block* tail = tf;
      while (tail->next != nullptr) {
        tail = tail->next;
        ++count;
      }
      if (pg->kind == kSmallPage) {
        tail->next = pg->local_free;
        pg->local_free = tf;
      }
      pg->used -= static_cast<std::int32_t>(count);
    }
  }
  if (pg->free == nullptr) {
    pg->free = pg->local_free;
    pg->local_free = nullptr;
  }
}

void page_mark_free(Page* pg, std::uint64_t* bits) noexcept {
  const std::uintptr_t start = page_start(segment_of(pg), pg);
  Block* lists[2] = {pg->free, pg->local_free};
  for (Block* b : lists) {
    for (; b != nullptr; b = b->next) {
      const std::size_t i = (reinterpret_cast<std::uintptr_t>(b) - start) / pg->block_size;
      bits[i / 64] |= std::uint64_t{1} << (i % 64);
    }
  }
}

void ensure_process_init() noexcept {
  if (g_init.load(std::memory_order_acquire) == 2) return;
  Guard g(g_init_lock);
  if (g_init.load(std::memory_order_relaxed) == 2) return;
  g_default_heap.is_default = true;
  // Taken only at thread start and exit, by every thread: no owner to favour,
  // and no membarrier syscalls in every program that uses the malloc adapter.
  g_default_heap.lock.make_plain();
  void* bits = mmap(nullptr, kOwnsBitsBytes, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  void* heads = mmap(nullptr, kOwnsBitsBytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (heads != MAP_FAILED) g_head_bits.store(static_cast<std::uint64_t*>(heads), std::memory_order_release);
  if (bits != MAP_FAILED) g_owns_bits.store(static_cast<std::uint64_t*>(bits), std::memory_order_release);
  // glibc keeps the values of keys below PTHREAD_KEY_2NDLEVEL_SIZE (32) in
  // the thread descriptor; higher keys calloc a second level on first
  // setspecific, which is still safe here because t_local is set first.
  g_key_ok = pthread_key_create(&g_key, thread_exit_hook) == 0;
  pthread_atfork(alloy_engine_fork_prepare, alloy_engine_fork_parent, alloy_engine_fork_child);
  g_init.store(2, std::memory_order_release);
}

void* local_alloc(Local* l, std::size_t size, std::size_t align) noexcept {
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
    Page* pg = l->queues[c].first;
    if (pg != nullptr && pg->free != nullptr) {
      Block* b = pg->free;
      pg->free = b->next;
      pg->used++;
      ALLOY_UNPOISON(b, pg->block_size);
      return b;
    }
    return alloc_from_class(l, c);
  }
big:
  if (size <= kLargeMax) return large_alloc(l, size, align);
  return huge_alloc(l->heap, l, size, align);
}

void* alloc_generic(Local* l, std::size_t size, std::size_t align) noexcept {
  if (size <= kDirectMax && align <= 16 && size != 0) {
    // The page ran dry but the owner freed blocks into it: swap them in.
    Page* pg = l->direct[direct_slot(size, 16)];
    if (pg->local_free != nullptr) {
      Block* b = pg->local_free;
      pg->free = b->next;
      pg->local_free = nullptr;
      pg->used++;
      ALLOY_UNPOISON(b, pg->block_size);
      return b;
    }
  }
  if (l == &g_empty_local) {
    l = thread_init();
    if (l == nullptr) return nullptr;
  }
  return local_alloc(l, size, align);
}

void* huge_alloc(HeapCore* h, Local* l, std::size_t size, std::size_t align,
                 std::size_t* dirty) noexcept {
  if (dirty != nullptr) *dirty = size;
  if (align > kHugeAlignMax || size > (std::size_t{1} << 46)) return nullptr;
  const std::size_t off = align > kHugeHeader ? align : kHugeHeader;
  const std::size_t want = huge_map_size(off, size);
  Segment* seg = nullptr;
  std::size_t mapped = want;
  HugeEntry e;
  if (off == kHugeHeader && !h->eager.load(std::memory_order_relaxed) && huge_cache_take(want, &e, dirty != nullptr)) {
    seg = e.seg;
    mapped = e.mapped;
    if (dirty != nullptr) *dirty = mapped - off < size ? mapped - off : size;  // grown tail is new
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
  huge_init_header(seg, l, mapped, off);
  huge_link(h, seg);
  return reinterpret_cast<char*>(seg) + off;
}

void free_local_slow(Page* pg) noexcept {
  Segment* seg = segment_of(pg);
  Local* l = seg->local;
  if (pg->used == 0 && pg->kind == kSmallPage) {
    // Common case first: the class's only page emptied; keep it.
    const PageQueue* q = &l->queues[pg->size_class];
    if (q->first == pg && q->last == pg && !l->heap->eager.load(std::memory_order_relaxed)) return;
  }
  if (pg->kind == kLargeBlock) {
    page_collect(pg);  // the block went to local_free; forget it
    pg->local_free = nullptr;
    pg->free = nullptr;
    if (live(pg) == 0 && !(pg->thread_free.load(std::memory_order_acquire) & kTfAnnounced)) {
      page_free_span(l, pg);
    }
    return;
  }
  if (is_full(pg)) unfull(l, pg);
  if (live(pg) == 0) page_retire(l, pg, false);
}

void free_cross(Segment* seg, Page* pg, void* p) noexcept {
  if (pg->kind == kHugeBlock) {
    (void)huge_free(seg);
    return;
  }
  mark_freed(p, pg->block_size);  // checked builds only
  if (pg->kind == kSmallPage && pg->block_size > sizeof(void*)) {
    ALLOY_POISON(static_cast<char*>(p) + sizeof(void*), pg->block_size - sizeof(void*));
  }
  auto* b = static_cast<Block*>(p);
  std::uintptr_t w = pg->thread_free.load(std::memory_order_relaxed);
  bool announce;
  std::uintptr_t nw;
  do {
    b->next = reinterpret_cast<Block*>(w & ~kTfFlags);
    announce = (w & kTfFull) != 0 && (w & kTfAnnounced) == 0;
    nw = reinterpret_cast<std::uintptr_t>(b) | (w & kTfFlags) | (announce ? kTfAnnounced : 0);
  } while (!pg->thread_free.compare_exchange_weak(w, nw, std::memory_order_acq_rel,
                                                  std::memory_order_relaxed));
  if (announce) {  // we own the announcement: the page cannot retire under us
    Local* l = seg->local;
    Page* head = l->pending.load(std::memory_order_relaxed);
    do {
      pg->pending_next = head;
    } while (!l->pending.compare_exchange_weak(head, pg, std::memory_order_release,
                                               std::memory_order_relaxed));
  }
}

const char* block_check(const void* p, Segment** out_seg, Page** out_page) noexcept {
  if (!inline_owns(p)) return "not engine memory";
  Segment* seg = segment_of(p);
  // A unit past a huge mapping's first holds block bytes, not a header.
  if (!is_segment_head(seg)) return "not the start of a block";
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  Page* pg;
  if (seg->is_huge != 0) {
    pg = &seg->pages[0];
    if (addr != reinterpret_cast<std::uintptr_t>(seg) + seg->huge_offset) {
      return "not the start of a block";
    }
    if (pg->kind != kHugeBlock) return "not a live block (a double free?)";
  } else {
    if ((addr & kSegmentMask) < kSliceSize) return "segment metadata";
    pg = page_of(seg, p);
    const std::uintptr_t start = page_start(seg, pg);
    if (pg->kind == kSmallPage) {
      if ((addr - start) % pg->block_size != 0 || (addr - start) / pg->block_size >= reserved(pg)) {
        return "not the start of a block";
      }
    } else if (pg->kind == kLargeBlock) {
      if (addr != start) return "not the start of a block";
    } else {
      return "not a live block (a double free?)";
    }
  }
  *out_seg = seg;
  *out_page = pg;
  return nullptr;
}

std::size_t usable_size_of(const void* p) noexcept {
  Segment* seg = segment_of(p);
  Page* pg = page_of(seg, p);
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  switch (pg->kind) {
    case kSmallPage:
      return pg->block_size;
    case kLargeBlock:
      return page_start(seg, pg) + pg->block_size - addr;
    case kHugeBlock:
      return reinterpret_cast<std::uintptr_t>(seg) + seg->mapped - addr;
    default:
      return 0;
  }
}

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
    if (t_local != &g_empty_local) local_collect_impl(t_local, true);
    {
      Guard g(h->lock);
      for (Local* l = h->idle; l != nullptr; l = l->pool_next) local_collect_impl(l, true);
    }
    huge_cache_flush();
    segcache_flush();
    return;
  }
  {
    Guard g(h->lock);
    local_collect_impl(&h->local, true);
  }
  huge_cache_flush();
  segcache_flush();
}

// Unmaps every segment and huge block of a user heap (destroy).
void heap_release_all(HeapCore* h) noexcept {
  Guard g(h->lock);
  Local* l = &h->local;
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
  Guard hg(h->huge_lock);
  seg = h->huge;
  while (seg != nullptr) {
    Segment* next = seg->next;
    heap_uncommit(h, seg->mapped);
    owns_mark(seg, seg->mapped, false);
    os_unmap(seg, seg->mapped);
    seg = next;
  }
  h->huge = nullptr;
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
  const std::size_t want = huge_map_size(off, size);
  const std::size_t old = seg->mapped;
  if (want <= old) return p;
  if (!heap_commit(h, want - old)) return nullptr;
  Guard g(h->huge_lock);
  Segment* prev = seg->prev;
  Segment* next = seg->next;
  Segment* n = huge_remap(seg, old, want, may_move);
  if (n == nullptr) {
    heap_uncommit(h, want - old);
    return nullptr;
  }
  n->mapped = want;
  if (n != seg) {
    if (prev) prev->next = n; else h->huge = n;
    if (next) next->prev = n;
  }
  return reinterpret_cast<char*>(n) + off;
}

}  // namespace alloy::engine::detail

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
  Local* l = t_local;
  if (l == &g_empty_local) {
    l = thread_init();
    if (l == nullptr) return nullptr;
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
  Page* pg = page_of(seg, p);
  // A block of an alloy::Heap stays in its heap (its ceiling, visit, destroy).
  if (HeapCore* h = seg->local->heap; !h->is_default) return heap_realloc(p, size, 16, 0);
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
  // A block that must move to grow is likely to grow again (append loops):
  // give it 25% headroom (about two size classes) so the next growths stay in
  // place; not past its kind (small/large). realloc workload: time -35%.
  std::size_t want = size;
  if (size > usable && size <= kLargeMax) {
    const std::size_t cap = size <= kSmallMax ? kSmallMax : kLargeMax;
    const std::size_t roomy = usable + usable / 4;
    if (roomy > want) want = roomy <= cap ? roomy : cap;
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
  Page* pg = page_of(seg, p);
  if (pg->kind == kLargeBlock) return size <= kLargeMax && large_grow_in_place(seg, pg, size);
  if (pg->kind != kHugeBlock) return false;
  return huge_grow(p, size, false) != nullptr;
}

void fork_prepare() noexcept {
  if (g_init.load(std::memory_order_acquire) != 2) return;
  g_heaps_lock.lock();
  for (HeapCore* h = g_heaps; h != nullptr; h = h->next_heap) {
    h->lock.lock();
    h->huge_lock.lock();
  }
  g_default_heap.lock.lock();
  g_default_heap.huge_lock.lock();
  g_huge_cache_lock.lock();
  g_segcache_lock.lock();
  g_meta_lock.lock();
}

namespace {
// Releases what fork_prepare took. In the child (only this thread exists)
// the biased heap locks are reset rather than unlocked: a thread that did
// not survive may have been queued inside one when fork() copied it
// (fork_test caught a child hanging in thread_init that way).
void release_fork_locks(bool in_child) noexcept {
  auto release = [in_child](BiasedLock& lock) {
    if (in_child) {
      lock.reset_after_fork();
    } else {
      lock.unlock();
    }
  };
  g_meta_lock.unlock();
  g_segcache_lock.unlock();
  g_huge_cache_lock.unlock();
  g_default_heap.huge_lock.unlock();
  release(g_default_heap.lock);
  for (HeapCore* h = g_heaps; h != nullptr; h = h->next_heap) {
    h->huge_lock.unlock();
    release(h->lock);
  }
  g_heaps_lock.unlock();
}
}  // namespace

void fork_parent() noexcept {
  if (g_init.load(std::memory_order_acquire) != 2) return;
  release_fork_locks(false);
}

void fork_child() noexcept {
  if (g_init.load(std::memory_order_acquire) != 2) return;
  release_fork_locks(true);
  // Locals of threads that do not exist in the child are orphaned, not
  // reused: their owners took no lock, so fork() may have copied one in the
  // middle of an update (a half-linked span bin, a popped block not yet
  // counted). A new thread that adopted such a Local looped forever in
  // span_find (fork_test, about 1 run in 20). Their blocks stay valid in the
  // child and can still be freed (owner_tid 0 sends every free through the
  // atomic cross-thread push); only their free memory is not reused, as in
  // mimalloc. Idle Locals (exited threads) are consistent: the idle pool is
  // changed only under g_default_heap.lock, which fork_prepare held.
  Local* mine = t_local;
  for (Local* l = g_all_locals; l != nullptr; l = l->all_next) {
    if (l == mine || l->tid == 0) continue;
    for (Segment* seg = l->segments; seg != nullptr; seg = seg->next) {
      seg->owner_tid.store(0, std::memory_order_relaxed);
    }
    l->tid = 0;
  }
  if (mine != &g_empty_local) {
    mine->tid = thread_id();
    for (Segment* seg = mine->segments; seg != nullptr; seg = seg->next) {
      seg->owner_tid.store(mine->tid, std::memory_order_relaxed);
    }
  }
}

void write_stats(int fd) noexcept {
  std::size_t live_small = 0, pages = 0, large = 0;
  Local* l = t_local;
  for (Segment* seg = l == &g_empty_local ? nullptr : l->segments; seg != nullptr; seg = seg->next) {
    for (std::size_t idx = 1; idx < kSlices;) {
      Page* pg = &seg->pages[idx];
      if (pg->slice_count == 0) break;
      if (pg->kind == kSmallPage) {
        ++pages;
        live_small += static_cast<std::size_t>(live(pg)) * pg->block_size;
      } else if (pg->kind == kLargeBlock) {
        large += static_cast<std::size_t>(live(pg)) * pg->block_size;
      }
      idx += pg->slice_count;
    }
  }
  std::size_t huge_count = 0;
  const std::size_t huge = heap_huge_bytes(&g_default_heap, &huge_count);
  std::size_t cache_bytes = 0, cache_count = 0;
  {
    Guard g(g_huge_cache_lock);
    cache_bytes = g_huge_cache_bytes;
    cache_count = g_huge_cache_count;
  }
  Line line;
  line.add("alloy engine stats\n  default heap committed: ")
      .dec(g_default_heap.committed.load(std::memory_order_relaxed))
      .add(" bytes (peak ")
      .dec(g_default_heap.peak.load(std::memory_order_relaxed))
      .add(")\n  huge blocks: ")
      .dec(huge_count)
      .add(" (")
      .dec(huge)
      .add(" bytes)\n  this thread: ")
      .dec(l == &g_empty_local ? 0u : l->segment_count)
      .add(" segments, ")
      .dec(pages)
      .add(" small pages, ")
      .dec(live_small)
      .add(" bytes in small blocks, ")
      .dec(large)
      .add(" in large\n  process: ")
      .dec(g_os_mapped.load(std::memory_order_relaxed))
      .add(" bytes mapped, huge cache ")
      .dec(cache_bytes)
      .add(" bytes in ")
      .dec(cache_count)
      .add(" entries\n");
  line.write_to(fd);
}

void set_eager_purge(bool on) noexcept {
  g_default_heap.eager.store(on, std::memory_order_relaxed);
}

void collect() noexcept { heap_collect(&g_default_heap); }

}  // namespace alloy::engine
