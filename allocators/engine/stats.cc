// write_stats: the engine's figures as one line of text, without malloc.
#include <sys/mman.h>

#include "alloy/allocators/engine/core_state.h"
#include "alloy/allocators/engine/engine.h"

namespace alloy::engine {

using namespace detail;

void write_stats(int fd) noexcept {
  std::size_t live_small = 0, pages = 0, large = 0;
  ThreadHeap* l = own_local();
  for (Segment* seg = l == &g_empty_local ? nullptr : l->segments; seg != nullptr; seg = seg->next) {
    for (std::size_t idx = 1; idx < kSlices;) {
      Span* pg = &seg->pages[idx];
      if (pg->slice_count == 0) break;
      if (pg->kind == kSmallPage) {
        ++pages;
        live_small += static_cast<std::size_t>(live(pg)) * pg->block_size;
      } else if (pg->kind == kLargeBlock) {
        large += static_cast<std::size_t>(live(pg)) * pg->block_size;
      }
      idx += pg->slice_count;
    }
  }
  std::size_t huge_count = 0;
  const std::size_t huge = heap_huge_bytes(&g_default_heap, &huge_count);
  std::size_t cache_bytes = 0, cache_count = 0;
  {
    Guard g(g_huge_cache_lock);
    cache_bytes = g_huge_cache_bytes;
    cache_count = g_huge_cache_count;
  }
  Line line;
  line.add("alloy engine stats\n  default heap committed: ")
      .dec(g_default_heap.committed.load(std::memory_order_relaxed))
      .add(" bytes (peak ")
      .dec(g_default_heap.peak.load(std::memory_order_relaxed))
      .add(")\n  huge blocks: ")
      .dec(huge_count)
      .add(" (")
      .dec(huge)
      .add(" bytes)\n  this thread: ")
      .dec(l == &g_empty_local ? 0u : l->segment_count)
      .add(" segments, ")
      .dec(pages)
      .add(" small pages, ")
      .dec(live_small)
      .add(" bytes in small blocks, ")
      .dec(large)
      .add(" in large\n  process: ")
      .dec(g_os_mapped.load(std::memory_order_relaxed))
      .add(" bytes mapped, huge cache ")
      .dec(cache_bytes)
      .add(" bytes in ")
      .dec(cache_count)
      .add(" entries\n  os calls: ")
      .dec(g_os_map_calls.load(std::memory_order_relaxed))
      .add(" mmap, ")
      .dec(g_os_unmap_calls.load(std::memory_order_relaxed))
      .add(" munmap, ")
      .dec(g_os_purge_calls.load(std::memory_order_relaxed))
      .add(" madvise (")
      .dec(g_os_purge_bytes.load(std::memory_order_relaxed))
      .add(" bytes purged); this thread's dirty slices: ")
      .dec(l == &g_empty_local ? 0u : l->dirty)
      .add("\n");
  line.write_to(fd);
}

}  // namespace alloy::engine
