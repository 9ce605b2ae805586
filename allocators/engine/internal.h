// Engine internals: the data structures behind alloy::engine and alloy::Heap.
//
// What it is for: shared by the core's files (see core_state.h), block_ops.cc and heap.cc, and by the
// inline fast path (fast_path.h) and white-box tests. Not a public API: the
// Bazel target //allocators/engine:internal is visible only to the engine
// package, tests/allocators/engine and tests/fuzz (fast_path.h includes it, so other code
// sees it only through fast_path.h, never by name).
// Cost: every lookup below is address arithmetic (no locks, no syscalls).
// Thread safety: documented per structure below.
//
// Example (how the fast path finds a block's page and owner):
//   using namespace alloy::engine::detail;
//   Segment* seg = segment_of(p);                   // p & ~(4 MiB - 1)
//   Span* page = span_of(seg, p);                   // descriptor of p's span
//   bool mine = seg->owner_tid.load(std::memory_order_relaxed) == thread_id();
//   std::size_t block = page->block_size;           // p's size class
//
// ---------------------------------------------------------------------------
// Memory layout
// ---------------------------------------------------------------------------
//
//   Segment (4 MiB, 4 MiB-aligned, from mmap)
//   +---------+---------+---------+-- ... --+---------+
//   | slice 0 | slice 1 | slice 2 |         | slice 63|   64 slices of 64 KiB
//   | header  |  span of 1 slice  |  span of n slices  |
//   +---------+---------+---------+-- ... --+---------+
//
// Slice 0 holds the Segment header and one Span descriptor per slice. A span
// is a run of slices described by the Span of its first slice; every other
// slice of a used span stores its distance in bytes to the first
// (slice_offset), so the Span of any pointer is pure arithmetic:
//     seg  = p & ~(4 MiB - 1)
//     page = &seg->pages[(p - seg) >> 16];  page -= page->slice_offset bytes;
// No per-block header: a 32-byte block costs exactly 32 bytes.
//
// Spans are used three ways:
//   small page : blocks of one size class (8 B .. 64 KiB, 8 classes per
//                doubling above 128 B, so internal waste <= 1/9), carved
//                lazily 4 KiB at a time so untouched memory is never faulted.
//   large block: one block of whole slices (64 KiB < size <= 2 MiB).
//   free span  : coalesced with free neighbours. Its committed slices are
//                "dirty": kept for reuse and scheduled on their segment's
//                purge deadline (spans.cc: one deadline per segment, a purge
//                delay after the first free since the last purge); once due,
//                every dirty run of the segment is madvise(DONTNEED)ed, one
//                call per run, and an empty segment goes back to the segment
//                cache. Deadlines are checked on slow paths only (no thread
//                of our own). Dirty slices beyond a budget are purged early,
//                when a span needs fresh slices (spans.cc, purge_over_budget),
//                and when a span is freed while most of the ThreadHeap is
//                free (purge_if_mostly_free), so an idle program keeps at
//                most the budget.
// Huge blocks (> 2 MiB) get their own 4 MiB-aligned mapping whose first 8 KiB
// is a Segment header (page 0 describes the block), grown with mremap, and a
// bounded process-wide cache keeps recently freed ones mapped so loops over
// 5-25 MiB buffers do not fault every page in again.
//
// ---------------------------------------------------------------------------
// Ownership and threads
// ---------------------------------------------------------------------------
//
// A ThreadHeap is a single-owner heap: page queues per size class, the free
// spans of its segments, its segment list. The name says who owns it: one
// thread at a time (the default heap has one per thread; a user heap has one,
// owned by whichever thread holds the heap's lock). Every segment belongs to exactly one
// ThreadHeap for its whole life (seg->local never changes); only the *thread* that
// owns the ThreadHeap changes, recorded in seg->owner_tid.
//   - The process default heap gives each thread its own ThreadHeap (initial-exec
//     TLS pointer). Same-thread alloc and free touch only that ThreadHeap's plain
//     fields: no lock, no atomic read-modify-write.
//   - A free from another thread (owner_tid != caller) pushes the block onto
//     page->thread_free with one CAS. The owner moves those blocks back when
//     its page runs dry. Pages the owner parked as full are announced once on
//     local->pending (flag bits in thread_free) so the owner revisits only them.
//   - At thread exit (pthread key destructor, low key index so glibc never
//     allocates) the ThreadHeap is collected, its segments get owner_tid 0 and the
//     ThreadHeap goes to the heap's idle pool; the next new thread adopts it whole,
//     and collect() reclaims idle ThreadHeaps. Nothing leaks.
//   - In a forked child, the ThreadHeaps of threads that did not survive fork are
//     orphaned: fork may have copied them mid-update, so no thread adopts
//     them. Their blocks stay valid and freeable (owner_tid 0: cross-thread
//     push); their free memory is not reused in the child (as in mimalloc).
//   - A user heap (alloy::Heap) has one ThreadHeap guarded by HeapCore::lock, a
//     BiasedLock: the thread that uses the heap first takes it with plain
//     stores until another thread does (then it is a spin lock). Its segments
//     have owner_tid 0: Heap::free frees under the lock when it can take it
//     at once (try_lock), otherwise (and engine::free always) with the
//     lock-free cross-thread push.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "alloy/allocators/engine/biased_lock.h"
#include "alloy/base/config.h"

namespace alloy::profile {
class Sampler;
}

namespace alloy::engine::detail {

// ---- Geometry. ----
inline constexpr std::size_t kSliceShift = 16;
inline constexpr std::size_t kSliceSize = std::size_t{1} << kSliceShift;  // 64 KiB
inline constexpr std::size_t kSegmentShift = 22;
inline constexpr std::size_t kSegmentSize = std::size_t{1} << kSegmentShift;  // 4 MiB
inline constexpr std::uintptr_t kSegmentMask = kSegmentSize - 1;
inline constexpr std::size_t kSlices = kSegmentSize / kSliceSize;  // 64
inline constexpr std::size_t kSmallMax = 64 * 1024;     // largest size-class block
inline constexpr std::size_t kLargeMax = 2 * 1024 * 1024;  // largest in-segment block
inline constexpr std::size_t kLargeAlignMax = 1024 * 1024;  // in-segment alignment cap
inline constexpr std::size_t kHugeAlignMax = 2 * 1024 * 1024;  // engine::kMaxAlignment
inline constexpr std::size_t kHugeHeader = 8192;  // huge block offset in its mapping
inline constexpr std::size_t kDirectMax = 1024;   // sizes served by ThreadHeap::direct
inline constexpr std::size_t kDirectSlots = kDirectMax / 8 + 1;

// Purge policy (spans.cc): a free span's committed slices are purged once
// it has stayed free for kPurgeDelayMs (checked per segment, at its oldest
// dirty span's deadline); dirty slices beyond max(kDirtyMinSlices,
// 1/kDirtyFraction of a ThreadHeap's slices) are purged before it commits
// fresh ones.
inline constexpr std::uint64_t kPurgeDelayMs = 250;
inline constexpr std::uint32_t kDirtyMinSlices = 48;  // 3 MiB
inline constexpr std::uint32_t kDirtyFraction = 16;
// A ThreadHeap whose dirty slices exceed the budget and kMostlyFree times
// its used slices (three quarters of what it touched is free) purges the
// excess at once, when a span is freed (spans.cc, purge_if_mostly_free): a
// program that frees most of its heap and then makes no call gives it back
// without a thread of the engine's own.
inline constexpr std::uint32_t kMostlyFree = 3;

// ---- Size classes: 8..128 step 8, then 8 classes per doubling to 64 KiB. ----
inline constexpr unsigned kClasses = 89;  // 1..88 used, 0 = none

constexpr unsigned class_of(std::size_t size) {  // size >= 1, <= kSmallMax
  if (size <= 128) return static_cast<unsigned>((size + 7) >> 3);
  const std::size_t w = size - 1;
  const unsigned k = 63u - static_cast<unsigned>(__builtin_clzll(w));
  return 16 + (k - 7) * 8 + static_cast<unsigned>((w >> (k - 3)) & 7) + 1;
}
constexpr std::size_t class_size(unsigned c) {
  if (c <= 16) return std::size_t{c} * 8;
  const unsigned j = c - 17;
  return (std::size_t{8} + j % 8 + 1) << (7 + j / 8 - 3);
}
static_assert(class_size(kClasses - 1) == kSmallMax);
static_assert(class_of(kSmallMax) == kClasses - 1);
static_assert(class_of(129) == 17 && class_size(17) == 144);

// Folding alignment into size (local_alloc, direct_slot): a request of
// alignment a <= kSmallMax is served from the class of size rounded up to a
// multiple of a, and its blocks are a-aligned because that class's size is
// itself a multiple of a (pages start at a slice boundary, 64 KiB-aligned).
// That holds because class sizes in [2^k, 2^(k+1)) step by 2^(k-3): a
// multiple of a either lies on that grid already (a > 2^(k-3)) or the grid
// is made of multiples of a (a <= 2^(k-3)). Checked for every such size:
constexpr bool alignment_folds_into_size() {
  for (std::size_t a = 8; a <= kSmallMax; a *= 2) {
    for (std::size_t s = a; s <= kSmallMax; s += a) {
      if (class_size(class_of(s)) % a != 0 || class_size(class_of(s)) < s) return false;
    }
  }
  return true;
}
static_assert(alignment_folds_into_size());

// Slices per small page of class c: one slice while that holds >= 8 blocks
// (<= 8 KiB), else 8 slices (512 KiB, >= 8 blocks). Only two span sizes, so a
// page freed by one class is a perfect fit for any other class of its kind:
// with per-class sizes (5, 6, 7 slices...) freed spans left holes that a
// growing workload could not reuse (churn workload: 15.9 -> 13.6 MiB peak RSS).
// Blocks are carved lazily, so a big page costs no RSS until it is used.
// (Tried: 1/2/4-slice pages holding >= 4 blocks. With purge-before-fresh the
// realloc workload peaks 1.5 MB lower, but churn faults in 2.4x as many
// pages, +20% time; not worth it while RSS is already below mimalloc's.)
constexpr std::size_t class_slices(unsigned c) {
  return class_size(c) * 8 <= kSliceSize ? 1 : 8;
}

// Block index of byte offset `off` (< 2^19) in a page of class c without a
// division: (off * magic) >> 40, magic = 2^40 / size + 1. Exact because the
// rounding error, below off / 2^40 < 2^-21, is smaller than the gap
// 1 / size >= 2^-16 between off / size and the next integer.
struct ClassMagic {
  std::uint64_t m[kClasses] = {};
  constexpr ClassMagic() {
    for (unsigned c = 1; c < kClasses; ++c) m[c] = (std::uint64_t{1} << 40) / class_size(c) + 1;
  }
};
inline constexpr ClassMagic kClassMagic;
constexpr std::size_t block_index(unsigned c, std::size_t off) {
  return static_cast<std::size_t>((off * kClassMagic.m[c]) >> 40);
}
constexpr bool block_index_is_exact() {
  for (unsigned c = 1; c < kClasses; ++c) {
    const std::size_t bs = class_size(c), span = class_slices(c) * kSliceSize;
    for (std::size_t k = 1; k * bs <= span; ++k) {
      if (block_index(c, k * bs) != k || block_index(c, k * bs - 1) != k - 1) return false;
    }
  }
  return true;
}
static_assert(block_index_is_exact());

struct Block {
  Block* next;
};

inline constexpr std::uintptr_t kTfFull = 1;
inline constexpr std::uintptr_t kTfAnnounced = 2;
inline constexpr std::uintptr_t kTfFlags = 3;

enum PageKind : std::uint8_t {
  kFreeSpan = 0,
  kSmallPage = 1,
  kLargeBlock = 2,
  kHugeBlock = 3,
  kMetaSlice = 4,
  // A large block's span kept aside after its free (ThreadHeap::span_cache):
  // still counted used, first descriptor only (the others stay kLargeBlock).
  kCachedSpan = 5,
};

struct ThreadHeap;
struct HeapCore;
struct Segment;

// A span's descriptor: every slice has one, and the one at a span's first
// slice describes the whole span (a small page, a large block or a free span;
// "page" below means a span of kind kSmallPage). 64 bytes so that the
// descriptor of a slice is one shift away from its address.
// Owner-only fields are plain; fields other threads touch are atomic.
struct Span {
  // -- hot: alloc/free fast path (owner only) --
  Block* free = nullptr;        // blocks ready to allocate
  Block* local_free = nullptr;  // blocks freed by the owner since last refill
  // Blocks handed out and not yet returned, in the low 31 bits; the sign bit
  // (kUsedFull) is the owner's copy of kTfFull, so the local free's single
  // "decrement, then <= 0?" test catches both slow cases (page now empty,
  // page parked as full).
  std::int32_t used = 0;
  std::uint32_t block_size = 0;
  // Cross-thread frees: a block list head with two flag bits in the low
  // bits. kTfFull: the owner parked the page as full (or it is a large block),
  // so the first free announces the page on local->pending; kTfAnnounced:
  // that announcement is in flight, so the owner must not retire the page.
  // Both decisions are made in the same CAS as the push, so a freeing thread
  // never touches the page after its CAS unless it owns the announcement.
  std::atomic<std::uintptr_t> thread_free{0};
  // -- owner only --
  std::uint16_t capacity = 0;      // blocks carved so far (of reserved(page))
  std::uint16_t slice_offset = 0;  // bytes back to the span's first descriptor
  std::uint8_t kind = kFreeSpan;
  // Small page charged per OS page (near a heap's ceiling, pages.cc
  // page_charge): 1 + the 4 KiB pages charged so far; 0 when its slices are
  // charged whole (the usual case, recorded in committed_mask).
  std::uint8_t lazy = 0;
  std::uint8_t size_class = 0;
  std::uint8_t slice_count = 0;    // slices in the span (first descriptor)
  union {
    Span* pending_next;     // used page: link on local->pending
    std::uint64_t freed_at; // free span: ms timestamp for delayed purge
  };
  Span* next = nullptr;  // page queue, full list or free-span bin
  Span* prev = nullptr;

  constexpr Span() : pending_next(nullptr) {}
};
static_assert(sizeof(Span) == 64);

inline int live(const Span* p) { return p->used & 0x7fffffff; }
inline bool is_full(const Span* p) { return p->used < 0; }
inline void set_full(Span* p) { p->used = static_cast<std::int32_t>(static_cast<std::uint32_t>(p->used) | 0x80000000u); }
inline void clear_full(Span* p) { p->used = p->used & 0x7fffffff; }
// Blocks that fit in a small page (slow paths only: a division).
inline std::uint32_t reserved(const Span* p) {
  return static_cast<std::uint32_t>((std::size_t{p->slice_count} << kSliceShift) / p->block_size);
}

struct Segment {
  std::atomic<std::uintptr_t> owner_tid{0};  // thread that owns `local`, or 0
  ThreadHeap* local = nullptr;
  std::size_t mapped = 0;        // bytes of the mapping (kSegmentSize unless huge)
  std::size_t huge_offset = 0;   // huge: block offset in the mapping
  Segment* next = nullptr;       // local's segments / heap's huge list
  Segment* prev = nullptr;
  std::uint64_t committed_mask = 0;  // slices that may hold RSS
  std::uint32_t used_slices = 0;     // slices in used spans (excl. slice 0)
  std::uint32_t is_huge = 0;
  // Dirty slices (free and committed) awaiting purge, and when they are due
  // (ms, now_ms(); 0 when purge_mask is empty). Owner of `local` only.
  std::uint64_t purge_mask = 0;
  std::uint64_t purge_expire = 0;
  Span pages[kSlices];
};
static_assert(sizeof(Segment) <= kHugeHeader);

// What a segment's metadata slice counts against its heap's ceiling: the OS
// pages the header and descriptors touch (8 KiB), not the 64 KiB slice.
inline constexpr std::size_t kMetaCharge = (sizeof(Segment) + 4095) & ~std::size_t{4095};
// Bytes a committed_mask stands for (bit 0 is the metadata slice).
inline std::size_t mask_bytes(std::uint64_t mask) noexcept {
  return static_cast<std::size_t>(__builtin_popcountll(mask & ~std::uint64_t{1})) * kSliceSize +
         ((mask & 1) != 0 ? kMetaCharge : 0);
}

struct PageQueue {
  Span* first = nullptr;
  Span* last = nullptr;
};

struct SpinLock {
  std::atomic<int> word{0};
  void lock() noexcept;
  bool try_lock() noexcept { return word.exchange(1, std::memory_order_acquire) == 0; }
  void unlock() noexcept { word.store(0, std::memory_order_release); }
};

template <class Lock>
struct Guard {
  Lock& l;
  explicit Guard(Lock& lock) noexcept : l(lock) { l.lock(); }
  ~Guard() { l.unlock(); }
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;
};

extern Span g_empty_page;

// A single-owner heap (see the file comment).
struct ThreadHeap {
  Span* direct[kDirectSlots];  // first page of the class for sizes <= 1 KiB
  PageQueue queues[kClasses];  // pages with (probably) free blocks
  PageQueue full;              // pages found full; revisited via `pending`
  Span* spans[kSlices + 1];    // free spans by slice count
  // Bit b set while spans[b] is not empty (b <= 63: a free span is at most
  // the 63 slices after a segment's header), so span_find visits only those.
  std::uint64_t span_bins = 0;
  std::atomic<Span*> pending{nullptr};
  Segment* segments = nullptr;
  HeapCore* heap = nullptr;
  std::uintptr_t tid = 0;
  ThreadHeap* pool_next = nullptr;  // idle pool
  ThreadHeap* all_next = nullptr;   // every ThreadHeap of the process
  std::uint64_t purge_at = 0;  // earliest purge_expire of its segments (0: none)
  std::uint32_t dirty = 0;     // slices in its segments' purge_masks
  std::uint32_t purge_ticks = 0;  // purge_tick calls (core_state.h)
  std::uint32_t segment_count = 0;
  std::uint32_t used_slices = 0;  // sum of its segments' used_slices
  // Spans of freed large blocks kept for the next large block of the same
  // slice count (pages.cc, span_cache_put): a free+malloc of a large block
  // skips coalescing, the bins and the dirty bookkeeping. One span per slice
  // count up to kSpanCacheMaxCount, at most kSpanCacheMaxSlices slices in
  // all; flushed to the bins by every purge pass and collect, so the purge
  // delay still applies.
  static constexpr std::size_t kSpanCacheMaxCount = 8;
  static constexpr std::uint32_t kSpanCacheMaxSlices = 8;
  Span* span_cache[kSpanCacheMaxCount + 1] = {};
  std::uint32_t span_cache_bins = 0;  // bit n set while span_cache[n] holds a span
  std::uint32_t span_cache_slices = 0;
  // Set while its thread exits (thread_exit_hook): what it frees then stays
  // dirty for the thread that adopts it (no purge of a mostly free heap).
  bool exiting = false;
  // An AccountScope's leased heap in carve mode (scope.cc): t_local points
  // here and its blocks are charged per carve, not per block.
  bool carve = false;
  // Set on the ThreadHeaps that hold only sampled blocks (sampling.cc: the
  // process profile's g_prof_heap, a profiled user heap's sampled
  // ThreadHeap): the sampler that recorded them, told of their frees. Their
  // segments have owner_tid 0, so every engine::free of such a block reaches
  // free_cross, which looks here; other frees never do.
  profile::Sampler* sampler = nullptr;

  constexpr ThreadHeap() : direct{}, queues{}, spans{} {
    for (auto& d : direct) d = &g_empty_page;
  }
};

// A memory account's hooks on its heap (allocators/engine/account.cc; null on
// every other heap). charge: before a block of the heap is handed out (its
// usable size and the request), false refuses it; credit: when a block of the
// heap is freed, from any thread, by any path (account_free from free_cross,
// heap_free). Both
// must not call malloc: they run inside it. An account's large and huge
// blocks never grow in place (block_ops.cc), so a block's usable size is the
// same at its charge and at its credit.
struct HeapAccount {
  bool (*charge)(HeapAccount* a, std::size_t usable, std::size_t request) noexcept;
  void (*credit)(HeapAccount* a, std::size_t usable) noexcept;
  // For carve mode (scope.cc): charges `bytes` and `blocks` at once, exactly
  // (false: refused, nothing charged, no refusal recorded); publishes the
  // calling thread's scope batch (soft limits may call back: only where no
  // page operation is in flight).
  bool (*charge_many)(HeapAccount* a, std::size_t bytes, std::size_t blocks) noexcept;
  void (*flush)(HeapAccount* a) noexcept;
  // Bumped by each reset() of the account: a block kept outside its heap
  // (scope_charge_foreign) is credited only while this has not changed.
  std::atomic<std::uint64_t> resets{0};
};

// A profiled user heap's sampling state (sampling.cc): its Sampler, the
// countdown, and the ThreadHeap its sampled blocks live in.
struct HeapProfile;

// A heap: the process default (many ThreadHeaps, one per thread) or a user heap
// (one ThreadHeap behind `lock`, and a second one for sampled blocks once
// profiled, behind the same lock).
struct HeapCore {
  // User heap: the ThreadHeap, biased to the first thread that takes it
  // (biased_lock.h), so a heap used from one thread pays no atomic exchange
  // per allocation. Default heap: the idle pool, a plain spin lock
  // (make_plain at process init).
  BiasedLock lock;
  SpinLock huge_lock;  // huge list
  std::atomic<std::size_t> committed{0};
  std::atomic<std::size_t> peak{0};
  std::atomic<std::size_t> ceiling{~std::size_t{0}};
  std::atomic<bool> eager{false};
  HeapAccount* account = nullptr;  // set once before the heap's first block
  // An AccountScope leases this heap and holds its lock for the scope's
  // life (scope.cc): fork_prepare does not wait for it (the lease holder
  // owns the ThreadHeap; in the child a lease of a thread that did not
  // survive stays taken). fork_skipped: fork_prepare's note of that, for its
  // release (the forking thread only, under g_heaps_lock).
  std::atomic<bool> leased{false};
  bool fork_skipped = false;
  // Walks in progress (Heap::visit drops the lock between pages): while
  // non-zero, empty segments are kept so the walk's cursor stays valid.
  std::atomic<int> visiting{0};
  bool is_default = false;
  ThreadHeap* idle = nullptr;     // default heap: ThreadHeaps of exited threads
  Segment* huge = nullptr;   // huge blocks of this heap
  HeapCore* next_heap = nullptr;
  HeapCore* prev_heap = nullptr;
  // Set once (under `lock`) by the first heap_set_profile_rate, freed by
  // destroy; read under `lock`.
  HeapProfile* profile = nullptr;
  ThreadHeap local;  // user heap's only ThreadHeap (but for sampled blocks)
};

// One byte per 4 MiB unit of the 47-bit address space: kOwned while the unit
// is engine memory (segments, huge mappings), kOwnedHead where a segment or
// huge mapping starts. A static array (32 MiB of .bss, untouched pages cost
// nothing), so the free fast path tests ownership with one byte load at a
// fixed address: no pointer to load, no null test. Written by owns_mark
// (os.cc) with relaxed atomic stores.
inline constexpr std::size_t kOwnsUnits = (std::size_t{1} << 47) >> kSegmentShift;
inline constexpr std::uint8_t kOwned = 1;
inline constexpr std::uint8_t kOwnedHead = 2;
extern std::uint8_t g_owns_map[kOwnsUnits] __attribute__((visibility("hidden")));
// Addresses at or above 2^47 (not user-space pointers on x86-64 or aarch64
// with 48-bit VAs) are masked onto the map rather than bounds-checked, one
// instruction less on every free: such a wild pointer may then read as owned
// and fault in the free that follows, as it would in glibc's free.
inline std::uint8_t owns_byte(const void* p) noexcept {
  const std::uintptr_t u = (reinterpret_cast<std::uintptr_t>(p) >> kSegmentShift) & (kOwnsUnits - 1);
#if defined(ALLOY_HAVE_TSAN)
  return std::atomic_ref<std::uint8_t>(g_owns_map[u]).load(std::memory_order_relaxed);
#else
  // A byte load is atomic on every target; the plain read lets the compiler
  // fold it into the compare (cmpb $0, map(u)). A unit's byte changes only
  // while no block of it is live, so a racing reader sees either value
  // for memory it does not own.
  return g_owns_map[u];
#endif
}
// owns_byte without the mask, for the exported free's fast path (one
// instruction less): a pointer at or above 2^47, which no user-space mapping
// of a default Linux process has, indexes past the map. What that reads is
// either 0 (the pointer is ignored as foreign) or not, and then the owner
// load from its "segment", a kernel or non-canonical address, faults: such a
// free faults, as it does in glibc's free, and never touches memory.
inline bool owns_unmasked(const void* p) noexcept {
#if defined(ALLOY_HAVE_TSAN) || !defined(__x86_64__)
  return owns_byte(p) != 0;
#else
  const std::uintptr_t u = reinterpret_cast<std::uintptr_t>(p) >> kSegmentShift;
  const std::uint8_t* map = g_owns_map;
  __asm__("" : "+r"(map));  // an address, not an array the compiler may reason about
  return map[u] != 0;
#endif
}

// ---- Free-list links (safe-linking). ----
// A link stored in a free block is encoded: next ^ g_link_key ^ the block's
// own address, with g_link_key a random secret drawn at process init. A
// use-after-free write into a free block's first word cannot name an address
// for a later malloc to return (the attacker does not know the key), and
// whatever it decodes to is checked before it is followed: a list head must
// lie in its page's segment (head_ok, on every pop) and list walks check every
// link (link_ok); a failed check is reported (link_corrupted). Every push
// goes through encode_link, every read of a link through decode_link.
extern std::uintptr_t g_link_key __attribute__((visibility("hidden")));
inline std::uintptr_t xor_link_key(std::uintptr_t v) noexcept {
#if defined(__x86_64__) && defined(__GNUC__)
  // One xor with a memory operand (GCC loads the key into a register first).
  __asm__("xorq %1, %0" : "+r"(v) : "m"(g_link_key));
  return v;
#else
  return v ^ g_link_key;
#endif
}
inline Block* encode_link(const Block* b, const Block* next) noexcept {
  return reinterpret_cast<Block*>(xor_link_key(reinterpret_cast<std::uintptr_t>(next)) ^
                                  reinterpret_cast<std::uintptr_t>(b));
}
inline Block* decode_link(const Block* b) noexcept {
  return reinterpret_cast<Block*>(xor_link_key(reinterpret_cast<std::uintptr_t>(b->next)) ^
                                  reinterpret_cast<std::uintptr_t>(b));
}
// A list head b of `page` may be followed: it lies in the page's segment (the
// descriptor is in the segment header). False for null too, so the fast
// path's one test covers both "empty" and "corrupted".
inline bool head_ok(const void* page, const Block* b) noexcept {
  return ((reinterpret_cast<std::uintptr_t>(b) ^ reinterpret_cast<std::uintptr_t>(page)) >>
          kSegmentShift) == 0;
}
// Reports a corrupted free list of `page` (the page and the bad link) and
// aborts, or, when errors only report (engine::set_abort_on_error(false)),
// empties the page's lists so the bad link is never followed (their blocks
// leak). Slow path only.
[[gnu::cold]] void link_corrupted(Span* page, const void* link) noexcept;
// True if `link`, read from a free list of `page`, may be followed: null or
// inside the page (a range test: whatever it reaches is the page's own
// memory). For list walks (slow paths).
inline bool link_ok(Span* page, const void* link, std::uintptr_t start) noexcept {
  return reinterpret_cast<std::uintptr_t>(link) - start <
             (std::size_t{page->slice_count} << kSliceShift) ||
         link == nullptr;
}
// After a detected misuse was reported: abort(), unless errors only report.
void error_done() noexcept;
extern std::atomic<bool> g_abort_on_error;

// What the engine asked of the OS (os.cc; relaxed counters, for stats and
// tests): madvise(DONTNEED) calls and bytes, mmap and munmap calls.
extern std::atomic<std::uint64_t> g_os_purge_calls;
extern std::atomic<std::uint64_t> g_os_purge_bytes;
extern std::atomic<std::uint64_t> g_os_map_calls;
extern std::atomic<std::uint64_t> g_os_unmap_calls;
extern std::atomic<std::size_t> g_os_mapped;  // bytes the engine has mapped

// Per-thread ThreadHeap of the default heap; &g_empty_local until first use.
extern ThreadHeap g_empty_local;
extern __thread ThreadHeap* t_local __attribute__((tls_model("initial-exec")));

inline std::uintptr_t thread_id() noexcept {
  std::uintptr_t tp;
#if defined(__x86_64__)
  __asm__("mov %%fs:0, %0" : "=r"(tp));
#elif defined(__aarch64__)
  __asm__("mrs %0, tpidr_el0" : "=r"(tp));
#else
  tp = reinterpret_cast<std::uintptr_t>(&t_local);
#endif
  return tp;
}

// The secure mode (README "Hardening"; ALLOY_SECURE=1, or always on when
// built with --define=alloy_secure=1): 0 until ensure_process_init decided,
// then 1 (off) or 2 (on). Written once, under g_init_lock, before any block
// exists. On, the default heap's fast paths are switched off by their own
// tests, so they cost nothing when it is off: direct[] stays on the empty
// page (every malloc takes the slow path) and a ThreadHeap's tid is
// thread_id() ^ 1 (every owner compare fails, so every free takes the slow
// path, where the malloc adapter's checks run); fresh blocks are carved in
// random order.
inline constexpr std::uint8_t kSecureUnknown = 0, kSecureOff = 1, kSecureOn = 2;
extern std::uint8_t g_secure_state __attribute__((visibility("hidden")));
// What a ThreadHeap's tid (and its segments' owner_tid) is for this thread.
inline std::uintptr_t owner_id() noexcept {
  return thread_id() ^ (g_secure_state == kSecureOn ? 1 : 0);
}

inline Segment* segment_of(const void* p) noexcept {
  return reinterpret_cast<Segment*>(reinterpret_cast<std::uintptr_t>(p) & ~kSegmentMask);
}
inline Span* span_of(Segment* seg, const void* p) noexcept {
  // ((p - seg) >> kSliceShift) * sizeof(Span), as one shift and one mask.
  const std::uintptr_t off = (reinterpret_cast<std::uintptr_t>(p) >> (kSliceShift - 6)) &
                             ((kSlices - 1) << 6);
  char* page = reinterpret_cast<char*>(seg->pages) + off;
  return reinterpret_cast<Span*>(page - reinterpret_cast<Span*>(page)->slice_offset);
}
inline std::uintptr_t page_start(Segment* seg, Span* page) noexcept {
  return reinterpret_cast<std::uintptr_t>(seg) +
         (static_cast<std::uintptr_t>(page - seg->pages) << kSliceShift);
}

// ThreadHeap::direct's slot for `size` (<= kDirectMax): sizes in 8-byte units,
// rounded up, so slot s serves the class of s * 8 bytes. With `align` 16 (what
// malloc promises) the size is rounded to 16 bytes first, as local_alloc
// rounds it; with `align` <= 8 the slot is the exact class.
inline std::size_t direct_slot(std::size_t size, std::size_t align) noexcept {
  return align <= 8 ? (size + 7) >> 3 : (size + 15) >> 4 << 1;
}

// realloc's rule for a block that need not move: the new size fits and the
// block would not be more than half empty (a bigger shrink moves the data
// to a smaller class). Huge blocks keep any shrink (huge.cc).
inline bool keeps_in_place(std::size_t size, std::size_t usable) noexcept {
  return size <= usable && size >= usable / 2;
}

// Large block pg grows to `size` (<= kLargeMax) over the free span after it;
// the caller owns pg's ThreadHeap (its thread, or the user heap's lock).
bool large_grow_owned(Segment* seg, Span* pg, std::size_t size) noexcept;
// Grows huge block p in place (or moved when may_move) against its own
// heap's ceiling; the block's (possibly new) address, or null.
void* huge_grow(void* p, std::size_t size, bool may_move) noexcept;
// Frees huge block seg unless it was already freed (false then).
bool huge_free(Segment* seg) noexcept;

// ---- Account scopes (scope.cc; allocators/engine/account.h's AccountScope). ----
// While a thread is in a scope, t_local is &g_scope_local, a ThreadHeap with
// no pages (every direct slot is the empty page), so the unchanged inline
// fast path finds no block and every allocation reaches a slow half.
// The thread's own ThreadHeap waits in t_scope_saved (own_local()).
//
// A scope normally leases a heap of its account for its whole life (the
// account library keeps a pool of them per account, account.cc): the lease
// holds that heap's lock until the scope ends, so the scoped thread owns its
// ThreadHeap, t_scope_lane, like its own default-heap ThreadHeap. Then
//   - scope_try_alloc / scope_try_free are the scoped fast lane, which the
//     malloc adapter's slow halves try first: a direct-slot pop from (or a
//     local push to) t_scope_lane plus a few adds on t_scope_batch; no lock,
//     no atomic. They decline (null / false) whatever needs more.
//   - scope_alloc serves the rest from t_scope_lane (local_alloc, under the
//     held lock) and charges through the account's hooks.
//   - every other path that would take the leased heap's lock (account_free,
//     heap_free, heap_realloc) sees t_scope_lane and acts as its owner.
// Without a lease (none could be made) t_scope_lane is null and scope_alloc
// takes heap_alloc_raw on t_scope_heap (the account's own heap) per call.
extern ThreadHeap g_scope_local;
extern __thread HeapCore* t_scope_heap __attribute__((tls_model("initial-exec")));
extern __thread ThreadHeap* t_scope_saved __attribute__((tls_model("initial-exec")));
extern __thread ThreadHeap* t_scope_lane __attribute__((tls_model("initial-exec")));
void* scope_alloc(std::size_t size, std::size_t align, bool zero) noexcept;
// The scoped thread's per-thread charge batch (its rules: account.cc,
// "A scope's per-thread batch"): `node` is the scope's account (its
// HeapAccount), `bytes`/`blocks` what this thread charged (+) and credited
// (-) to it since the last publish, `high` the highest `bytes` since then,
// `room` how far `bytes` may rise before a publish. The fast lane adds here;
// publishing is the account library's (through its hooks).
struct ScopeBatch {
  HeapAccount* node = nullptr;
  std::ptrdiff_t bytes = 0;
  std::ptrdiff_t blocks = 0;
  std::ptrdiff_t high = 0;
  std::ptrdiff_t room = 0;
};
inline constexpr std::ptrdiff_t kScopeBatchBytes = 32 << 10;  // AccountScope::kBatchBytes
extern __thread ScopeBatch t_scope_batch __attribute__((tls_model("initial-exec")));
// The fast lane (see above): a block of `size` (1..1 KiB, malloc's
// alignment) from t_scope_lane's direct page, charged to the batch, or null.
void* scope_try_alloc(std::size_t size) noexcept;
// p (engine memory) freed into t_scope_lane as its owner and credited to the
// batch, or false (not a small block of the lane, the block freed last on
// its page, or the batch must publish): the caller frees it the usual way.
bool scope_try_free(void* p) noexcept;
// Blocks the malloc adapter maps itself (alignments above 2 MiB): in a scope
// they are charged to its account (false: refused, nothing charged) and
// *account / *epoch say whom to credit at their free (null: unscoped).
// reset() of the account drops their charge (they are not in its heap: the
// memory goes at their free).
bool scope_charge_foreign(std::size_t usable, std::size_t request, HeapAccount** account,
                          std::uint64_t* epoch) noexcept;
void scope_credit_foreign(HeapAccount* account, std::size_t usable, std::uint64_t epoch) noexcept;
// Carve mode (the usual one for a lease): t_local is the leased ThreadHeap
// itself (its segments' owner_tid this thread's), so the unchanged inline pop
// and push serve scoped calls. Its small pages are charged per carve: the
// batch is charged a block's size when page_extend carves it (refused past
// the batch's room: the slow path then publishes and retries, and past the
// limit falls back to the lane, exact per block), credited when its page's
// span is freed (page_free_span, purge_kept_pages), charged again when a
// block freed by another thread (credited by that thread) is collected. So
// in carve mode the account's figures count the leased heap's carved blocks,
// free or not: never below the truth (beyond the batch), above it by the
// free blocks of its pages; scope_exit credits those (capacity - used per
// page), exact again. Blocks above 64 KiB or aligned above it never enter a
// lease: they come from the account's own heap (t_scope_heap), per block.
inline void carve_note(std::ptrdiff_t bytes, std::ptrdiff_t blocks) noexcept {
  ScopeBatch& b = t_scope_batch;
  b.bytes += bytes;
  b.blocks += blocks;
  if (b.bytes > b.high) b.high = b.bytes;
}
inline bool carve_fits(std::ptrdiff_t bytes) noexcept {
  return t_scope_batch.bytes + bytes <= t_scope_batch.room;
}
// alloc_generic / alloc_zeroed for a ThreadHeap in carve mode.
void* scope_carve_alloc(ThreadHeap* l, std::size_t size, std::size_t align, bool zero) noexcept;
// The thread's own ThreadHeap of the default heap, in a scope or not.
inline ThreadHeap* own_local() noexcept {
  ThreadHeap* l = t_local;
  return l == &g_scope_local || l->carve ? t_scope_saved : l;
}
struct ScopeSaved {
  HeapCore* heap;
  ThreadHeap* lane;
  ThreadHeap* local;
  bool outer;
};
// Ends carve mode of the enclosing scope's lease (its batch still current),
// which goes on as a lane: before a nested scope switches the batch.
void scope_suspend_carve() noexcept;
// Tries carve mode again for the current scope's lease (after a nested
// scope ended and the enclosing scope's batch is current again).
void scope_resume_carve() noexcept;
// Makes `big` this thread's scope heap until scope_exit (LIFO, nesting): a
// scope with a lease passes its ThreadHeap as `lane` (the caller holds its
// lock until scope_exit) and the account's own heap as `big`; carve mode is
// tried (the scope's batch current). Without a lease, lane is null.
ScopeSaved scope_enter(HeapCore* big, ThreadHeap* lane) noexcept;
void scope_exit(ScopeSaved saved) noexcept;
// free_cross's first step for a block of an account's heap: credits it, then
// frees it as the heap's owner when this thread leases the heap, or when the
// heap's lock is free at once (its biased owner takes it with plain stores),
// or as a huge block; false: the caller pushes it as a cross-thread free.
bool account_free(Segment* seg, Span* pg, void* p) noexcept;
// Frees every block of user heap h at the cost of its pages, as destroy does,
// and leaves h empty and usable (same HeapCore, same registration).
void heap_reset(HeapCore* h) noexcept;

// ---- Block checks (heap.cc and free.cc; slow paths only). ----
inline bool is_segment_head(const void* seg) noexcept { return (owns_byte(seg) & kOwnedHead) != 0; }
// Null if p looks like the start of a live block of some heap (engine
// memory, a segment head, a used page of the right kind, on a block
// boundary), with *seg and *page set; else what is wrong with p. Reads
// only fields that are stable while p is live; does not look at free lists.
const char* block_check(const void* p, Segment** seg, Span** page) noexcept;

// Checked builds (no NDEBUG, or a sanitizer): wrong frees are reported on
// stderr, and a free walks its page's free lists to catch double frees.
#if !defined(NDEBUG) || defined(ALLOY_HAVE_SANITIZER)
#define ALLOY_ENGINE_CHECKED 1
#endif
#if defined(ALLOY_ENGINE_CHECKED)
inline constexpr bool kChecked = true;
#else
inline constexpr bool kChecked = false;
#endif

// Checked builds: every block on a free list (carved, or freed by any path)
// carries this in its second word, so a checked free walks the page's free
// lists only for a block that carries it (or that ASan poisoned, or an
// 8-byte block): a live block rarely does, a freed one always does unless a
// write after free clobbered it.
inline constexpr std::uintptr_t kFreedMark = 0xa110ca7edf4eeb10u;
inline void mark_freed(void* p, std::size_t block_size) noexcept {
  if constexpr (kChecked) {
    if (block_size > sizeof(void*)) static_cast<std::uintptr_t*>(p)[1] = kFreedMark;
  } else {
    (void)p;
    (void)block_size;
  }
}

// One line to stderr with write(2), formatted without malloc:
//   "alloy <who>: <op> <p> (<size> bytes) refused: <why>; called from <caller>\n"
// (the size part only when size != 0, the caller part only when != 0).
void report(const char* who, const char* op, const void* p, std::size_t size, const char* why,
            std::uintptr_t caller) noexcept;
// A HeapCore's block operations (block_ops.cc, in the core; alloy::Heap in
// heap.cc is a thin layer over them). Every one checks p (block_check) and
// reports a refusal with `caller`.
// heap_realloc: p's block resized or moved within the heap that owns it; null
// (p intact) past the ceiling or if p is refused (engine::realloc uses it for
// a user heap's block).
void* heap_realloc(void* p, std::size_t size, std::size_t align, std::uintptr_t caller) noexcept;
// A block of h (h's lock taken inside; the default heap's direct pop first).
void* heap_alloc_raw(HeapCore* h, std::size_t size, std::size_t align) noexcept;
// Frees p into the heap that owns it, or refuses it (double free, foreign).
void heap_free(void* p, std::uintptr_t caller) noexcept;
// As heap_free; checked builds also refuse a size above the usable size.
void heap_free_sized(void* p, std::size_t size, std::uintptr_t caller) noexcept;
// In place only: true if p's block now holds size bytes.
bool heap_resize(void* p, std::size_t size, std::uintptr_t caller) noexcept;
// Huge blocks only (mremap); null if p cannot move cheaply.
void* heap_remap(void* p, std::size_t size, std::uintptr_t caller) noexcept;
// The heap whose Heap::visit is calling its callback on this thread (its lock
// held), so a free from the callback neither retakes nor releases the lock.
extern __thread HeapCore* t_visiting __attribute__((tls_model("initial-exec")));

// ---- Invariants (validate.cc). ----
// The first invariant found broken: what, and the structure it was found at.
struct Violation {
  const char* what = nullptr;
  const void* where = nullptr;
};
// Walks ThreadHeap l whole (segments, spans, small pages and their free
// lists, page queues, free-span bins, direct slots); false and *out on the
// first broken invariant. Only l's owner may call it (plain fields): the
// calling thread for its own default-heap ThreadHeap (validate_current_thread),
// or under the heap's lock (validate_heap_core does it). O(blocks): for tests
// and fuzz harnesses after each batch, never on an allocation path.
bool validate_thread_heap(const ThreadHeap* l, Violation* out) noexcept;
bool validate_current_thread(Violation* out) noexcept;
bool validate_heap_core(HeapCore* h, Violation* out) noexcept;

// Slow paths (alloc.cc, free.cc, huge.cc, threads.cc).
void* alloc_generic(ThreadHeap* l, std::size_t size, std::size_t align) noexcept;
// Sampled heap profiles (sampling.cc): on while a rate is set; the heap that
// holds sampled blocks; the slow path's charge-and-maybe-sample of block p,
// the free of a sampled block (from free_cross) and its realloc.
extern std::atomic<bool> g_prof_on __attribute__((visibility("hidden")));  // one cmpb, no GOT load
// The sampling hooks of the slow paths, compiled in (the default) or out
// (--define=alloy_profile_hooks=0: only for measuring what they cost,
// bench/compare/profile_overhead.py --hooks-out; profiles are then empty).
#if defined(ALLOY_NO_PROFILE_HOOKS)
inline constexpr bool kProfileHooks = false;
#else
inline constexpr bool kProfileHooks = true;
#endif
inline bool prof_on() noexcept { return kProfileHooks && g_prof_on.load(std::memory_order_relaxed); }
extern HeapCore g_prof_heap;
// The calling thread's bytes to go before its next sample (sampling.cc's
// countdown; alloc_sampling charges blocks above kDirectMax inline).
extern __thread std::int64_t t_prof_countdown
    __attribute__((tls_model("initial-exec"), visibility("hidden")));
void* prof_alloc_slow(void* p, std::size_t size, std::size_t align) noexcept;
// A request above kSmallMax, charged before any block is taken: the
// sampled block (from g_prof_heap), or null when it is not sampled (or the
// sample could not be taken) and the caller allocates as usual.
void* prof_alloc_big(std::size_t size, std::size_t align) noexcept;
// The free of block p of l, a ThreadHeap with a sampler (free_cross,
// heap_free): the sample is forgotten.
void prof_free(ThreadHeap* l, void* p) noexcept;
void* prof_realloc(void* p, std::size_t size) noexcept;
// Per-heap profiles (sampling.cc) of user heap h. set: mean bytes between
// samples (0: off; the first call > 0 maps the HeapProfile); false if it
// could not be mapped. sampled_local: the ThreadHeap of h's sampled blocks,
// or null (under h's lock, or while no thread allocates from h).
// sample_charge: under h's lock, charges an allocation of `size` to h's
// countdown; true if it is to be sampled. record: the sampled block p of h,
// its stack captured here (outside h's lock). write: h's profile, as
// profile::Sampler::write. release: destroy's last step, after
// heap_release_all. fork: the sampler's lock across fork (phase 0 prepare,
// 1 parent, 2 child), under h's lock.
bool heap_set_profile_rate(HeapCore* h, std::int64_t mean_bytes) noexcept;
std::int64_t heap_profile_rate(HeapCore* h) noexcept;
ThreadHeap* heap_sampled_local(HeapCore* h) noexcept;
bool heap_sample_charge(HeapCore* h, std::size_t size) noexcept;
void heap_sample_record(HeapCore* h, void* p, std::size_t size) noexcept;
bool heap_write_profile(HeapCore* h, const char* path, bool live_only) noexcept;
void heap_profile_release(HeapCore* h) noexcept;
void heap_profile_fork(HeapCore* h, int phase) noexcept;
void free_local_slow(Span* page) noexcept;
void free_cross(Segment* seg, Span* page, void* p) noexcept;
void* local_alloc(ThreadHeap* l, std::size_t size, std::size_t align) noexcept;
bool heap_init(HeapCore* h) noexcept;
void heap_collect(HeapCore* h) noexcept;
void heap_release_all(HeapCore* h) noexcept;
// *dirty (if given): how many bytes from the block's start may be non-zero
// (0 for a new mapping, the cached part of a reused one).
void* huge_alloc(HeapCore* h, ThreadHeap* l, std::size_t size, std::size_t align,
                 std::size_t* dirty = nullptr) noexcept;
std::size_t usable_size_of(const void* p) noexcept;
void ensure_process_init() noexcept;
void register_heap(HeapCore* h) noexcept;
void unregister_heap(HeapCore* h) noexcept;
void local_collect(ThreadHeap* l, bool force) noexcept;
std::size_t heap_huge_bytes(HeapCore* h, std::size_t* count) noexcept;
// Marks page's free blocks in `bits` (one bit per block index).
void page_mark_free(Span* page, std::uint64_t* bits) noexcept;
void page_collect(Span* page) noexcept;
extern HeapCore g_default_heap;

}  // namespace alloy::engine::detail
