// The engine's OS layer: mappings, purge, the ownership bitmap, commit
// accounting against a heap's ceiling, and metadata memory for ThreadHeaps.
#include <sys/mman.h>
#include <time.h>

#include "alloy/allocators/engine/core_state.h"

namespace alloy::engine::detail {

// ---- OS. ----
std::uint64_t now_ms() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000 +
         static_cast<std::uint64_t>(ts.tv_nsec) / 1000000;
}

void* os_map(std::size_t n) noexcept {
  void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  g_os_mapped.fetch_add(n, std::memory_order_relaxed);
  return p;
}

void os_unmap(void* p, std::size_t n) noexcept {
  if (munmap(p, n) == 0) g_os_mapped.fetch_sub(n, std::memory_order_relaxed);
}

// n and align are multiples of kSegmentSize.
void* os_map_aligned(std::size_t n, std::size_t align) noexcept {
  if (n > (std::size_t{1} << 46)) return nullptr;
  auto* raw = static_cast<char*>(os_map(n + align));
  if (raw == nullptr) return nullptr;
  const auto addr = reinterpret_cast<std::uintptr_t>(raw);
  const std::uintptr_t a = (addr + align - 1) & ~(std::uintptr_t{align} - 1);
  const std::size_t head = a - addr;
  if (head != 0) os_unmap(raw, head);
  const std::size_t tail = align - head;
  if (tail != 0) os_unmap(reinterpret_cast<char*>(a) + n, tail);
  return reinterpret_cast<void*>(a);
}

void os_purge(void* p, std::size_t n) noexcept { madvise(p, n, MADV_DONTNEED); }

// Marks [start, start + len) as engine memory (or not), and start's unit as
// a segment head.
void owns_mark(const void* start, std::size_t len, bool on) noexcept {
  const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(start) >> kSegmentShift;
  const std::uintptr_t b = (reinterpret_cast<std::uintptr_t>(start) + len - 1) >> kSegmentShift;
  for (std::uintptr_t u = a; u <= b && u < kOwnsUnits; ++u) {
    const std::uint8_t v = on ? (u == a ? kOwned | kOwnedHead : kOwned) : 0;
    std::atomic_ref<std::uint8_t>(g_owns_map[u]).store(v, std::memory_order_relaxed);
  }
}

// ---- Commit accounting (the ceiling). ----
bool heap_commit(HeapCore* h, std::size_t bytes) noexcept {
  const std::size_t c = h->committed.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  if (c > h->ceiling.load(std::memory_order_relaxed)) {
    h->committed.fetch_sub(bytes, std::memory_order_relaxed);
    return false;
  }
  std::size_t pk = h->peak.load(std::memory_order_relaxed);
  while (c > pk && !h->peak.compare_exchange_weak(pk, c, std::memory_order_relaxed)) {
  }
  return true;
}
void heap_uncommit(HeapCore* h, std::size_t bytes) noexcept {
  h->committed.fetch_sub(bytes, std::memory_order_relaxed);
}

// ---- Metadata memory for ThreadHeaps (never returned; ThreadHeaps are recycled). ----
void* meta_alloc(std::size_t n) noexcept {
  n = (n + 63) & ~std::size_t{63};
  Guard g(g_meta_lock);
  if (g_meta_left < n) {
    const std::size_t chunk = n > (256u << 10) ? (n + kOsPage - 1) & ~(kOsPage - 1) : (256u << 10);
    auto* m = static_cast<char*>(os_map(chunk));
    if (m == nullptr) return nullptr;
    g_meta_cur = m;
    g_meta_left = chunk;
  }
  void* p = g_meta_cur;
  g_meta_cur += n;
  g_meta_left -= n;
  return p;
}

}  // namespace alloy::engine::detail
