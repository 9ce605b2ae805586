// The free slow paths (a page that becomes empty or unfull, a free from
// another thread), block_check (is p a live block?) and usable size.
#include <sys/mman.h>

#include <cstring>

#include "alloy/allocators/engine/core_state.h"
#include "alloy/allocators/engine/fast_path.h"

namespace alloy::engine::detail {

void free_local_slow(Span* pg) noexcept {
  Segment* seg = segment_of(pg);
  ThreadHeap* l = seg->local;
  purge_tick(l);  // idle give-back for a thread that only frees (spans.cc)
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

void free_cross(Segment* seg, Span* pg, void* p) noexcept {
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
    ThreadHeap* l = seg->local;
    Span* head = l->pending.load(std::memory_order_relaxed);
    do {
      pg->pending_next = head;
    } while (!l->pending.compare_exchange_weak(head, pg, std::memory_order_release,
                                               std::memory_order_relaxed));
  }
}

const char* block_check(const void* p, Segment** out_seg, Span** out_page) noexcept {
  if (!inline_owns(p)) return "not engine memory";
  Segment* seg = segment_of(p);
  // A unit past a huge mapping's first holds block bytes, not a header.
  if (!is_segment_head(seg)) return "not the start of a block";
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  Span* pg;
  if (seg->is_huge != 0) {
    pg = &seg->pages[0];
    if (addr != reinterpret_cast<std::uintptr_t>(seg) + seg->huge_offset) {
      return "not the start of a block";
    }
    if (pg->kind != kHugeBlock) return "not a live block (a double free?)";
  } else {
    if ((addr & kSegmentMask) < kSliceSize) return "segment metadata";
    pg = span_of(seg, p);
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
  Span* pg = span_of(seg, p);
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

}  // namespace alloy::engine::detail
