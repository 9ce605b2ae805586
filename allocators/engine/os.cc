// The engine's OS layer: mappings, purge, the ownership bitmap, commit
// accounting against a heap's ceiling, and metadata memory for ThreadHeaps.
#include <sys/mman.h>
#include <time.h>

#include "alloy/allocators/engine/core_state.h"

namespace alloy::engine::detail {

// ---- OS. ----
std::atomic<std::uint64_t> g_os_purge_calls{0};
std::atomic<std::uint64_t> g_os_purge_bytes{0};
std::atomic<std::uint64_t> g_os_map_calls{0};
std::atomic<std::uint64_t> g_os_unmap_calls{0};

namespace {
// Where the next aligned mapping is tried (os_map_aligned): just below the
// last one, which the kernel's top-down placement usually leaves free.
std::atomic<std::uintptr_t> g_map_hint{0};

void* os_map_at(void* hint, std::size_t n) noexcept {
  g_os_map_calls.fetch_add(1, std::memory_order_relaxed);
  void* p = mmap(hint, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  g_os_mapped.fetch_add(n, std::memory_order_relaxed);
  return p;
}
}  // namespace

std::uint64_t now_ms() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000 +
         static_cast<std::uint64_t>(ts.tv_nsec) / 1000000;
}

void* os_map(std::size_t n) noexcept { return os_map_at(nullptr, n); }

void os_unmap(void* p, std::size_t n) noexcept {
  g_os_unmap_calls.fetch_add(1, std::memory_order_relaxed);
  if (munmap(p, n) == 0) g_os_mapped.fetch_sub(n, std::memory_order_relaxed);
}

// n and align are multiples of kSegmentSize. One mmap when the kernel takes
// the hint (an aligned range just below the previous aligned mapping, free
// under top-down placement), else an over-sized mapping trimmed to the
// alignment (one mmap and up to two munmaps; what it took three calls per
// segment before).
void* os_map_aligned(std::size_t n, std::size_t align) noexcept {
  if (n > (std::size_t{1} << 46)) return nullptr;
  const std::uintptr_t hint = g_map_hint.load(std::memory_order_relaxed);
  if (hint > n + align) {
    const std::uintptr_t want = (hint - n) & ~(std::uintptr_t{align} - 1);
    void* p = os_map_at(reinterpret_cast<void*>(want), n);
    if (p != nullptr && reinterpret_cast<std::uintptr_t>(p) == want) {
      g_map_hint.store(want, std::memory_order_relaxed);
      return p;
    }
    if (p != nullptr) os_unmap(p, n);
  }
  auto* raw = static_cast<char*>(os_map(n + align));
  if (raw == nullptr) return nullptr;
  const auto addr = reinterpret_cast<std::uintptr_t>(raw);
  const std::uintptr_t a = (addr + align - 1) & ~(std::uintptr_t{align} - 1);
  const std::size_t head = a - addr;
  if (head != 0) os_unmap(raw, head);
  const std::size_t tail = align - head;
  if (tail != 0) os_unmap(reinterpret_cast<char*>(a) + n, tail);
  g_map_hint.store(a, std::memory_order_relaxed);
  return reinterpret_cast<void*>(a);
}

namespace {
// Segments are carved from reservations that double from one segment to
// kReserveMax, so a program of many segments maps a few regions, not one
// per segment (g++ on a big TU: ~50 segments). Untouched reservation
// costs address space only (MAP_NORESERVE). Guarded by g_segcache_lock
// (held across fork by fork_prepare).
constexpr std::size_t kReserveMax = std::size_t{64} << 20;
char* g_reserve_cur = nullptr;      // g_segcache_lock
std::size_t g_reserve_left = 0;     // g_segcache_lock
std::size_t g_reserve_next = kSegmentSize;  // g_segcache_lock
}  // namespace

void* os_map_segment() noexcept {
  std::size_t n;
  {
    Guard g(g_segcache_lock);
    if (g_reserve_left >= kSegmentSize) {
      void* p = g_reserve_cur;
      g_reserve_cur += kSegmentSize;
      g_reserve_left -= kSegmentSize;
      return p;
    }
    n = g_reserve_next;
    if (g_reserve_next < kReserveMax) g_reserve_next *= 2;
  }
  auto* m = static_cast<char*>(os_map_aligned(n, kSegmentSize));
  if (m == nullptr && n > kSegmentSize) {
    n = kSegmentSize;
    m = static_cast<char*>(os_map_aligned(n, kSegmentSize));
  }
  if (m == nullptr || n == kSegmentSize) return m;
  bool kept = false;
  {
    Guard g(g_segcache_lock);
    if (g_reserve_left == 0) {
      g_reserve_cur = m + kSegmentSize;
      g_reserve_left = n - kSegmentSize;
      kept = true;
    }
  }
  if (!kept) os_unmap(m + kSegmentSize, n - kSegmentSize);  // another thread refilled it
  return m;
}

void os_purge(void* p, std::size_t n) noexcept {
  g_os_purge_calls.fetch_add(1, std::memory_order_relaxed);
  g_os_purge_bytes.fetch_add(n, std::memory_order_relaxed);
  madvise(p, n, MADV_DONTNEED);
}

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
