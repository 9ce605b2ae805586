// alloy::Heap on the engine's internals (see internal.h for the design).
#include "alloy/allocators/engine/heap.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <new>

#include "alloy/allocators/engine/engine.h"
#include "alloy/allocators/engine/fast_path.h"
#include "alloy/allocators/engine/internal.h"

namespace alloy {
namespace {

using engine::detail::HeapCore;
namespace d = engine::detail;

// The heap whose visit() is calling its callback on this thread, with the
// heap's lock held: a free from the callback must neither take that lock
// again nor release it (BiasedLock is not reentrant).
__thread HeapCore* t_visiting __attribute__((tls_model("initial-exec"))) = nullptr;

constexpr std::size_t kCoreBytes = (sizeof(HeapCore) + 4095) & ~std::size_t{4095};

void* heap_alloc_raw(HeapCore* h, std::size_t size, std::size_t align) noexcept {
  const BiasedLock::Mode mode = h->lock.acquire();
  // The default heap's inline pop first, on this heap's one Local, at the
  // class local_alloc would pick.
  void* p = nullptr;
  if (size <= d::kDirectMax && align <= 16) p = d::direct_pop(&h->local, d::direct_slot(size, align));
  if (p == nullptr) p = d::local_alloc(&h->local, size, align);
  h->lock.release(mode);
  return p;
}

void refuse(const char* op, const void* p, std::size_t size, const char* why,
            std::uintptr_t ret) noexcept {
  if constexpr (d::kChecked) d::report("Heap", op, p, size, why, ret);
}

// True if block b is on one of pg's free lists; the walk is bounded by the
// page's capacity. The caller owns pg's Local.
bool on_free_list(d::Page* pg, const void* b) noexcept {
  std::size_t budget = std::size_t{pg->capacity} + 1;
  for (d::Block* l : {pg->free, pg->local_free}) {
    for (; l != nullptr && budget != 0; l = l->next, --budget) {
      if (l == b) return true;
    }
  }
  return false;
}

// Checked builds: whether small block p may be on a free list (d::kFreedMark);
// false only for a block that certainly is not.
[[maybe_unused]] bool may_be_free(d::Page* pg, const void* p) noexcept {
  if (pg->block_size <= sizeof(void*)) return true;
  const auto* word = static_cast<const std::uintptr_t*>(p) + 1;
#if defined(ALLOY_HAVE_ASAN)
  if (__asan_address_is_poisoned(word)) return true;  // freed: local_push / free_cross poison it
#endif
  return *word == d::kFreedMark;
}

constexpr const char* kDoubleFree = "already free (a double free)";

// Why small or large block p of pg may not be freed, or null; the caller
// owns pg's Local (its thread, or the user heap's lock). Every build: the
// block was carved, is not the head of a free list, and a large block is
// not already on its way back; checked builds walk the free lists.
const char* owner_check(d::Page* pg, const void* p) noexcept {
  if (pg->kind == d::kSmallPage) {
    const auto off = reinterpret_cast<std::uintptr_t>(p) -
                     d::page_start(d::segment_of(pg), pg);
    if (off / pg->block_size >= pg->capacity) return "never handed out";
    if (p == pg->free || p == pg->local_free ||
        (pg->thread_free.load(std::memory_order_acquire) & ~d::kTfFlags) ==
            reinterpret_cast<std::uintptr_t>(p)) {
      return kDoubleFree;
    }
    if constexpr (d::kChecked) {
      d::page_collect(pg);  // blocks freed from other threads, onto local_free
      if (may_be_free(pg, p) && on_free_list(pg, p)) return kDoubleFree;
    }
    return nullptr;
  }
  if (d::live(pg) == 0 || (pg->thread_free.load(std::memory_order_acquire) & ~d::kTfFlags) != 0) {
    return kDoubleFree;
  }
  return nullptr;
}

// Lock-free side: p's page belongs to another thread (or the user heap's
// lock is busy). Only the atomic thread_free list can be looked at.
const char* cross_check(d::Page* pg, const void* p) noexcept {
  const std::uintptr_t tf = pg->thread_free.load(std::memory_order_acquire) & ~d::kTfFlags;
  if (pg->kind == d::kLargeBlock ? tf != 0 : tf == reinterpret_cast<std::uintptr_t>(p)) {
    return kDoubleFree;
  }
  return nullptr;
}

// Every free of a Heap or handle: p is checked (block_check, then the
// owner or cross checks) and freed into the heap that owns it, or refused.
// A small or large block of a user heap whose lock is free right now takes
// the owner's path under the lock (no CAS, no later collection); checked
// builds always wait for the lock, so every free walks the free lists.
void heap_free(void* p, std::uintptr_t ret) noexcept {
  if (p == nullptr) return;
  d::Segment* seg;
  d::Page* pg;
  if (const char* why = d::block_check(p, &seg, &pg)) {
    refuse("free of", p, 0, why, ret);
    return;
  }
  if (pg->kind == d::kHugeBlock) {
    if (!d::huge_free(seg)) refuse("free of", p, 0, kDoubleFree, ret);
    return;
  }
  HeapCore* h = seg->local->heap;
  const char* why = nullptr;
  if (h->is_default) {
    if (seg->owner_tid.load(std::memory_order_relaxed) == d::thread_id()) {
      why = owner_check(pg, p);
      if (why == nullptr) d::local_push(pg, p);
    } else {
      why = cross_check(pg, p);
      if (why == nullptr) d::free_cross(seg, pg, p);
    }
  } else if (h == t_visiting) {  // visit's callback: the lock is ours already
    why = owner_check(pg, p);
    if (why == nullptr) d::local_push(pg, p);
  } else if (d::kChecked || h->lock.try_lock()) {
    if constexpr (d::kChecked) h->lock.lock();
    why = owner_check(pg, p);
    if (why == nullptr) d::local_push(pg, p);  // the owner's free, as on the default heap
    h->lock.unlock();
  } else {
    why = cross_check(pg, p);
    if (why == nullptr) d::free_cross(seg, pg, p);
  }
  if (why != nullptr) refuse("free of", p, 0, why, ret);
}

void* owner_alloc(HeapCore* h, std::size_t size, std::size_t align) noexcept {
  return h->is_default ? engine::alloc_aligned(size, align) : heap_alloc_raw(h, size, align);
}

// large_grow_owned from whoever may: the owning thread of a default-heap
// segment, or anyone holding the user heap's lock.
bool grow_large(HeapCore* h, d::Segment* seg, d::Page* pg, std::size_t size) noexcept {
  if (h->is_default) {
    const std::uintptr_t owner = seg->owner_tid.load(std::memory_order_relaxed);
    return owner != 0 && owner == d::thread_id() && d::large_grow_owned(seg, pg, size);
  }
  if (h == t_visiting) return d::large_grow_owned(seg, pg, size);
  d::Guard g(h->lock);
  return d::large_grow_owned(seg, pg, size);
}

bool heap_resize(void* p, std::size_t size, std::uintptr_t ret) noexcept {
  d::Segment* seg;
  d::Page* pg;
  if (const char* why = d::block_check(p, &seg, &pg)) {
    refuse("resize of", p, size, why, ret);
    return false;
  }
  if (size <= d::usable_size_of(p)) return true;
  if (pg->kind == d::kLargeBlock) {
    return size <= d::kLargeMax && grow_large(seg->local->heap, seg, pg, size);
  }
  return pg->kind == d::kHugeBlock && d::huge_grow(p, size, false) != nullptr;
}

// Only huge blocks move cheaply (mremap keeps their alignment offset); the
// mapping grows against its own heap's ceiling.
void* heap_remap(void* p, std::size_t size, std::uintptr_t ret) noexcept {
  d::Segment* seg;
  d::Page* pg;
  if (const char* why = d::block_check(p, &seg, &pg)) {
    refuse("remap of", p, size, why, ret);
    return nullptr;
  }
  if (pg->kind != d::kHugeBlock) return nullptr;
  if (size <= d::usable_size_of(p)) return p;
  return d::huge_grow(p, size, true);
}

void* vt_alloc(void* ctx, std::size_t len, Alignment alignment, std::uintptr_t) {
  return heap_alloc_raw(static_cast<HeapCore*>(ctx), len, alignment.bytes());
}
bool vt_resize(void*, Bytes memory, Alignment, std::size_t new_len, std::uintptr_t ret) {
  return heap_resize(memory.data(), new_len, ret);
}
void* vt_remap(void*, Bytes memory, Alignment, std::size_t new_len, std::uintptr_t ret) {
  return heap_remap(memory.data(), new_len, ret);
}
void vt_free(void*, Bytes memory, Alignment, std::uintptr_t ret) {
  if constexpr (d::kChecked) {
    d::Segment* seg;
    d::Page* pg;
    if (d::block_check(memory.data(), &seg, &pg) == nullptr &&
        memory.size() > d::usable_size_of(memory.data())) {
      refuse("free of", memory.data(), memory.size(), "larger than the block", ret);
      return;
    }
  }
  heap_free(memory.data(), ret);
}
constexpr VTable kHeapVTable = {vt_alloc, vt_resize, vt_remap, vt_free};

void* def_alloc(void*, std::size_t len, Alignment alignment, std::uintptr_t) {
  return engine::alloc_aligned(len, alignment.bytes());
}
constexpr VTable kDefaultVTable = {def_alloc, vt_resize, vt_remap, vt_free};

}  // namespace

Result<Heap> Heap::create(const HeapOptions& options) noexcept {
  d::ensure_process_init();
  void* m = mmap(nullptr, kCoreBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return Err(AllocError::kOutOfMemory);
  auto* core = ::new (m) HeapCore();
  d::heap_init(core);
  core->ceiling.store(options.ceiling, std::memory_order_relaxed);
  core->eager.store(options.eager_purge, std::memory_order_relaxed);
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
  munmap(core_, kCoreBytes);
  core_ = nullptr;
}

Allocator Heap::allocator() const noexcept { return Allocator{core_, &kHeapVTable}; }
Allocator Heap::default_allocator() noexcept { return Allocator{nullptr, &kDefaultVTable}; }
void Heap::collect_default() noexcept { d::heap_collect(&d::g_default_heap); }

void* Heap::alloc(std::size_t size, std::size_t alignment) noexcept {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) return nullptr;
  return heap_alloc_raw(core_, size, alignment);
}
void Heap::free(void* p) noexcept {
  heap_free(p, reinterpret_cast<std::uintptr_t>(__builtin_return_address(0)));
}
bool Heap::resize(void* p, std::size_t size) noexcept {
  return heap_resize(p, size, reinterpret_cast<std::uintptr_t>(__builtin_return_address(0)));
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
std::size_t Heap::committed() const noexcept {
  return core_->committed.load(std::memory_order_relaxed);
}

void Heap::collect() noexcept { d::heap_collect(core_); }

HeapStats Heap::stats() noexcept {
  HeapStats s;
  for (unsigned c = 1; c < HeapStats::kClasses; ++c) s.classes[c].block_size = d::class_size(c);
  {
    d::Guard g(core_->lock);
    for (d::Segment* seg = core_->local.segments; seg != nullptr; seg = seg->next) {
      ++s.segments;
      for (std::size_t idx = 1; idx < d::kSlices;) {
        d::Page* pg = &seg->pages[idx];
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
      seg = seg->next;
      resume = 1;
      continue;
    }
    d::Page* pg = &seg->pages[idx];
    const std::uintptr_t start = d::page_start(seg, pg);
    HeapCore* const outer = t_visiting;  // a visit of another heap, from its callback
    t_visiting = core_;
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
    t_visiting = outer;
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
        sizes[n++] = seg->mapped - seg->huge_offset;
      }
    }
    for (std::size_t i = 0; i < n; ++i) fn(ctx, blocks[i], sizes[i]);
    done += n;
    if (n < 64) break;
  }
}

}  // namespace alloy

namespace alloy::engine::detail {

void* heap_realloc(void* p, std::size_t size, std::size_t align, std::uintptr_t ret) noexcept {
  if (p == nullptr || size == 0) return nullptr;
  Segment* seg;
  Page* pg;
  if (const char* why = block_check(p, &seg, &pg)) {
    refuse("realloc of", p, size, why, ret);
    return nullptr;
  }
  HeapCore* h = seg->local->heap;
  const std::size_t usable = usable_size_of(p);
  if (pg->kind == kHugeBlock) {
    if (size > usable) return huge_grow(p, size, true);  // null: over the ceiling, p intact
    if (size > kLargeMax) return p;
    // Down to a small or large block of the same heap: the mapping goes back.
  } else if (keeps_in_place(size, usable)) {
    return p;
  } else if (pg->kind == kLargeBlock && size > usable && size <= kLargeMax &&
             grow_large(h, seg, pg, size)) {
    return p;
  }
  void* q = owner_alloc(h, size, align);
  if (q == nullptr) return size <= usable ? p : nullptr;  // a shrink that cannot move stays
  std::memcpy(q, p, size < usable ? size : usable);
  heap_free(p, ret);
  return q;
}

}  // namespace alloy::engine::detail
