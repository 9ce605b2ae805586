// Recovery and the robust lock (see recovery.h, "Crash consistency").
#include "alloy/allocators/shared_heap/internal/recovery.h"

#include <signal.h>
#include <time.h>

#include <cstring>

#include "alloy/allocators/shared_heap/internal/lists.h"
#include "alloy/allocators/shared_heap/internal/support.h"
#include "alloy/base/config.h"

namespace alloy::shared_heap_internal {

// Is `target` the start of a block in the chain?
bool is_chain_block(Header* h, u64 target) {
  for (u64 off = h->heap_begin; off < h->heap_end;) {
    if (off == target) return true;
    if (off > target) return false;
    u64 s = size_of(block(h, off));
    if (!sane_size(h, off, s)) return false;
    off += s;
  }
  return false;
}

// Rebuilds everything derived from the chain. False if the chain is malformed.
bool rebuild(Header* h) {
  std::memset(bitmap(h), 0, h->bitmap_bytes);
  std::memset(h->bins, 0, sizeof h->bins);
  std::memset(h->bin_mask, 0, sizeof h->bin_mask);
  u64 in_use = 0, payload = 0, live = 0;
  u64 prev_off = 0;
  bool prev_free = false;
  u64 off = h->heap_begin;
  while (off < h->heap_end) {
    BlockHeader* b = block(h, off);
    u64 s = size_of(b);
    if (!sane_size(h, off, s)) return false;
    if (!is_live(b) && prev_free) {
      BlockHeader* p = block(h, prev_off);
      commit(&p->size_flags, size_of(p) + s);  // merge: a half-done coalesce
      off += s;
      continue;
    }
    b->prev_size = prev_off == 0 ? 0 : off - prev_off;
    if (is_live(b)) {
      if (b->length > s - kBlockHeader) return false;
      in_use += s;
      payload += b->length;
      ++live;
    }
    prev_free = !is_live(b);
    prev_off = off;
    off += s;
  }
  if (off != h->heap_end) return false;
  BlockHeader* sentinel = block(h, h->heap_end);
  if (sentinel->size_flags != kLiveBit) return false;
  sentinel->prev_size = prev_off == 0 ? 0 : off - prev_off;
  for (off = h->heap_begin; off < h->heap_end; off += size_of(block(h, off))) {
    if (is_live(block(h, off))) bit_set(h, off);
    else bin_push(h, off);
  }
  h->c.bytes_in_use = in_use;
  h->c.payload_bytes = payload;
  h->c.live_blocks = live;
  if (in_use > h->c.peak_bytes_in_use) h->c.peak_bytes_in_use = in_use;
  return true;
}

bool process_alive(pid_t pid) {
  return pid > 0 && (::kill(pid, 0) == 0 || errno != ESRCH);
}

void prune_dead_slots(Header* h) {
  for (auto& s : h->slots) {
    if (s.pid != 0 && !process_alive(s.pid)) s.pid = 0;
  }
}

u32 live_slots(Header* h) {
  u32 n = 0;
  for (auto& s : h->slots) n += s.pid != 0;
  return n;
}

void recover(Header* h) {
  ++h->c.recoveries;
  Intent in = h->intent;
  if (in.op != kOpNone && is_chain_block(h, in.block)) {
    BlockHeader* b = block(h, in.block);
    if (is_live(b)) {
      // Alloc: the caller died before it got the pointer; give it back.
      // Free: the caller asked for it to be freed; finish the job.
      commit(&b->size_flags, size_of(b));
      if (in.op == kOpAlloc) ++h->c.rolled_back_allocs;
      else ++h->c.rolled_forward_frees;
    }
  }
  h->intent.op = kOpNone;
  if (!rebuild(h)) __atomic_store_n(&h->state, kStateCorrupt, __ATOMIC_RELEASE);
  prune_dead_slots(h);
}

bool repair(Header* h) {
  ++h->c.list_repairs;
  if (rebuild(h)) return true;
  __atomic_store_n(&h->state, kStateCorrupt, __ATOMIC_RELEASE);
  return false;
}

// Locks a robust mutex without ever sleeping unboundedly. A futex unlock
// wakes one waiter; if that waiter is SIGKILLed before it takes the lock, the
// wake-up dies with it and the other waiters would sleep forever with the
// lock free (the kernel repairs a dead *owner*, not a dead woken waiter). So
// contended waits time out every few milliseconds and look again.
// (timedlock, not clocklock: sanitizers intercept the former only. A jump of
// the real-time clock merely shortens or lengthens one wait.)
int robust_lock_wait(pthread_mutex_t* m) {
  int rc = EBUSY;
#if defined(ALLOY_HAVE_TSAN)
  // TSan's timedlock interceptor does not count EOWNERDEAD as acquired (its
  // trylock one does), so under TSan poll with trylock and a short backoff.
  for (long ns = 20000;; ns = ns < 1000000 ? ns * 2 : ns) {
    timespec pause{0, ns};
    ::nanosleep(&pause, nullptr);
    rc = pthread_mutex_trylock(m);
    if (rc != EBUSY) return rc;
  }
#endif
  for (;;) {
    timespec deadline;
    ::clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_nsec += 5 * 1000 * 1000;
    if (deadline.tv_nsec >= 1000 * 1000 * 1000) {
      deadline.tv_nsec -= 1000 * 1000 * 1000;
      ++deadline.tv_sec;
    }
    rc = pthread_mutex_timedlock(m, &deadline);
    if (rc != ETIMEDOUT) return rc;
  }
}

void recover_after_owner_died(Header* h) {
  recover(h);
  pthread_mutex_consistent(&h->mutex);
}

SharedHeapError lock_failed_error(int rc) {
  return make_error(SharedHeapErrc::kLockFailed, rc, "cannot lock the shared heap");
}

SharedHeapError corrupt_error() {
  return make_error(SharedHeapErrc::kHeapCorrupt, 0,
                    "the shared heap's block chain is corrupt; it refuses work");
}

}  // namespace alloy::shared_heap_internal
