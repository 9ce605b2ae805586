// The engine core's shared state: every global with the lock that guards it,
// the tuning constants, and the functions the core's files call in each other.
//
// What it is for: the one place a reader looks to learn what process-wide
// state the engine has and who may touch it. Private to //allocators/engine:core
// (a source of the target, not a header of it); the data structures are in
// internal.h.
// Cost: declarations only; the few inline helpers are list splices.
// Thread safety: stated per global below.
//
// The files, by concept (mimalloc's src/ is the model):
//   state.cc    these globals, report(), SpinLock
//   os.cc       mmap/munmap/madvise, the ownership bitmap, commit accounting,
//               metadata memory
//   spans.cc    free spans, segments, purge
//   pages.cc    page queues, small pages, large blocks
//   huge.cc     huge blocks and the process-wide huge and segment caches
//   threads.cc  process init, thread init/exit, idle pool, collect, fork
//   alloc.cc    the allocation slow paths
//   free.cc     the free slow paths, block_check, usable size
//   heaps.cc    HeapCore lifetime (init, register, collect, release)
//   entry.cc    the public entry points of engine.h
//   stats.cc    write_stats
//   validate.cc the invariants as code (tests and fuzzers call it)
//   block_ops.cc  alloy::Heap's block operations on a HeapCore
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "alloy/allocators/engine/internal.h"
#include "alloy/base/config.h"
#include "alloy/base/line_writer.h"

#if defined(ALLOY_HAVE_ASAN)
#include <sanitizer/asan_interface.h>
#define ALLOY_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define ALLOY_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define ALLOY_POISON(p, n) ((void)(p), (void)(n))
#define ALLOY_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace alloy::engine::detail {

// Reports and stats: a few lines at most.
using Line = base::LineWriter<1024>;

// ---- Tuning. ----
// Purge policy: kPurgeDelayMs, kDirtyMinSlices, kDirtyFraction (internal.h).
// A cached huge mapping is unmapped after this long unused (checked by the
// purge tick, so an idle program gives it back too).
inline constexpr std::uint64_t kHugeCacheTtlMs = 1000;
inline constexpr std::size_t kHugeCacheEntries = 8;
inline constexpr std::size_t kHugeCacheMaxBytes = std::size_t{256} << 20;
inline constexpr std::size_t kSegmentCacheMax = 16;
inline constexpr std::size_t kOsPage = 4096;

// ---- Size-class tables for ThreadHeap::direct. ----
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
inline constexpr DirectRanges kDirect;

struct HugeEntry {
  Segment* seg;
  std::size_t mapped;
  std::uint64_t t;
};

// ---- Process state (state.cc). Each global names what guards it. ----
// Declared in internal.h: g_empty_page, g_empty_local, t_local (the thread's
// own), g_default_heap (its lock guards its ThreadHeap pool), g_owns_map
// (relaxed atomic byte stores by owns_mark), g_link_key (written once in
// ensure_process_init, before any free list exists), g_abort_on_error
// (atomic).
extern std::atomic<int> g_init;          // 0, then 2 once ensure_process_init ran; g_init_lock
extern SpinLock g_init_lock;             // serializes ensure_process_init
extern pthread_key_t g_key;              // written once under g_init_lock
extern bool g_key_ok;                    // written once under g_init_lock

extern SpinLock g_heaps_lock;
extern HeapCore* g_heaps;                // user heaps; g_heaps_lock

extern SpinLock g_meta_lock;
extern char* g_meta_cur;                 // g_meta_lock
extern std::size_t g_meta_left;          // g_meta_lock
extern ThreadHeap* g_all_locals;              // g_default_heap.lock

extern SpinLock g_segcache_lock;
extern Segment* g_segcache[kSegmentCacheMax];  // g_segcache_lock
extern std::size_t g_segcache_count;           // g_segcache_lock

extern SpinLock g_huge_cache_lock;
extern HugeEntry g_huge_cache[kHugeCacheEntries];  // g_huge_cache_lock
extern std::size_t g_huge_cache_count;             // g_huge_cache_lock
extern std::size_t g_huge_cache_bytes;             // g_huge_cache_lock

// g_os_mapped (bytes the engine has mapped): internal.h.
extern std::atomic<void (*)()> g_thread_exit_hook;  // atomic: engine::set_thread_exit_hook

// ---- Small helpers every file uses. ----

constexpr std::uint64_t range_mask(std::size_t idx, std::size_t n) {
  return (n >= 64 ? ~std::uint64_t{0} : ((std::uint64_t{1} << n) - 1)) << idx;
}

// Bits set in a slice mask. Without -mpopcnt (the x86-64 baseline),
// __builtin_popcountll is a call to libgcc's __popcountdi2: on the span
// paths (dirty counts, commits) that was 4% of the breathe workload's
// instructions; this is a dozen inline ones.
inline unsigned slices_in(std::uint64_t m) noexcept {
#if defined(__POPCNT__) || !defined(__x86_64__)
  return static_cast<unsigned>(__builtin_popcountll(m));
#else
  m = m - ((m >> 1) & 0x5555555555555555u);
  m = (m & 0x3333333333333333u) + ((m >> 2) & 0x3333333333333333u);
  m = (m + (m >> 4)) & 0x0f0f0f0f0f0f0f0fu;
  return static_cast<unsigned>((m * 0x0101010101010101u) >> 56);
#endif
}

inline void queue_push_front(PageQueue* q, Span* pg) noexcept {
  pg->prev = nullptr;
  pg->next = q->first;
  if (q->first) q->first->prev = pg; else q->last = pg;
  q->first = pg;
}
inline void queue_push_back(PageQueue* q, Span* pg) noexcept {
  pg->next = nullptr;
  pg->prev = q->last;
  if (q->last) q->last->next = pg; else q->first = pg;
  q->last = pg;
}
inline void queue_remove(PageQueue* q, Span* pg) noexcept {
  if (pg->prev) pg->prev->next = pg->next; else q->first = pg->next;
  if (pg->next) pg->next->prev = pg->prev; else q->last = pg->prev;
  pg->next = pg->prev = nullptr;
}
inline void direct_update(ThreadHeap* l, unsigned c) noexcept {
  if (class_size(c) > kDirectMax) return;
  if (g_secure_state == kSecureOn && l->heap->is_default) return;  // internal.h
  Span* pg = l->queues[c].first ? l->queues[c].first : &g_empty_page;
  for (unsigned i = kDirect.first[c]; i <= kDirect.last[c]; ++i) l->direct[i] = pg;
}

// ---- What the files call in each other (owner file in each heading). ----
// os.cc
std::uint64_t now_ms() noexcept;
void* os_map(std::size_t n) noexcept;
void os_unmap(void* p, std::size_t n) noexcept;
void* os_map_aligned(std::size_t n, std::size_t align) noexcept;
// A fresh 4 MiB-aligned segment's worth of address space (from a reservation).
void* os_map_segment() noexcept;
void os_purge(void* p, std::size_t n) noexcept;
void owns_mark(const void* start, std::size_t len, bool on) noexcept;
bool heap_commit(HeapCore* h, std::size_t bytes) noexcept;
void heap_uncommit(HeapCore* h, std::size_t bytes) noexcept;
void* meta_alloc(std::size_t n) noexcept;
// pages.cc
bool page_charge(Span* pg, std::size_t capacity) noexcept;
bool page_extend(Span* pg) noexcept;
Span* page_new(ThreadHeap* l, unsigned c) noexcept;
void page_free_span(ThreadHeap* l, Span* pg) noexcept;
void page_retire(ThreadHeap* l, Span* pg, bool force) noexcept;
void unfull(ThreadHeap* l, Span* pg) noexcept;
void drain_pending(ThreadHeap* l) noexcept;
void* alloc_from_class(ThreadHeap* l, unsigned c) noexcept;
// The per-ThreadHeap cache of freed large blocks' spans (ThreadHeap::span_cache).
// put: keeps pg (a large block just freed, live 0) instead of freeing its
// span; false when it does not fit (then free it as usual). take: a cached
// span of exactly n slices, kind kLargeBlock again, or null. flush: every
// cached span back to the bins as freed now (span_free).
bool span_cache_put(ThreadHeap* l, Span* pg) noexcept;
Span* span_cache_take(ThreadHeap* l, std::size_t n) noexcept;
void span_cache_flush(ThreadHeap* l) noexcept;
void* large_alloc(ThreadHeap* l, std::size_t size, std::size_t align, bool* zero = nullptr) noexcept;
bool large_grow_in_place(Segment* seg, Span* pg, std::size_t size) noexcept;
// spans.cc
void span_insert(ThreadHeap* l, Span* s) noexcept;
void span_remove(ThreadHeap* l, Span* s) noexcept;
void span_set_free(Segment* seg, std::size_t idx, std::size_t n, std::uint64_t t) noexcept;
void span_purge(ThreadHeap* l, Segment* seg, std::size_t idx, std::size_t n) noexcept;
void span_free(ThreadHeap* l, Segment* seg, std::size_t idx, std::size_t n) noexcept;
Span* span_take(ThreadHeap* l, Span* s, std::size_t a, std::size_t n) noexcept;
Span* span_find(ThreadHeap* l, std::size_t n, std::size_t align_slices) noexcept;
bool span_fits_committed(const ThreadHeap* l, std::size_t n, std::size_t align_slices) noexcept;
Segment* segment_new(ThreadHeap* l) noexcept;
void segment_unlink(ThreadHeap* l, Segment* seg) noexcept;
void segment_release(ThreadHeap* l, Segment* seg) noexcept;
void dirty_add(ThreadHeap* l, Segment* seg, std::uint64_t bits, std::uint64_t now) noexcept;
void dirty_clear(ThreadHeap* l, Segment* seg, std::uint64_t bits) noexcept;
void segment_purge_bits(ThreadHeap* l, Segment* seg, std::uint64_t bits) noexcept;
void local_purge(ThreadHeap* l, std::uint64_t now, bool force) noexcept;
void maybe_purge(ThreadHeap* l) noexcept;
// Deadline of the process-wide purge work (idle ThreadHeaps, the huge
// cache); 0 when none. Lowered with schedule_global_purge, cleared by the
// thread that does the work (atomic).
extern std::atomic<std::uint64_t> g_global_purge_at;
void schedule_global_purge(std::uint64_t at) noexcept;
void purge_over_budget(ThreadHeap* l) noexcept;
bool purge_if_mostly_free(ThreadHeap* l, Segment* seg) noexcept;
bool retire_kept_pages(ThreadHeap* l) noexcept;
void purge_kept_pages(ThreadHeap* l) noexcept;
// The purge tick of the alloc/free slow halves (span_get and
// page_free_span call maybe_purge itself): purges what is due. Two loads
// when nothing is scheduled; else a clock read every kTickEvery-th call
// (reading it on every call cost churn8k 8% of its time). There is no purge
// thread: what a process whose threads all sleep still holds (the dirty
// budget, free runs in segments with blocks, the huge cache; a mostly free
// heap's empty segments went back at free time, purge_if_mostly_free) waits
// until one of them calls again (or calls collect / malloc_trim). l is a
// real ThreadHeap (not g_empty_local, which every thread shares).
inline constexpr std::uint32_t kTickEvery = 16;
inline void purge_tick(ThreadHeap* l) noexcept {
  if ((l->purge_at != 0 || g_global_purge_at.load(std::memory_order_relaxed) != 0) &&
      ++l->purge_ticks % kTickEvery == 0) {
    maybe_purge(l);
  }
}
Span* span_get(ThreadHeap* l, std::size_t n, std::size_t align_slices, std::uint8_t kind,
               bool* zero = nullptr) noexcept;
// huge.cc
std::size_t huge_map_size(std::size_t off, std::size_t size) noexcept;
void huge_link(HeapCore* h, Segment* seg) noexcept;
void huge_unlink_locked(HeapCore* h, Segment* seg) noexcept;
Segment* huge_remap(Segment* seg, std::size_t old_size, std::size_t want, bool may_move) noexcept;
void huge_cache_evict(std::uint64_t now, bool all, HugeEntry* out, std::size_t* nout) noexcept;
void huge_unmap_entries(HugeEntry* e, std::size_t n) noexcept;
bool huge_cache_put(Segment* seg, std::size_t mapped) noexcept;
bool huge_cache_take(std::size_t want, HugeEntry* out, bool fit_only) noexcept;
void huge_cache_flush() noexcept;
// Unmaps cached huge mappings unused for kHugeCacheTtlMs; when the next one
// expires (0: cache empty).
std::uint64_t huge_cache_expire(std::uint64_t now) noexcept;
void segcache_flush() noexcept;
void huge_init_header(Segment* seg, ThreadHeap* l, std::size_t mapped, std::size_t off) noexcept;
// The secure mode's guard page (README "Hardening"): the last OS page of
// every huge mapping is PROT_NONE, so an overflow off a huge block's end
// faults. huge_guard: its size (0 when the mode is off); huge_guard_set
// protects (on) or opens (off, before an mremap, which needs one VMA) the
// last page of seg's mapping. A mapping in the huge cache keeps its guard
// (so a double free of its block is still refused while it is cached).
inline std::size_t huge_guard() noexcept { return g_secure_state == kSecureOn ? kOsPage : 0; }
void huge_guard_set(Segment* seg, bool on) noexcept;
void huge_guard_at(Segment* seg, std::size_t mapped, bool on) noexcept;  // seg->mapped aside
// threads.cc
void thread_exit_hook(void* arg) noexcept;
ThreadHeap* thread_init() noexcept;
void local_collect_impl(ThreadHeap* l, bool force) noexcept;
// Retires l's empty pages (with force, the ones classes keep too); purges nothing.
void local_collect_pages(ThreadHeap* l, bool force) noexcept;
void local_collect_idle_one() noexcept;
// alloc.cc
// free.cc
// heaps.cc


}  // namespace alloy::engine::detail
