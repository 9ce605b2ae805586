// The free slow paths (a page that becomes empty or unfull, a free from
// another thread), block_check (is p a live block?) and usable size.
#include <sys/mman.h>

#include <cstring>

#include "alloy/allocators/engine/core_state.h"
#include "alloy/allocators/engine/fast_path.h"

namespace alloy::engine::detail {

namespace {
// The owner's push (local_push) of the block at local_free's head was a
// misuse: report it, then undo the push.
[[gnu::cold]] void refuse_local_push(Span* pg, const char* why, std::uintptr_t caller) noexcept {
  Block* b = pg->local_free;
  report("engine", "free of", b, 0, why, caller);
  pg->local_free = decode_link(b);
  pg->used++;
  error_done();
}
}  // namespace

void free_local_slow(Span* pg) noexcept {
  Segment* seg = segment_of(pg);
  ThreadHeap* l = seg->local;
  // The owner's fast path pushed p (local_free's head) without looking at
  // the span: the misuses it lets through end here, because they make
  // `used` drop to 0 or below (a span that is not a page or large block has
  // used 0; a page freed more often than allocated underflows).
  if (__builtin_expect(pg->kind != kSmallPage && pg->kind != kLargeBlock, 0)) {
    refuse_local_push(pg, pg->kind == kMetaSlice ? "segment metadata" : "not a live block (a double free?)",
                      reinterpret_cast<std::uintptr_t>(__builtin_return_address(0)));
    return;
  }
  if (pg->kind == kLargeBlock
          ? reinterpret_cast<std::uintptr_t>(pg->local_free) != page_start(seg, pg)
          : [&] {
              const std::size_t off = reinterpret_cast<std::uintptr_t>(pg->local_free) - page_start(seg, pg);
              return block_index(pg->size_class, off) * pg->block_size != off;
            }()) {
    refuse_local_push(pg, "not the start of a block",
                      reinterpret_cast<std::uintptr_t>(__builtin_return_address(0)));
    return;
  }
  if (pg->kind == kSmallPage && is_full(pg) &&
      !(pg->thread_free.load(std::memory_order_relaxed) & kTfFull)) {
    refuse_local_push(pg, "already free (a double free)",
                      reinterpret_cast<std::uintptr_t>(__builtin_return_address(0)));
    return;
  }
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
  // A sampled block (sampling.cc): its ThreadHeap owns no thread, so its
  // frees all come here (or to heap_free).
  if (kProfileHooks && seg->local->sampler != nullptr) [[unlikely]] prof_free(seg->local, p);
  // A block of an account's heap (owner_tid 0: every engine::free of it comes
  // here) is credited to its account, whoever frees it (scope.cc).
  if (seg->local->heap->account != nullptr) [[unlikely]] {
    if (account_free(seg, pg, p)) return;
  }
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
    b->next = encode_link(b, reinterpret_cast<Block*>(w & ~kTfFlags));
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
  if ((reinterpret_cast<std::uintptr_t>(p) >> 47) != 0 || !inline_owns(p)) return "not engine memory";
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
      const std::size_t off = addr - start;
      if (block_index(pg->size_class, off) * pg->block_size != off ||
          off + pg->block_size > (std::size_t{pg->slice_count} << kSliceShift)) {
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

}  // namespace alloy::engine::detail

namespace alloy::engine {

using namespace detail;

const char* check_block(const void* p, bool walk) noexcept {
  Segment* seg;
  Span* pg;
  if (const char* why = block_check(p, &seg, &pg)) return why;
  constexpr const char* kDouble = "already free (a double free)";
  const std::uintptr_t tf = pg->thread_free.load(std::memory_order_acquire) & ~kTfFlags;
  if (pg->kind == kHugeBlock) return nullptr;  // block_check looked at its kind
  if (pg->kind == kLargeBlock) {
    if (live(pg) == 0 || tf != 0) return kDouble;
    return nullptr;
  }
  const std::uintptr_t start = page_start(seg, pg);
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  if (block_index(pg->size_class, addr - start) >= pg->capacity) return "never handed out";
  if (tf == addr || p == pg->free || p == pg->local_free) return kDouble;
  if (!walk || !owned_here(seg)) return nullptr;
  // The owner's lists: plain fields of this thread's page.
  std::size_t budget = std::size_t{pg->capacity} + 1;
  for (Block* b : {pg->free, pg->local_free}) {
    if (b != nullptr && !head_ok(pg, b)) continue;
    for (; b != nullptr && budget != 0 && link_ok(pg, b, start); b = decode_link(b), --budget) {
      if (b == p) return kDouble;
    }
  }
  return nullptr;
}

}  // namespace alloy::engine

namespace alloy::engine::detail {

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
      return reinterpret_cast<std::uintptr_t>(seg) + seg->mapped - huge_guard() - addr;
    default:
      return 0;
  }
}

}  // namespace alloy::engine::detail
