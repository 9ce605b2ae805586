// alloy::engine inline fast paths: alloc and free of small blocks on the
// default heap, inlined into the caller.
//
// What it is for: the hottest code of the engine, shared by entry.cc (the
// out-of-line engine::alloc / engine::free) and by callers that want to skip
// the call, such as the malloc adapter or the instruction-count benchmark.
// Cost per call: alloc <= 1 KiB is a TLS load, a table load and a list pop
// (try_inline_alloc is that pop alone, null where the slow path is needed);
// free is address arithmetic, one compare of the owning thread and a list
// push. Links are encoded (safe-linking, internal.h encode_link: two xors per
// push or pop) and a list head is checked to lie in its page before it is
// followed (head_ok). Everything else branches to the out-of-line slow path.
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
  page->free = decode_link(b);
  page->used++;
#if defined(ALLOY_HAVE_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(b, page->block_size);
#endif
  return b;
}

// page_take_block for the slow paths: pops page's head after head_ok; null
// when the list is empty, or corrupted (reported by link_corrupted, which
// drops the list).
inline Block* page_pop_checked(Span* page) noexcept {
  Block* b = page->free;
  if (__builtin_expect(head_ok(page, b), 1)) return page_take_block(page, b);
  if (b != nullptr) link_corrupted(page, b);
  return nullptr;
}

// The pop from ThreadHeap `l`'s page for direct slot `slot` (direct_slot): null
// when that page has no free block, or when its head fails head_ok (the slow
// path then reports the corrupted list). direct[0] (size 0) is always the
// empty page.
inline void* direct_pop(ThreadHeap* l, std::size_t slot) noexcept {
  Span* page = l->direct[slot];
  Block* b = page->free;
  if (__builtin_expect(!head_ok(page, b), 0)) return nullptr;
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

// Same contract as owns(): one byte load, no call (the malloc adapter checks
// every free against foreign pointers with it).
inline bool inline_owns(const void* p) noexcept { return detail::owns_byte(p) != 0; }

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
  b->next = encode_link(b, page->local_free);
  page->local_free = b;
#if defined(__x86_64__) && defined(__GNUC__)
  // "decrement, then <= 0?" as one subl and the jle on its flags (GCC emits a
  // load, a decrement, a store and a test otherwise).
  __asm__ goto("subl $1, %0\n\tjle %l[slow]" : : "m"(page->used) : "memory", "cc" : slow);
  return;
slow:
  free_local_slow(page);
#else
  if (__builtin_expect(--page->used <= 0, 0)) {  // empty, or parked as full
    free_local_slow(page);
  }
#endif
}

// True when the calling thread owns seg (its ThreadHeap's thread).
inline bool owned_here(const Segment* seg) noexcept {
  const std::uintptr_t owner = seg->owner_tid.load(std::memory_order_relaxed);
#if defined(__x86_64__) && defined(__GNUC__)
  // thread_id() is %fs:0: compare against it in memory (one instruction).
  __asm__ goto("cmpq %%fs:0, %0\n\tjne %l[other]" : : "r"(owner) : "cc" : other);
  return true;
other:
  return false;
#else
  return owner == thread_id();
#endif
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
// freed here, false (nothing done) when p is null, not the engine's, belongs
// to another thread's page or is the block freed last on its page (an
// immediate double free, for the caller's checked slow path). For callers that keep their slow path
// out of line (the malloc adapter's free and operator delete).
inline bool try_inline_free(void* p) noexcept {
  // Null is not engine memory (unit 0 is never mapped by the engine), so it
  // takes the false branch with the foreign pointers.
  if (!detail::owns_unmasked(p)) return false;
  detail::Segment* seg = detail::segment_of(p);
  if (!detail::owned_here(seg)) return false;
  detail::Span* page = detail::span_of(seg, p);
  // An immediate double free (p is the head of the list it would join): the
  // caller's slow path checks p and reports it.
  if (__builtin_expect(page->local_free == p, 0)) return false;
  detail::local_push(page, p);
  return true;
}

// realloc's commonest case, inline: p (an engine block, checked by the
// caller with inline_owns) is the start of a small block whose size class
// still fits `size` without wasting more than half of it; returns p. Null: ask
// engine::realloc (other kinds, growth, a large shrink).
inline void* try_inline_realloc_in_place(void* p, std::size_t size) noexcept {
  detail::Segment* seg = detail::segment_of(p);
  detail::Span* page = detail::span_of(seg, p);
  if (page->kind == detail::kSmallPage && detail::keeps_in_place(size, page->block_size) &&
      // p must be a block's start and not the block freed last (else the
      // slow path reports it); a multiply, not a division.
      [&] {
        const std::size_t off = reinterpret_cast<std::uintptr_t>(p) - detail::page_start(seg, page);
        return detail::block_index(page->size_class, off) * page->block_size == off;
      }() &&
      p != page->local_free) {
    return p;
  }
  return nullptr;
}

}  // namespace alloy::engine
