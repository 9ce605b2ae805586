// alloy::Heap — a first-class heap on the size-class engine: create one,
// cap it, walk it, measure it, and throw it away in one call.
//
// What it is for: grouping allocations that share a lifetime or a budget (a
// request, a cache, a plugin). `allocator()` hands out an alloy::Allocator;
// `set_ceiling` bounds the memory the heap commits (allocation returns null
// past it and the heap stays usable); `visit` reports every live block;
// `destroy` frees everything at a cost proportional to the heap's pages, not
// its blocks. Heap::default_allocator() is the process default heap, the one
// alloy::engine::alloc and the malloc adapter use.
//
// Optional entries: alloc_at_least on both tables reports the block's usable
// size (its size class, its slices, its mapping), which free and resize
// accept as its length. The default heap's alloc_zeroed is calloc's path
// (engine::alloc_zeroed: no memset for memory fresh from the OS) for
// alignments up to 16; a Heap's table has none (alloc + memset), because the
// engine core has no zeroed alloc for a user heap. owns: a Heap answers for
// its own blocks only; the default heap for every engine block (its free
// takes a block of any heap).
//
// Cost per call: alloc takes the heap's lock around the engine's size-class
// path; Heap::free (and the handle's free) checks the pointer (a few loads
// and a division: block_check) and frees under the lock when it is free at
// that moment, else with one lock-free CAS (checked builds always wait for
// the lock, and walk the page's free lists, O(free blocks of the page), for
// a block that carries the engine's freed mark in its second word (always
// for 8-byte blocks): every double free, and a live block whose data happens
// to hold the mark); resize and realloc check p the same way;
// visit/stats/collect walk the heap's pages under the lock. The lock is a BiasedLock: while one
// thread is the only one to have taken it, taking it costs no atomic
// exchange, and alloc pops from the heap's size-class table like malloc does
// (a heap used from one thread costs a small constant factor over the default
// heap's per-thread fast path; figures in bench/README.md); the first
// call from a second thread makes it a spin lock for good, with one
// membarrier syscall. One ThreadHeap per heap (not per thread) is
// what lets visit and stats see a consistent heap from any thread.
// Thread safety: every member may be called from any thread, and a block may
// be freed from any thread (Heap::free or alloy::engine::free). destroy() must
// not race with other calls on the same heap.
//
// Ownership: every block a heap hands out belongs to it until freed, however
// it got there: alloc, the handle's resize/remap/realloc, Heap::resize,
// Heap::realloc or alloy::engine::realloc, at any size (small <= 64 KiB,
// large <= 2 MiB, huge) and across kinds both ways. It counts against that
// heap's ceiling (growth past it is refused: null / false, the old block
// intact), stats() and visit() report it, and destroy() frees it. Frees,
// resizes and reallocs follow the block: a block of heap B freed or grown
// through heap A's handle, through Heap's static members or the default
// heap's handle goes to B (B's ceiling, B's lists) and A is untouched; only
// the handle's alloc + copy + free fallback of Allocator::realloc moves a
// block into the handle's heap.
//
// Ceilings: the ceiling counts committed bytes: 8 KiB of header per 4 MiB
// segment, the 64 KiB slices of pages and large blocks, and huge mappings
// (4 MiB granules). Near the ceiling a new small page is charged per 4 KiB
// OS page as its blocks are carved, so a small ceiling still serves small
// blocks: the smallest useful ceiling is 12 KiB (the header and one page of
// blocks of one size class); a ceiling of C serves C - 8 KiB of blocks of one
// size class, less 4 KiB (or one block, if bigger) per further class in use.
// Large blocks need whole 64 KiB slices and huge ones 4 MiB granules.
//
// Wrong frees (Heap::free, the handle's free, and resize/remap/realloc): a
// pointer that is not the start of a live engine block (malloc'd, on the
// stack, into a block, into segment metadata or past a huge block's first
// 4 MiB, or a block whose page or mapping went back) is refused, never
// crashes, and is reported in checked builds (no NDEBUG, or ASan/TSan): one
// stderr line, written without malloc, naming the call, the pointer, why,
// and the caller's return address. A double free never makes the heap hand
// a block out twice when it is caught: every build catches a large or huge
// block freed twice, a block whose page was given back, and a small block
// that is the last one freed on its page (found at the head of the page's
// list for that free; when the heap's lock is busy at the second free only
// the list of frees from other threads is looked at); checked builds always
// take the lock and walk the page's free lists (bounded by its capacity) for
// any block marked freed (every engine free and carve marks a block's second
// word in checked builds), so they catch every double free of a small block
// unless a write after the first free clobbered the mark. Release builds do
// not catch a small block freed twice with other frees of its page in
// between: that block is then handed out twice. alloy::engine::free (malloc's fast path)
// checks nothing; Heap::free is the checked entry. No build can tell a free of
// a block whose memory was already handed out again (a stale pointer) from
// a free of the new block, and a double free racing the first free from
// another thread may go unnoticed. A handle's free with a size larger than
// the block is refused and reported in checked builds.
//
// Example:
//   auto heap = alloy::Heap::create({.ceiling = 64 << 20});   // Result<Heap>
//   if (!heap) return;
//   alloy::Allocator a = heap->allocator();
//   auto ids = a.alloc<int>(1000);                  // null past the 64 MiB cap
//   void* buf = heap->alloc(4 << 20);               // a huge block, this heap's
//   if (void* big = alloy::Heap::realloc(buf, 32 << 20)) buf = big;  // else buf kept
//   heap->visit([](void* p, std::size_t n) { /* every live block */ });
//   heap->set_profile_rate(512 << 10);              // then: heap->write_profile("h.pb.gz")
//   heap->destroy();                                // every block freed at once
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/alloc_iface/ceiling.h"

namespace alloy {
namespace engine::detail {
struct HeapCore;
}

struct HeapOptions {
  // Committed bytes the heap may hold (slices handed to pages, plus 8 KiB of
  // header per 4 MiB segment, plus huge mappings; see "Ceilings" above: 12
  // KiB is the smallest that serves a block). kNoCeiling: none.
  std::size_t ceiling = kNoCeiling;
  // Return empty pages to the OS at once instead of after the purge delay.
  bool eager_purge = false;
  // Mean bytes between sampled allocations for this heap's profile (see
  // set_profile_rate); 0: not profiled.
  std::int64_t profile_rate = 0;
};

struct HeapClassStats {
  std::size_t block_size = 0;
  std::size_t live_blocks = 0;
  std::size_t pages = 0;
};

struct HeapStats {
  static constexpr unsigned kClasses = 89;  // size classes; [0] unused
  std::size_t live_bytes = 0;   // usable bytes of live blocks
  std::size_t live_blocks = 0;
  std::size_t committed_bytes = 0;
  std::size_t peak_committed_bytes = 0;
  std::size_t ceiling_bytes = 0;
  std::size_t large_blocks = 0;  // 64 KiB .. 2 MiB, whole slices
  std::size_t large_bytes = 0;
  std::size_t huge_blocks = 0;   // own mapping
  std::size_t huge_bytes = 0;
  std::size_t segments = 0;
  HeapClassStats classes[kClasses];
};

class Heap {
 public:
  // A new empty heap; out of memory when the OS refuses its first 16 KiB.
  static Result<Heap> create(const HeapOptions& options = {}) noexcept;

  // The process default heap (per-thread fast path, never destroyed).
  static Allocator default_allocator() noexcept;
  // Returns the default heap's free memory to the OS: this thread's pages,
  // exited threads' pages, and the caches of huge blocks and segments.
  static void collect_default() noexcept;

  Heap(Heap&& o) noexcept : core_(o.core_) { o.core_ = nullptr; }
  Heap& operator=(Heap&& o) noexcept;
  Heap(const Heap&) = delete;
  Heap& operator=(const Heap&) = delete;
  ~Heap() { destroy(); }

  // Frees every block and all memory of the heap. Idempotent.
  void destroy() noexcept;
  explicit operator bool() const { return core_ != nullptr; }

  Allocator allocator() const noexcept;

  // Raw access: `size` (> 0) bytes aligned to `alignment` (a power of two),
  // or null. Free with Heap::free or alloy::engine::free, from any thread.
  // Heap::free, resize and realloc take a block of any heap (the default one
  // too) and act on the heap that owns it; null is a no-op for free, and a
  // refused pointer (see "Wrong frees") is left alone.
  void* alloc(std::size_t size, std::size_t alignment = 16) noexcept;
  static void free(void* p) noexcept;
  // True if p's block now holds >= size bytes without moving (a large block
  // takes the free slices after it, a huge one grows with mremap).
  static bool resize(void* p, std::size_t size) noexcept;
  // p's block resized or moved to `size` (> 0) bytes aligned to `alignment`
  // (p's own), within the heap that owns p; null (p intact) when that heap
  // cannot (its ceiling, out of memory), when size is 0 or p is null or
  // refused. A huge block shrunk to 2 MiB or less moves to a small or large
  // block, giving its mapping back.
  static void* realloc(void* p, std::size_t size, std::size_t alignment = 16) noexcept;

  // Caps committed memory. Lowering it below the current commitment makes
  // new pages fail until blocks are freed (collect() gives memory back).
  void set_ceiling(std::size_t bytes) noexcept;
  std::size_t ceiling() const noexcept;
  std::size_t committed() const noexcept;

  HeapStats stats() noexcept;
  void collect() noexcept;

  // Heap profiles of this heap alone (README "Heap profiles"). While a rate
  // is set, this heap's allocations (alloc, the handle's, Heap::realloc's
  // moves; an AccountScope's malloc into an account's heap) are sampled
  // Poisson by bytes with that mean (512 KiB is tcmalloc's default; 0 stops
  // sampling, keeping what was recorded), each sample's stack recorded
  // without malloc. write_profile writes a gzip'd pprof profile.proto
  // (`go tool pprof -top FILE`) of this heap's samples only: alloc_* of
  // every sample since sampling began, inuse_* of those still live (frees
  // from any thread, any path, are seen); live_only keeps only stacks with
  // live blocks (a leak profile). destroy() discards it. Cost: unprofiled,
  // one load and branch per alloc; profiled, a subtraction per alloc and a
  // stack walk per sample, and a sampled block's free a lookup in the
  // heap's sample table (no other free pays it). false: no memory for the
  // profile's state (set) or the file could not be written (write).
  bool set_profile_rate(std::int64_t mean_bytes) noexcept;
  std::int64_t profile_rate() const noexcept;
  bool write_profile(const char* path, bool live_only = false) noexcept;

  // Walks the heap's pages, free lists, queues and span bins under its lock
  // and returns the first broken invariant ("free list holds a pointer that
  // is not a carved block of its page", ...), or null when all hold. O(live
  // and free blocks): for tests, fuzzers and debugging a suspected memory
  // corruption, not for production paths.
  const char* find_broken_invariant() noexcept;

  // Calls fn(ctx, block, usable_size) for every live block. The heap's lock
  // is held one page at a time, so other threads' allocations wait at most one
  // page; blocks allocated or freed concurrently may or may not be reported.
  // fn may free blocks (of any heap) but must not allocate from this heap.
  using VisitFn = void (*)(void* ctx, void* block, std::size_t size);
  void visit(VisitFn fn, void* ctx) noexcept;
  template <class F>
  void visit(F&& f) noexcept {
    using Fn = std::remove_reference_t<F>;
    visit([](void* ctx, void* block, std::size_t size) { (*static_cast<Fn*>(ctx))(block, size); },
          const_cast<void*>(static_cast<const void*>(&f)));
  }

 private:
  explicit Heap(engine::detail::HeapCore* core) : core_(core) {}
  engine::detail::HeapCore* core_ = nullptr;
};

}  // namespace alloy
