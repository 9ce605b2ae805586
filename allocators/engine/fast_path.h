// alloy::engine inline fast paths: alloc and free of small blocks on the
// default heap, inlined into the caller.
//
// What it is for: the hottest code of the engine, shared by entry.cc (the
// out-of-line engine::alloc / engine::free) and by callers that want to skip
// the call, such as the malloc adapter or the instruction-count benchmark.
// Cost per call: alloc <= 1 KiB is a TLS load, a table load and a list pop
// (try_inline_alloc is that pop alone, null where the slow path is needed);
// free is address arithmetic, one compare of the owning thread and a list
// push. Everything else branches to the out-of-line slow path.
// Thread safety: any thread; the fast path only touches the caller's own
// pages, other threads' pages go through the lock-free cross-thread free.
//
// Example:
//   #include "alloy/allocators/engine/fast_path.h"
//   void* p = alloy::engine::inline_alloc(32);   // same contract as alloc()
//   ...
//   if (alloy::engine::inline_owns(p))           // same contract as owns()
//     alloy::engine::inline_free(p);             // same contract as free()
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "alloy/allocators/engine/internal.h"
#include "alloy/base/config.h"

#if defined(ALLOY_HAVE_ASAN)
#include <sanitizer/asan_interface.h>
#endif

namespace alloy::engine {

namespace detail {
// The one block pop every allocation path goes through (the inline fast
// path, the slow paths of alloc.cc and pages.cc): takes block `b`, the head
// of page->free, and counts it used. Precondition: b == page->free, b != null.
// The page's free-list encoding, if any, is decoded here and nowhere else.
inline Block* page_take_block(Span* page, Block* b) noexcept {
  page->free = b->next;
  page->used++;
#if defined(ALLOY_HAVE_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(b, page->block_size);
#endif
  return b;
}

// The pop from ThreadHeap `l`'s page for direct slot `slot` (direct_slot): null
// when that page has no free block. direct[0] (size 0) is always the empty
// page.
inline void* direct_pop(ThreadHeap* l, std::size_t slot) noexcept {
  Span* page = l->direct[slot];
  Block* b = page->free;
  if (__builtin_expect(b == nullptr, 0)) return nullptr;
  return page_take_block(page, b);
}
}  // namespace detail

// The list pop alone: null when the request needs the slow path (size 0 or
// above 1 KiB, or the size class's current page has no free block). For
// callers that keep their slow path out of line, so the inlined fast path
// saves no registers (the malloc adapter's malloc and operator new).
inline void* try_inline_alloc(std::size_t size) noexcept {
  if (__builtin_expect(size <= detail::kDirectMax, 1)) {
    return detail::direct_pop(detail::t_local, detail::direct_slot(size, 16));
  }
  return nullptr;
}

inline void* inline_alloc(std::size_t size) noexcept {
  if (void* p = try_inline_alloc(size)) [[likely]] return p;
  return detail::alloc_generic(detail::t_local, size, 16);
}

// Same contract as owns(): one bit test, no call (the malloc adapter checks
// every free against foreign pointers with it).
inline bool inline_owns(const void* p) noexcept {
  std::uint64_t* bits = detail::g_owns_bits.load(std::memory_order_acquire);
  const std::uintptr_t u = reinterpret_cast<std::uintptr_t>(p) >> detail::kSegmentShift;
  if (bits == nullptr || u >= detail::kOwnsBitsBytes * 8) return false;
  return (std::atomic_ref<std::uint64_t>(bits[u / 64]).load(std::memory_order_relaxed) >> (u % 64)) & 1;
}

namespace detail {
// The owner's free: push onto the page's local list; the page's slow path
// runs when it empties or was parked as full.
inline void local_push(Span* page, void* p) noexcept {
  auto* b = static_cast<Block*>(p);
  mark_freed(p, page->block_size);  // checked builds only
#if defined(ALLOY_HAVE_ASAN)
  if (page->kind == kSmallPage && page->block_size > sizeof(void*))
    ASAN_POISON_MEMORY_REGION(reinterpret_cast<char*>(p) + sizeof(void*),
                              page->block_size - sizeof(void*));
#endif
  b->next = page->local_free;
  page->local_free = b;
  if (__builtin_expect(--page->used <= 0, 0)) {  // empty, or parked as full
    free_local_slow(page);
  }
}
}  // namespace detail

inline void inline_free(void* p) noexcept {
  if (p == nullptr) return;
  detail::Segment* seg = detail::segment_of(p);
  detail::Span* page = detail::span_of(seg, p);
  if (__builtin_expect(
          seg->owner_tid.load(std::memory_order_relaxed) == detail::thread_id(), 1)) {
    detail::local_push(page, p);
    return;
  }
  detail::free_cross(seg, page, p);
}

// inline_owns and inline_free's same-thread push in one: true when p was
// null or freed here, false (nothing done) when p is not the engine's or
// belongs to another thread's page. For callers that keep their slow path
// out of line (the malloc adapter's free and operator delete).
inline bool try_inline_free(void* p) noexcept {
  if (p == nullptr) return true;
  if (!inline_owns(p)) return false;
  detail::Segment* seg = detail::segment_of(p);
  if (seg->owner_tid.load(std::memory_order_relaxed) != detail::thread_id()) return false;
  detail::local_push(detail::span_of(seg, p), p);
  return true;
}

// realloc's commonest case, inline: p (an engine block, checked by the
// caller with inline_owns) is a small block whose size class still fits
// `size` without wasting more than half of it; returns p. Null: ask
// engine::realloc (other kinds, growth, a large shrink).
inline void* try_inline_realloc_in_place(void* p, std::size_t size) noexcept {
  detail::Segment* seg = detail::segment_of(p);
  detail::Span* page = detail::span_of(seg, p);
  if (page->kind == detail::kSmallPage && detail::keeps_in_place(size, page->block_size)) return p;
  return nullptr;
}

}  // namespace alloy::engine
