// Threads: process init, a thread's ThreadHeap at start and exit, the idle pool
// of ThreadHeaps, collect, and the fork handlers.
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include "alloy/allocators/engine/core_state.h"
#include "alloy/allocators/engine/engine.h"

namespace alloy::engine::detail {

// ---- Threads. ----
void thread_exit_hook(void* arg) noexcept {
  auto* l = static_cast<ThreadHeap*>(arg);
  if (l == nullptr || l == &g_empty_local) return;
  // Empty pages go back to free spans, but their slices are not purged now:
  // they stay dirty on their segments' schedules, so the thread that adopts
  // this heap (a program that re-creates threads) reuses them without a
  // syscall or a page fault; if none does in time, the purge tick of any
  // thread purges them (purge_global, spans.cc).
  local_collect_pages(l, true);
  if (l->purge_at != 0) local_purge(l, now_ms(), false);
  for (Segment* seg = l->segments; seg != nullptr; seg = seg->next) {
    seg->owner_tid.store(0, std::memory_order_release);
  }
  l->tid = 0;
  if (t_local == l) t_local = &g_empty_local;
  const std::uint64_t due = l->purge_at;
  {
    Guard g(g_default_heap.lock);
    l->pool_next = g_default_heap.idle;
    g_default_heap.idle = l;
  }
  if (due != 0) schedule_global_purge(due);
}

ThreadHeap* thread_init() noexcept {
  ensure_process_init();
  HeapCore* h = &g_default_heap;
  ThreadHeap* l = nullptr;
  {
    Guard g(h->lock);
    l = h->idle;
    if (l != nullptr) {
      h->idle = l->pool_next;
    } else {
      void* m = meta_alloc(sizeof(ThreadHeap));
      if (m == nullptr) return nullptr;
      l = ::new (m) ThreadHeap();
      l->heap = h;
      l->all_next = g_all_locals;
      g_all_locals = l;
    }
  }
  l->pool_next = nullptr;
  l->tid = thread_id();
  for (Segment* seg = l->segments; seg != nullptr; seg = seg->next) {
    seg->owner_tid.store(l->tid, std::memory_order_release);
  }
  t_local = l;
  if (g_key_ok) pthread_setspecific(g_key, l);
  return l;
}

extern "C" void alloy_engine_fork_prepare() { alloy::engine::fork_prepare(); }
extern "C" void alloy_engine_fork_parent() { alloy::engine::fork_parent(); }
extern "C" void alloy_engine_fork_child() { alloy::engine::fork_child(); }


void local_collect_impl(ThreadHeap* l, bool force) noexcept {
  local_collect_pages(l, force);
  if (force) {
    local_purge(l, 0, true);
  } else {
    maybe_purge(l);
  }
}

void local_collect_pages(ThreadHeap* l, bool force) noexcept {
  drain_pending(l);
  for (unsigned c = 1; c < kClasses; ++c) {
    Span* pg = l->queues[c].first;
    while (pg != nullptr) {
      Span* next = pg->next;
      page_collect(pg);
      if (live(pg) == 0) page_retire(l, pg, force);
      pg = next;
    }
  }
  Span* pg = l->full.first;
  while (pg != nullptr) {
    Span* next = pg->next;
    page_collect(pg);
    if (pg->free != nullptr || live(pg) == 0) unfull(l, pg);
    if (live(pg) == 0) page_retire(l, pg, force);
    pg = next;
  }
}

void local_collect(ThreadHeap* l, bool force) noexcept { local_collect_impl(l, force); }

void local_collect_idle_one() noexcept {
  HeapCore* h = &g_default_heap;
  if (!h->lock.try_lock()) return;
  ThreadHeap* victim = h->idle;
  if (victim != nullptr) {
    // Rotate it to the back so the next call collects another one.
    if (victim->pool_next != nullptr) {
      h->idle = victim->pool_next;
      ThreadHeap* last = h->idle;
      while (last->pool_next != nullptr) last = last->pool_next;
      last->pool_next = victim;
      victim->pool_next = nullptr;
    }
    local_collect_impl(victim, true);
  }
  h->lock.unlock();
}

void page_collect(Span* pg) noexcept {
  std::uintptr_t w = pg->thread_free.load(std::memory_order_relaxed);
  if ((w & ~kTfFlags) != 0) {
    while (!pg->thread_free.compare_exchange_weak(w, w & kTfFlags, std::memory_order_acquire,
                                                  std::memory_order_relaxed)) {
    }
    Block* tf = reinterpret_cast<Block*>(w & ~kTfFlags);
    {
      std::uint32_t count = 1;
      Block* tail = tf;
      while (tail->next != nullptr) {
        tail = tail->next;
        ++count;
      }
      if (pg->kind == kSmallPage) {
        tail->next = pg->local_free;
        pg->local_free = tf;
      }
      pg->used -= static_cast<std::int32_t>(count);
    }
  }
  if (pg->free == nullptr) {
    pg->free = pg->local_free;
    pg->local_free = nullptr;
  }
}

void page_mark_free(Span* pg, std::uint64_t* bits) noexcept {
  const std::uintptr_t start = page_start(segment_of(pg), pg);
  Block* lists[2] = {pg->free, pg->local_free};
  for (Block* b : lists) {
    for (; b != nullptr; b = b->next) {
      const std::size_t i = (reinterpret_cast<std::uintptr_t>(b) - start) / pg->block_size;
      bits[i / 64] |= std::uint64_t{1} << (i % 64);
    }
  }
}

void ensure_process_init() noexcept {
  if (g_init.load(std::memory_order_acquire) == 2) return;
  Guard g(g_init_lock);
  if (g_init.load(std::memory_order_relaxed) == 2) return;
  g_default_heap.is_default = true;
  // Taken only at thread start and exit, by every thread: no owner to favour,
  // and no membarrier syscalls in every program that uses the malloc adapter.
  g_default_heap.lock.make_plain();
  // One mapping for both bitmaps and the first ThreadHeaps' metadata: every
  // process pays one mmap at start, not three.
  constexpr std::size_t kFirstMeta = 256u << 10;
  void* m = mmap(nullptr, 2 * kOwnsBitsBytes + kFirstMeta, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m != MAP_FAILED) {
    char* base = static_cast<char*>(m);
    g_os_map_calls.fetch_add(1, std::memory_order_relaxed);
    {
      Guard mg(g_meta_lock);
      if (g_meta_left < kFirstMeta) {
        g_meta_cur = base + 2 * kOwnsBitsBytes;
        g_meta_left = kFirstMeta;
      }
    }
    g_head_bits.store(reinterpret_cast<std::uint64_t*>(base + kOwnsBitsBytes), std::memory_order_release);
    g_owns_bits.store(reinterpret_cast<std::uint64_t*>(base), std::memory_order_release);
  }
  // glibc keeps the values of keys below PTHREAD_KEY_2NDLEVEL_SIZE (32) in
  // the thread descriptor; higher keys calloc a second level on first
  // setspecific, which is still safe here because t_local is set first.
  g_key_ok = pthread_key_create(&g_key, thread_exit_hook) == 0;
  pthread_atfork(alloy_engine_fork_prepare, alloy_engine_fork_parent, alloy_engine_fork_child);
  g_init.store(2, std::memory_order_release);
}

}  // namespace alloy::engine::detail

namespace alloy::engine {

using namespace detail;

void fork_prepare() noexcept {
  if (g_init.load(std::memory_order_acquire) != 2) return;
  g_heaps_lock.lock();
  for (HeapCore* h = g_heaps; h != nullptr; h = h->next_heap) {
    h->lock.lock();
    h->huge_lock.lock();
  }
  g_default_heap.lock.lock();
  g_default_heap.huge_lock.lock();
  g_huge_cache_lock.lock();
  g_segcache_lock.lock();
  g_meta_lock.lock();
}

namespace {
// Releases what fork_prepare took. In the child (only this thread exists)
// the biased heap locks are reset rather than unlocked: a thread that did
// not survive may have been queued inside one when fork() copied it
// (fork_test caught a child hanging in thread_init that way).
void release_fork_locks(bool in_child) noexcept {
  auto release = [in_child](BiasedLock& lock) {
    if (in_child) {
      lock.reset_after_fork();
    } else {
      lock.unlock();
    }
  };
  g_meta_lock.unlock();
  g_segcache_lock.unlock();
  g_huge_cache_lock.unlock();
  g_default_heap.huge_lock.unlock();
  release(g_default_heap.lock);
  for (HeapCore* h = g_heaps; h != nullptr; h = h->next_heap) {
    h->huge_lock.unlock();
    release(h->lock);
  }
  g_heaps_lock.unlock();
}
}  // namespace

void fork_parent() noexcept {
  if (g_init.load(std::memory_order_acquire) != 2) return;
  release_fork_locks(false);
}

void fork_child() noexcept {
  if (g_init.load(std::memory_order_acquire) != 2) return;
  release_fork_locks(true);
  // ThreadHeaps of threads that do not exist in the child are orphaned, not
  // reused: their owners took no lock, so fork() may have copied one in the
  // middle of an update (a half-linked span bin, a popped block not yet
  // counted). A new thread that adopted such a ThreadHeap looped forever in
  // span_find (fork_test, about 1 run in 20). Their blocks stay valid in the
  // child and can still be freed (owner_tid 0 sends every free through the
  // atomic cross-thread push); only their free memory is not reused, as in
  // mimalloc. Idle ThreadHeaps (exited threads) are consistent: the idle pool is
  // changed only under g_default_heap.lock, which fork_prepare held.
  ThreadHeap* mine = t_local;
  for (ThreadHeap* l = g_all_locals; l != nullptr; l = l->all_next) {
    if (l == mine || l->tid == 0) continue;
    for (Segment* seg = l->segments; seg != nullptr; seg = seg->next) {
      seg->owner_tid.store(0, std::memory_order_relaxed);
    }
    l->tid = 0;
  }
  if (mine != &g_empty_local) {
    mine->tid = thread_id();
    for (Segment* seg = mine->segments; seg != nullptr; seg = seg->next) {
      seg->owner_tid.store(mine->tid, std::memory_order_relaxed);
    }
  }
}

}  // namespace alloy::engine
