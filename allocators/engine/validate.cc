// The engine's invariants as code: validate_thread_heap walks one
// ThreadHeap's segments, spans, pages, queues and bins and returns the first
// invariant that does not hold. Called by the engine tests and the fuzz
// harnesses after every batch (slow: O(blocks); never on a malloc path).
#include "alloy/allocators/engine/core_state.h"

namespace alloy::engine::detail {
namespace {

// Walks longer than this are a cycle: no list of the engine is this long.
constexpr std::size_t kMaxWalk = std::size_t{1} << 24;

struct Checker {
  const ThreadHeap* l;
  Violation* out;
  bool fail(const char* what, const void* where) {
    if (out != nullptr) *out = {what, where};
    return false;
  }
};

bool span_in_bin(const ThreadHeap* l, const Span* s) {
  std::size_t steps = 0;
  for (const Span* b = l->spans[s->slice_count]; b != nullptr && steps < kMaxWalk; b = b->next, ++steps) {
    if (b == s) return true;
  }
  return false;
}

// A small page: its class, its carving and its two owner lists. Blocks freed
// by other threads are still counted in `used` until the owner collects
// them, so free + local_free + used == capacity exactly.
bool check_small_page(Checker& c, Segment* seg, const Span* pg) {
  if (pg->size_class == 0 || pg->size_class >= kClasses) return c.fail("small page with no size class", pg);
  if (pg->block_size != class_size(pg->size_class)) return c.fail("block_size is not its class's size", pg);
  if (pg->capacity > reserved(pg)) return c.fail("page carved past its span", pg);
  const std::uintptr_t start = page_start(seg, const_cast<Span*>(pg));
  const std::uintptr_t end = start + std::uintptr_t{pg->capacity} * pg->block_size;
  std::size_t listed = 0;
  for (const Block* list : {pg->free, pg->local_free}) {
    for (const Block* b = list; b != nullptr; b = decode_link(b)) {  // links are encoded (internal.h)
      const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(b);
      if (a < start || a >= end || (a - start) % pg->block_size != 0) {
        return c.fail("free list holds a pointer that is not a carved block of its page", b);
      }
      if (++listed > pg->capacity) return c.fail("free list longer than the page's capacity (a cycle)", pg);
    }
  }
  if (listed + static_cast<std::size_t>(live(pg)) != pg->capacity) {
    return c.fail("free + local_free + used != capacity", pg);
  }
  return true;
}

bool check_segment(Checker& c, Segment* seg, std::uint32_t* used_slices) {
  if ((reinterpret_cast<std::uintptr_t>(seg) & kSegmentMask) != 0) return c.fail("segment not 4 MiB-aligned", seg);
  if (seg->local != c.l) return c.fail("segment on a ThreadHeap's list names another ThreadHeap", seg);
  if (seg->is_huge != 0) return c.fail("huge mapping on a ThreadHeap's segment list", seg);
  if (seg->pages[0].kind != kMetaSlice) return c.fail("slice 0 is not the metadata slice", seg);
  if ((seg->committed_mask & 1) == 0) return c.fail("metadata slice not committed", seg);
  std::uint32_t used = 0;
  for (std::size_t idx = 1; idx < kSlices;) {
    const Span* s = &seg->pages[idx];
    const std::size_t n = s->slice_count;
    if (n == 0 || idx + n > kSlices) return c.fail("span's slice count runs off its segment", s);
    if (s->slice_offset != 0) return c.fail("span's first descriptor has a back offset", s);
    if (s->kind == kFreeSpan) {
      if (!span_in_bin(c.l, s)) return c.fail("free span missing from its bin", s);
      if (n > 1) {
        const Span* last = &seg->pages[idx + n - 1];
        if (last->kind != kFreeSpan || last->slice_offset != (n - 1) * sizeof(Span)) {
          return c.fail("free span's last descriptor does not lead back to its first", last);
        }
      }
    } else if (s->kind == kSmallPage || s->kind == kLargeBlock) {
      for (std::size_t j = 1; j < n; ++j) {
        const Span* f = &seg->pages[idx + j];
        if (f->kind != s->kind || f->slice_offset != j * sizeof(Span)) {
          return c.fail("used span's descriptor does not lead back to its first", f);
        }
      }
      used += static_cast<std::uint32_t>(n);
      if (s->kind == kSmallPage && !check_small_page(c, seg, s)) return false;
    } else if (s->kind == kCachedSpan) {
      if (n > ThreadHeap::kSpanCacheMaxCount || c.l->span_cache[n] != s) return c.fail("cached span missing from its ThreadHeap's cache", s);
      for (std::size_t j = 1; j < n; ++j) {
        const Span* f = &seg->pages[idx + j];
        if (f->kind != kLargeBlock || f->slice_offset != j * sizeof(Span)) {
          return c.fail("cached span's descriptor does not lead back to its first", f);
        }
      }
      used += static_cast<std::uint32_t>(n);
    } else if (!(s->kind == kMetaSlice && idx == kSlices - 1 && n == 1 &&
                 g_secure_state == kSecureOn)) {  // the secure mode's guard slice
      return c.fail("descriptor of unknown kind", s);
    }
    idx += n;
  }
  if (used != seg->used_slices) return c.fail("used_slices differs from the used spans' slices", seg);
  *used_slices += used;
  return true;
}

bool check_queue(Checker& c, const PageQueue& q, unsigned size_class) {
  const Span* prev = nullptr;
  std::size_t steps = 0;
  for (const Span* pg = q.first; pg != nullptr; prev = pg, pg = pg->next) {
    if (++steps > kMaxWalk) return c.fail("page queue is a cycle", &q);
    if (pg->prev != prev) return c.fail("page queue's back link is wrong", pg);
    if (segment_of(pg)->local != c.l) return c.fail("page queue holds another ThreadHeap's page", pg);
    if (size_class != 0 && (pg->kind != kSmallPage || pg->size_class != size_class)) {
      return c.fail("page queue holds a page of another class", pg);
    }
    if (size_class == 0 && pg->kind != kSmallPage && pg->kind != kLargeBlock) {
      return c.fail("full list holds a span that is not a page or large block", pg);
    }
  }
  if (q.last != prev) return c.fail("page queue's last is not its tail", &q);
  return true;
}

}  // namespace

bool validate_thread_heap(const ThreadHeap* l, Violation* out) noexcept {
  Checker c{l, out};
  if (l == &g_empty_local) return true;
  std::uint32_t segments = 0, used = 0;
  for (Segment* seg = l->segments; seg != nullptr; seg = seg->next) {
    if (++segments > kMaxWalk) return c.fail("segment list is a cycle", l);
    if (!check_segment(c, seg, &used)) return false;
  }
  if (segments != l->segment_count) return c.fail("segment_count differs from the segment list", l);
  if (used != l->used_slices) return c.fail("used_slices differs from its segments' sum", l);
  for (unsigned k = 1; k < kClasses; ++k) {
    if (!check_queue(c, l->queues[k], k)) return false;
  }
  if (!check_queue(c, l->full, 0)) return false;
  for (std::size_t n = 1; n <= kSlices; ++n) {
    std::size_t steps = 0;
    const Span* prev = nullptr;
    for (const Span* s = l->spans[n]; s != nullptr; prev = s, s = s->next) {
      if (++steps > kMaxWalk) return c.fail("free-span bin is a cycle", l);
      if (s->prev != prev) return c.fail("free-span bin's back link is wrong", s);
      if (s->kind != kFreeSpan || s->slice_count != n) return c.fail("free-span bin holds a span of another size or kind", s);
      if (segment_of(s)->local != l) return c.fail("free-span bin holds another ThreadHeap's span", s);
    }
  }
  // The fast path pops from direct[slot] without a check: it must be the
  // empty page or a page of exactly that slot's class that this heap owns.
  for (std::size_t slot = 1; slot < kDirectSlots; ++slot) {
    const Span* pg = l->direct[slot];
    if (pg == &g_empty_page) continue;
    if (pg->kind != kSmallPage || pg->size_class != class_of(slot * 8) || segment_of(pg)->local != l) {
      return c.fail("direct slot points at a page the fast path must not pop from", pg);
    }
  }
  if (g_empty_page.free != nullptr || g_empty_page.local_free != nullptr) {
    return c.fail("the shared empty page has blocks", &g_empty_page);
  }
  return true;
}

bool validate_current_thread(Violation* out) noexcept { return validate_thread_heap(t_local, out); }

bool validate_heap_core(HeapCore* h, Violation* out) noexcept {
  if (h->is_default) return validate_current_thread(out);
  const BiasedLock::Mode mode = h->lock.acquire();
  bool ok = validate_thread_heap(&h->local, out);
  if (ThreadHeap* s = heap_sampled_local(h); ok && s != nullptr) ok = validate_thread_heap(s, out);
  h->lock.release(mode);
  return ok;
}

}  // namespace alloy::engine::detail
