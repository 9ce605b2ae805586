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
// Cost per call: alloc takes the heap's lock around the engine's size-class
// path; Heap::free (and the handle's free) frees under the lock when it is
// free at that moment, else with one lock-free CAS; visit/stats/collect walk
// the heap's pages under the lock. The lock is a BiasedLock: while one
// thread is the only one to have taken it, taking it costs no atomic
// exchange, and alloc pops from the heap's size-class table like malloc does
// (a heap used from one thread: 1.8-2.5x the default heap's per-thread fast
// path, against 3.4-6.3x with a plain spin lock and no table pop); the first
// call from a second thread makes it a spin lock for good, with one
// membarrier syscall. One Local per heap (not per thread) is
// what lets visit and stats see a consistent heap from any thread.
// Thread safety: every member may be called from any thread, and a block may
// be freed from any thread (Heap::free or alloy::engine::free). destroy() must
// not race with other calls on the same heap.
//
// Example:
//   auto heap = alloy::Heap::create({.ceiling = 64 << 20});   // Result<Heap>
//   if (!heap) return;
//   alloy::Allocator a = heap->allocator();
//   auto ids = a.alloc<int>(1000);                  // null past the 64 MiB cap
//   heap->visit([](void* p, std::size_t n) { /* every live block */ });
//   heap->destroy();                                // every block freed at once
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "alloy/alloc_iface/allocator.h"

namespace alloy {
namespace engine::detail {
struct HeapCore;
}

struct HeapOptions {
  // Committed bytes the heap may hold (slices handed to pages, plus 64 KiB of
  // metadata per 4 MiB segment, plus huge mappings).
  std::size_t ceiling = SIZE_MAX;
  // Return empty pages to the OS at once instead of after the purge delay.
  bool eager_purge = false;
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
  void* alloc(std::size_t size, std::size_t alignment = 16) noexcept;
  static void free(void* p) noexcept;

  // Caps committed memory. Lowering it below the current commitment makes
  // new pages fail until blocks are freed (collect() gives memory back).
  void set_ceiling(std::size_t bytes) noexcept;
  std::size_t ceiling() const noexcept;
  std::size_t committed() const noexcept;

  HeapStats stats() noexcept;
  void collect() noexcept;

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
