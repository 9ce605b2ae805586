// Threads: process init, a thread's ThreadHeap at start and exit, the idle pool
// of ThreadHeaps, collect, and the fork handlers.
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/single_threaded.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

extern char** environ;

#include "alloy/allocators/engine/core_state.h"
#include "alloy/allocators/engine/engine.h"
#include "alloy/profile/sampler.h"

namespace alloy::engine::detail {

// ---- Threads. ----
void thread_exit_hook(void* arg) noexcept {
  auto* l = static_cast<ThreadHeap*>(arg);
  if (l == nullptr || l == &g_empty_local) return;
  if (auto hook = g_thread_exit_hook.load(std::memory_order_acquire)) hook();
  // Empty pages go back to free spans, but their slices are not purged now:
  // they stay dirty on their segments' schedules, so the thread that adopts
  // this heap (a program that re-creates threads) reuses them without a
  // syscall or a page fault; if none does in time, the purge tick of any
  // thread purges them (purge_global, spans.cc).
  l->exiting = true;
  local_collect_pages(l, true);
  if (l->purge_at != 0) local_purge(l, now_ms(), false);
  l->exiting = false;
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
  l->tid = owner_id();
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
  span_cache_flush(l);
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
      // Every link must lie in this page (link_ok) and the walk is bounded by
      // the blocks the page has handed out: a stray link (a write after
      // free) or a cycle is reported (link_corrupted) and not followed; the
      // rest of the list is dropped (its blocks leak).
      const std::uint32_t limit = static_cast<std::uint32_t>(live(pg));
      std::uint32_t count = 1;
      Block* tail = tf;
      const std::uintptr_t start = page_start(segment_of(pg), pg);
      for (Block* next; (next = decode_link(tail)) != nullptr; tail = next) {
        if (!link_ok(pg, next, start) || count >= limit) {  // not followed
          link_corrupted(pg, next);
          break;
        }
        ++count;
      }
      if (pg->kind == kSmallPage) {
        tail->next = encode_link(tail, pg->local_free);
        pg->local_free = tf;
      }
      pg->used -= static_cast<std::int32_t>(count);
      if (pg->kind == kSmallPage && segment_of(pg)->local->carve) {
        // A lease in carve mode: the freeing threads credited these; carved again.
        carve_note(static_cast<std::ptrdiff_t>(count * pg->block_size), static_cast<std::ptrdiff_t>(count));
      }
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
    if (!head_ok(pg, b)) continue;
    for (; b != nullptr; b = decode_link(b)) {
      if (!link_ok(pg, b, start)) break;
      const std::size_t i = (reinterpret_cast<std::uintptr_t>(b) - start) / pg->block_size;
      bits[i / 64] |= std::uint64_t{1} << (i % 64);
    }
  }
}

namespace {
// True if `env` (NAME=value) sets name to something other than "" or "0".
[[maybe_unused]] bool env_on(const char* env, const char* name) noexcept {
  const std::size_t n = std::strlen(name);
  return std::strncmp(env, name, n) == 0 && env[n] == '=' && env[n + 1] != '\0' &&
         !(env[n + 1] == '0' && env[n + 2] == '\0');
}

// ALLOY_SECURE from the environment, read before anything allocates: from
// `environ` once libc has set it up, else (the first allocations under
// LD_PRELOAD can come earlier) from /proc/self/environ with raw reads.
bool secure_requested() noexcept {
#if defined(ALLOY_SECURE_BUILD)
  return true;
#else
  if (environ != nullptr) {
    for (char** e = environ; *e != nullptr; ++e) {
      if (env_on(*e, "ALLOY_SECURE")) return true;
    }
    return false;
  }
  const int fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[4096];
  std::size_t have = 0;
  bool on = false;
  for (;;) {
    const ssize_t got = read(fd, buf + have, sizeof buf - 1 - have);
    if (got <= 0) break;
    have += static_cast<std::size_t>(got);
    buf[have] = '\0';
    // Whole entries end in '\0'; keep a partial one for the next read.
    std::size_t i = 0;
    for (std::size_t j = 0; j < have; ++j) {
      if (buf[j] == '\0') {
        if (env_on(buf + i, "ALLOY_SECURE")) on = true;
        i = j + 1;
      }
    }
    if (i == 0 && have == sizeof buf - 1) i = have;  // an entry longer than the buffer: skip it
    std::memmove(buf, buf + i, have - i);
    have -= i;
  }
  close(fd);
  return on;
#endif
}
}  // namespace

void ensure_process_init() noexcept {
  if (g_init.load(std::memory_order_acquire) == 2) return;
  Guard g(g_init_lock);
  if (g_init.load(std::memory_order_relaxed) == 2) return;
  g_default_heap.is_default = true;
  // Taken only at thread start and exit, by every thread: no owner to favour,
  // and no membarrier syscalls in every program that uses the malloc adapter.
  g_default_heap.lock.make_plain();
  g_secure_state = secure_requested() ? kSecureOn : kSecureOff;
  // The free-list secret (internal.h, encode_link): before any page exists.
  std::uintptr_t key = 0;
  if (getrandom(&key, sizeof key, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof key)) {
    // No getrandom (old kernel, seccomp): the addresses ASLR chose and the clock.
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    key = (reinterpret_cast<std::uintptr_t>(&key) ^ static_cast<std::uintptr_t>(ts.tv_nsec)) *
              0x9e3779b97f4a7c15u ^
          reinterpret_cast<std::uintptr_t>(&g_init);
  }
  g_link_key = key;
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

namespace {
// Whether fork_prepare took the locks (fork_parent / fork_child release
// them only then). Written and read by the forking thread only.
bool g_fork_locked = false;
}  // namespace

void fork_prepare() noexcept {
  g_fork_locked = false;
  if (g_init.load(std::memory_order_acquire) != 2) return;
  // A single-threaded process takes no lock around fork, as glibc's own
  // malloc does (posix/fork.c): with no other thread nobody can hold one
  // mid-update except this thread itself, interrupted by a signal handler
  // that forks, and taking the (non-reentrant) locks again would deadlock.
  // The child of such a fork must not allocate before it execs or exits
  // (POSIX async-signal-safety), as with glibc.
  if (__libc_single_threaded) return;
  g_fork_locked = true;
  // First: the sampler takes no engine lock while it holds its own.
  profile::Sampler::instance().fork_prepare();
  g_heaps_lock.lock();
  for (HeapCore* h = g_heaps; h != nullptr; h = h->next_heap) {
    h->fork_skipped = h->leased.load(std::memory_order_acquire);  // an AccountScope holds it
    if (!h->fork_skipped) h->lock.lock();
    if (h->profile != nullptr) heap_profile_fork(h, 0);  // a profiled heap's sampler
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
    if (h->profile != nullptr) heap_profile_fork(h, in_child ? 2 : 1);
    if (!h->fork_skipped) release(h->lock);
  }
  g_heaps_lock.unlock();
}
}  // namespace

void fork_parent() noexcept {
  if (!g_fork_locked) return;
  g_fork_locked = false;
  release_fork_locks(false);
  profile::Sampler::instance().fork_parent();
}

void fork_child() noexcept {
  if (g_init.load(std::memory_order_acquire) != 2) return;
  if (g_fork_locked) {
    release_fork_locks(true);
    profile::Sampler::instance().fork_child();
  }
  g_fork_locked = false;
  // ThreadHeaps of threads that do not exist in the child are orphaned, not
  // reused: their owners took no lock, so fork() may have copied one in the
  // middle of an update (a half-linked span bin, a popped block not yet
  // counted). A new thread that adopted such a ThreadHeap looped forever in
  // span_find (fork_test, about 1 run in 20). Their blocks stay valid in the
  // child and can still be freed (owner_tid 0 sends every free through the
  // atomic cross-thread push); only their free memory is not reused, as in
  // mimalloc. Idle ThreadHeaps (exited threads) are consistent: the idle pool is
  // changed only under g_default_heap.lock, which fork_prepare held.
  ThreadHeap* mine = own_local();
  for (ThreadHeap* l = g_all_locals; l != nullptr; l = l->all_next) {
    if (l == mine || l->tid == 0) continue;
    for (Segment* seg = l->segments; seg != nullptr; seg = seg->next) {
      seg->owner_tid.store(0, std::memory_order_relaxed);
    }
    l->tid = 0;
  }
  if (mine != &g_empty_local) {
    mine->tid = owner_id();
    for (Segment* seg = mine->segments; seg != nullptr; seg = seg->next) {
      seg->owner_tid.store(mine->tid, std::memory_order_relaxed);
    }
  }
  // Leases of AccountScopes in carve mode (scope.cc): this thread's goes on;
  // those of threads that did not survive are orphaned the same way (their
  // lease stays taken; what their batches held is lost to the figures).
  for (HeapCore* h = g_heaps; h != nullptr; h = h->next_heap) {
    ThreadHeap* l = &h->local;
    if (!l->carve) continue;
    const std::uintptr_t tid = l == t_scope_lane ? owner_id() : 0;
    if (tid == 0) l->carve = false;
    l->tid = tid;
    for (Segment* seg = l->segments; seg != nullptr; seg = seg->next) {
      seg->owner_tid.store(tid, std::memory_order_relaxed);
    }
  }
}

}  // namespace alloy::engine
