// alloy::Heap on the engine's internals (see internal.h for the design).
#include "alloy/allocators/engine/heap.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <new>

#include "alloy/alloc_iface/make_vtable.h"
#include "alloy/allocators/engine/engine.h"
#include "alloy/allocators/engine/fast_path.h"
#include "alloy/allocators/engine/internal.h"

namespace alloy {
namespace {

using engine::detail::HeapCore;
namespace d = engine::detail;

constexpr std::size_t kCoreBytes = (sizeof(HeapCore) + 4095) & ~std::size_t{4095};

// The entries shared by both tables: a block of any heap is resized,
// remapped and freed by the heap that owns it.
struct BlockEntries {
  static bool vt_resize(void*, Bytes memory, Alignment, std::size_t new_len, std::uintptr_t ret) {
    return d::heap_resize(memory.data(), new_len, ret);
  }
  static void* vt_remap(void*, Bytes memory, Alignment, std::size_t new_len,
                        std::uintptr_t ret) {
    return d::heap_remap(memory.data(), new_len, ret);
  }
  static void vt_free(void*, Bytes memory, Alignment, std::uintptr_t ret) {
    d::heap_free_sized(memory.data(), memory.size(), ret);
  }
};

// Size feedback for a block of either table: its size class (or its whole
// slices, or its mapping), which resize, remap and free accept as its length.
inline Bytes usable_block(void* p) {
  if (p == nullptr) return Bytes();
  return Bytes(static_cast<std::byte*>(p), engine::usable_size(p));
}

// Heap::allocator(): ctx is the heap's HeapCore.
struct HeapEntries : BlockEntries {
  static void* vt_alloc(void* ctx, std::size_t len, Alignment alignment, std::uintptr_t) {
    return d::heap_alloc_raw(static_cast<HeapCore*>(ctx), len, alignment.bytes());
  }
  static Bytes vt_alloc_at_least(void* ctx, std::size_t len, Alignment alignment,
                                 std::uintptr_t ret) {
    return usable_block(vt_alloc(ctx, len, alignment, ret));
  }
  // No alloc_zeroed entry: the core has no zeroed alloc for a user heap, so
  // the handle's alloc + memset serves it.
  // This heap's blocks: engine memory whose segment belongs to this heap. A
  // block's start lies in its segment's first 4 MiB unit (a huge block's
  // offset is below 4 MiB), so segment_of names its head.
  static Ownership vt_owns(void* ctx, const void* p) {
    if (!engine::owns(p)) return Ownership::kNo;
    d::Segment* seg = d::segment_of(p);
    if (!d::is_segment_head(seg)) return Ownership::kNo;
    return ownership(seg->local->heap == static_cast<HeapCore*>(ctx));
  }
};

// Heap::default_allocator(): ctx is null, the per-thread fast path.
struct DefaultEntries : BlockEntries {
  static void* vt_alloc(void*, std::size_t len, Alignment alignment, std::uintptr_t) {
    return engine::alloc_aligned(len, alignment.bytes());
  }
  static Bytes vt_alloc_at_least(void* ctx, std::size_t len, Alignment alignment,
                                 std::uintptr_t ret) {
    return usable_block(vt_alloc(ctx, len, alignment, ret));
  }
  // calloc's path: blocks above 64 KiB from memory the OS has not handed out
  // (or that was purged) are not written. It serves malloc's 16-byte
  // alignment; larger ones take alloc_aligned + memset.
  static void* vt_alloc_zeroed(void* ctx, std::size_t len, Alignment alignment,
                               std::uintptr_t ret) {
    if (alignment.bytes() <= 16) return engine::alloc_zeroed(len);
    void* p = vt_alloc(ctx, len, alignment, ret);
    if (p != nullptr) std::memset(p, 0, len);
    return p;
  }
  // The default heap's free takes a block of any heap (it goes back to the
  // heap that owns it), so every engine block is "ours" here.
  static Ownership vt_owns(void*, const void* p) { return ownership(engine::owns(p)); }
};

}  // namespace

Result<Heap> Heap::create(const HeapOptions& options) noexcept {
  d::ensure_process_init();
  void* m = mmap(nullptr, kCoreBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return Err(AllocError::kOutOfMemory);
  auto* core = ::new (m) HeapCore();
  d::heap_init(core);
  core->ceiling.store(options.ceiling, std::memory_order_relaxed);
  core->eager.store(options.eager_purge, std::memory_order_relaxed);
  if (options.profile_rate > 0 && !d::heap_set_profile_rate(core, options.profile_rate)) {
    munmap(core, kCoreBytes);
    return Err(AllocError::kOutOfMemory);
  }
  d::register_heap(core);
  return Heap(core);
}

Heap& Heap::operator=(Heap&& o) noexcept {
  if (this != &o) {
    destroy();
    core_ = o.core_;
    o.core_ = nullptr;
  }
  return *this;
}

void Heap::destroy() noexcept {
  if (core_ == nullptr) return;
  d::unregister_heap(core_);
  d::heap_release_all(core_);
  d::heap_profile_release(core_);
  munmap(core_, kCoreBytes);
  core_ = nullptr;
}

Allocator Heap::allocator() const noexcept { return Allocator{core_, &vtable_for<HeapEntries>}; }
Allocator Heap::default_allocator() noexcept { return Allocator{nullptr, &vtable_for<DefaultEntries>}; }
void Heap::collect_default() noexcept { engine::collect(); }

void* Heap::alloc(std::size_t size, std::size_t alignment) noexcept {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) return nullptr;
  return d::heap_alloc_raw(core_, size, alignment);
}
void Heap::free(void* p) noexcept {
  d::heap_free(p, reinterpret_cast<std::uintptr_t>(__builtin_return_address(0)));
}
bool Heap::resize(void* p, std::size_t size) noexcept {
  return d::heap_resize(p, size, reinterpret_cast<std::uintptr_t>(__builtin_return_address(0)));
}
void* Heap::realloc(void* p, std::size_t size, std::size_t alignment) noexcept {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) return nullptr;
  return d::heap_realloc(p, size, alignment,
                         reinterpret_cast<std::uintptr_t>(__builtin_return_address(0)));
}

void Heap::set_ceiling(std::size_t bytes) noexcept {
  core_->ceiling.store(bytes, std::memory_order_relaxed);
}
std::size_t Heap::ceiling() const noexcept { return core_->ceiling.load(std::memory_order_relaxed); }
const char* Heap::find_broken_invariant() noexcept {
  if (core_ == nullptr) return nullptr;
  d::Violation v;
  return d::validate_heap_core(core_, &v) ? nullptr : v.what;
}

std::size_t Heap::committed() const noexcept {
  return core_->committed.load(std::memory_order_relaxed);
}

void Heap::collect() noexcept { d::heap_collect(core_); }

// A destroyed heap has no profile: false, 0, false.
bool Heap::set_profile_rate(std::int64_t mean_bytes) noexcept {
  return core_ != nullptr && d::heap_set_profile_rate(core_, mean_bytes);
}
std::int64_t Heap::profile_rate() const noexcept {
  return core_ != nullptr ? d::heap_profile_rate(core_) : 0;
}
bool Heap::write_profile(const char* path, bool live_only) noexcept {
  return core_ != nullptr && d::heap_write_profile(core_, path, live_only);
}

HeapStats Heap::stats() noexcept {
  HeapStats s;
  for (unsigned c = 1; c < HeapStats::kClasses; ++c) s.classes[c].block_size = d::class_size(c);
  {
    d::Guard g(core_->lock);
    // The heap's ThreadHeap, then a profiled heap's sampled blocks' one.
    d::ThreadHeap* const locals[2] = {&core_->local, d::heap_sampled_local(core_)};
    for (d::ThreadHeap* l : locals) {
      if (l == nullptr) continue;
      for (d::Segment* seg = l->segments; seg != nullptr; seg = seg->next) {
        ++s.segments;
        for (std::size_t idx = 1; idx < d::kSlices;) {
          d::Span* pg = &seg->pages[idx];
          if (pg->slice_count == 0) break;
          if (pg->kind == d::kSmallPage) {
            d::page_collect(pg);
            const auto n = static_cast<std::size_t>(d::live(pg));
            s.classes[pg->size_class].live_blocks += n;
            s.classes[pg->size_class].pages += 1;
            s.live_blocks += n;
            s.live_bytes += n * pg->block_size;
          } else if (pg->kind == d::kLargeBlock) {
            d::page_collect(pg);
            if (d::live(pg) != 0) {
              ++s.large_blocks;
              s.large_bytes += pg->block_size;
            }
          }
          idx += pg->slice_count;
        }
      }
    }
  }
  s.large_blocks += 0;
  s.live_blocks += s.large_blocks;
  s.live_bytes += s.large_bytes;
  s.huge_bytes = d::heap_huge_bytes(core_, &s.huge_blocks);
  s.live_blocks += s.huge_blocks;
  s.live_bytes += s.huge_bytes;
  s.committed_bytes = core_->committed.load(std::memory_order_relaxed);
  s.peak_committed_bytes = core_->peak.load(std::memory_order_relaxed);
  s.ceiling_bytes = core_->ceiling.load(std::memory_order_relaxed);
  return s;
}

void Heap::visit(VisitFn fn, void* ctx) noexcept {
  // The lock is held for one page at a time (its live blocks are reported
  // under it), so allocation from other threads waits at most one page.
  // `visiting` keeps empty segments mapped, so the cursor (segment, slice)
  // stays valid while the lock is dropped; segments added meanwhile go to the
  // list head and hold only blocks allocated after the walk started.
  core_->visiting.fetch_add(1, std::memory_order_relaxed);
  std::uint64_t bits[d::kSliceSize / 8 / 64 + 1];  // one bit per 8-byte block
  core_->lock.lock();
  d::Segment* seg = core_->local.segments;
  // Then a profiled heap's sampled blocks (their own ThreadHeap, sampling.cc).
  bool sampled_done = false;
  auto next_segment = [&](d::Segment* s) {
    if (s->next != nullptr || sampled_done) return s->next;
    sampled_done = true;
    d::ThreadHeap* const sampled = d::heap_sampled_local(core_);
    return sampled != nullptr ? sampled->segments : nullptr;
  };
  if (seg == nullptr) {
    sampled_done = true;
    if (d::ThreadHeap* const sampled = d::heap_sampled_local(core_)) seg = sampled->segments;
  }
  std::size_t resume = 1;
  while (seg != nullptr) {
    // The first span that starts at or after `resume` (spans may have been
    // split or merged while the lock was down).
    std::size_t idx = 1;
    while (idx < d::kSlices && idx < resume) {
      const std::size_t n = seg->pages[idx].slice_count;
      if (n == 0) break;
      idx += n;
    }
    if (idx >= d::kSlices || seg->pages[idx].slice_count == 0) {
      seg = next_segment(seg);
      resume = 1;
      continue;
    }
    d::Span* pg = &seg->pages[idx];
    const std::uintptr_t start = d::page_start(seg, pg);
    HeapCore* const outer = d::t_visiting;  // a visit of another heap, from its callback
    d::t_visiting = core_;
    if (pg->kind == d::kSmallPage) {
      d::page_collect(pg);
      if (d::live(pg) != 0) {
        const std::size_t words = (pg->capacity + 63) / 64;
        for (std::size_t w = 0; w < words; ++w) bits[w] = 0;
        d::page_mark_free(pg, bits);
        for (std::size_t i = 0; i < pg->capacity; ++i) {
          if (!((bits[i / 64] >> (i % 64)) & 1)) {
            fn(ctx, reinterpret_cast<void*>(start + i * pg->block_size), pg->block_size);
          }
        }
      }
    } else if (pg->kind == d::kLargeBlock) {
      d::page_collect(pg);
      if (d::live(pg) != 0) fn(ctx, reinterpret_cast<void*>(start), pg->block_size);
    }
    d::t_visiting = outer;
    resume = idx + pg->slice_count;
    core_->lock.unlock();  // let waiting allocations through
    core_->lock.lock();
  }
  core_->lock.unlock();
  core_->visiting.fetch_sub(1, std::memory_order_relaxed);
  // Huge blocks: batches snapshotted under the lock, reported outside it.
  for (std::size_t done = 0;;) {
    void* blocks[64];
    std::size_t sizes[64];
    std::size_t n = 0;
    {
      d::Guard g(core_->huge_lock);
      std::size_t i = 0;
      for (d::Segment* seg = core_->huge; seg != nullptr && n < 64; seg = seg->next, ++i) {
        if (i < done) continue;
        blocks[n] = reinterpret_cast<char*>(seg) + seg->huge_offset;
        sizes[n] = d::usable_size_of(blocks[n]);  // less the secure mode's guard page
        ++n;
      }
    }
    for (std::size_t i = 0; i < n; ++i) fn(ctx, blocks[i], sizes[i]);
    done += n;
    if (n < 64) break;
  }
}

}  // namespace alloy
