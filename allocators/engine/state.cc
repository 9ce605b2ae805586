// The engine core's globals (declared, with their locks, in core_state.h),
// the refusal report and the spin lock.
// Malloc-path rule for every file of the core: nothing calls malloc
// (syscalls, atomics, own memory); tools/checks malloc_path_symbols enforces it.
#include "alloy/allocators/engine/core_state.h"
#include "alloy/allocators/engine/engine.h"

static_assert(alloy::engine::kMaxAlignment == alloy::engine::detail::kHugeAlignMax,
              "engine.h exports the alignment cap the huge path serves");

namespace alloy::engine::detail {

constinit Span g_empty_page;
constinit ThreadHeap g_empty_local;
__thread ThreadHeap* t_local __attribute__((tls_model("initial-exec"))) = &g_empty_local;
constinit HeapCore g_default_heap;
std::uint8_t g_owns_map[kOwnsUnits];
// Until ensure_process_init draws the real one; no list exists before it.
std::uintptr_t g_link_key = 0x5a17ed11c0ffee00u;
std::atomic<bool> g_abort_on_error{true};
std::uint8_t g_secure_state = kSecureUnknown;
std::atomic<void (*)()> g_thread_exit_hook{nullptr};

void error_done() noexcept {
  if (g_abort_on_error.load(std::memory_order_relaxed)) abort();
}

void link_corrupted(Span* page, const void* link) noexcept {
  Line line;
  line.add("alloy engine: corrupted free list (a write after free?): the page of ")
      .dec(page->block_size)
      .add("-byte blocks at ")
      .hex(page_start(segment_of(page), page))
      .add(" links to ")
      .hex(reinterpret_cast<std::uintptr_t>(link))
      .add(", outside the page; not followed\n");
  line.write_to(2);
  error_done();
  // Not followed: the list is dropped (its blocks leak).
  page->free = nullptr;
  page->local_free = nullptr;
}

void report(const char* who, const char* op, const void* p, std::size_t size, const char* why,
            std::uintptr_t caller) noexcept {
  Line line;
  line.add("alloy ").add(who).add(": ").add(op).add(" ").hex(reinterpret_cast<std::uintptr_t>(p));
  if (size != 0) line.add(" (").dec(size).add(" bytes)");
  line.add(" refused: ").add(why);
  if (caller != 0) line.add("; called from ").hex(caller);
  line.add("\n");
  line.write_to(2);
}

void SpinLock::lock() noexcept {
  for (int spins = 0;; ++spins) {
    if (word.load(std::memory_order_relaxed) == 0 &&
        word.exchange(1, std::memory_order_acquire) == 0) {
      return;
    }
    spin_backoff(spins);
  }
}

void local_collect_impl(ThreadHeap* l, bool force) noexcept;

std::atomic<int> g_init{0};
SpinLock g_init_lock;
pthread_key_t g_key;
bool g_key_ok = false;

SpinLock g_heaps_lock;
HeapCore* g_heaps = nullptr;

SpinLock g_meta_lock;
char* g_meta_cur = nullptr;
std::size_t g_meta_left = 0;
ThreadHeap* g_all_locals = nullptr;

SpinLock g_segcache_lock;
Segment* g_segcache[kSegmentCacheMax];
std::size_t g_segcache_count = 0;

SpinLock g_huge_cache_lock;
HugeEntry g_huge_cache[kHugeCacheEntries];
std::size_t g_huge_cache_count = 0;
std::size_t g_huge_cache_bytes = 0;

std::atomic<std::size_t> g_os_mapped{0};

}  // namespace alloy::engine::detail
