// Recovery and the robust lock of alloy::SharedHeap. Not a public API
// (allocators/shared_heap and its tests).
//
// Crash consistency. The block chain (the size/live words) is the single
// source of truth; free lists, bitmap and counters are caches rebuilt from it.
// Every change to the chain is one aligned 8-byte release store, ordered so
// that the chain is well formed after each store:
//   split:    write the remainder's header inside the free block (invisible),
//             then store the shrunken size of the block being cut;
//   allocate: store size|live of the chosen block;
//   free:     store size without the live bit, then merge with a free
//             neighbour by storing the grown size of the lower block (the
//             upper header becomes payload).
// A process that dies holding the lock leaves the robust mutex EOWNERDEAD.
// The next locker then (1) applies the intent record: an allocation that had
// committed its block but had not returned it is rolled back (the caller
// never got the pointer), a free whose block is still marked live is rolled
// forward; (2) walks the chain, merging adjacent free blocks and recomputing
// prev-size fields, bitmap, lists and counters; (3) drops attachment slots of
// dead processes; then marks the mutex consistent. Blocks the dead process
// had allocated and still held are NOT reclaimed (ownership may have passed
// to another process); visit() shows them with their owner's pid. If the walk
// finds a malformed chain (a process scribbled over a header), the heap is
// marked corrupt and every later call fails cleanly instead of crashing.
//
// Cost: HeapLock is one uncontended trylock and one acquire load; contended
// waits time out every 5 ms and look again (see robust_lock_wait). rebuild(),
// recover() and repair() walk the whole chain, O(blocks); they run only after
// a crash or when a list was found damaged.
// Thread safety: HeapLock serialises every process; the functions here other
// than robust_lock/robust_lock_wait need the lock held.
//
// Example:
//   HeapLock lock(h);                        // recovers if the owner died
//   if (!lock.ok()) return lock.error();     // unrecoverable or corrupt
#pragma once

#include <errno.h>
#include <pthread.h>
#include <sys/types.h>

#include "alloy/allocators/shared_heap/internal/layout.h"
#include "alloy/allocators/shared_heap/shared_heap.h"

namespace alloy::shared_heap_internal {

// Is `target` the start of a block in the chain? O(blocks), bounded.
bool is_chain_block(Header* h, u64 target);

// Rebuilds everything derived from the chain. False if the chain is malformed.
bool rebuild(Header* h);

bool process_alive(pid_t pid);
void prune_dead_slots(Header* h);
u32 live_slots(Header* h);

// Applies the intent record, rebuilds, drops dead slots (the owner died).
void recover(Header* h);

// The free lists were found damaged mid-operation: rebuild them from the
// chain (which also finishes any half-done merge). False if the chain itself
// is broken; the heap is then marked corrupt.
bool repair(Header* h);

// Locks a robust mutex without ever sleeping unboundedly: the trylock here,
// the bounded waits in robust_lock_wait (why: see recovery.cc).
int robust_lock_wait(pthread_mutex_t* m);
inline int robust_lock(pthread_mutex_t* m) {
  int rc = pthread_mutex_trylock(m);
  if (rc != EBUSY) return rc;
  return robust_lock_wait(m);
}

// The lock was taken with EOWNERDEAD: recover(h) and mark the mutex consistent.
void recover_after_owner_died(Header* h);
SharedHeapError lock_failed_error(int rc);
SharedHeapError corrupt_error();

// The robust lock. Recovers the heap if the previous owner died.
// (The slow paths above take no `this`: a call that let the lock escape would
// make the compiler zero the 200-byte error_ on every lock.)
class HeapLock {
 public:
  explicit HeapLock(Header* h) : h_(h) {
    int rc = robust_lock(&h->mutex);
    if (rc == EOWNERDEAD) {
      recover_after_owner_died(h);
      rc = 0;
    }
    if (rc != 0) {
      error_ = lock_failed_error(rc);
      return;
    }
    locked_ = true;
    if (__atomic_load_n(&h->state, __ATOMIC_ACQUIRE) == kStateCorrupt) error_ = corrupt_error();
  }
  ~HeapLock() {
    if (locked_) pthread_mutex_unlock(&h_->mutex);
  }
  HeapLock(const HeapLock&) = delete;
  HeapLock& operator=(const HeapLock&) = delete;

  bool locked() const { return locked_; }
  // Locked and the heap is usable.
  bool ok() const { return locked_ && error_.message[0] == '\0'; }
  const SharedHeapError& error() const { return error_; }

 private:
  Header* h_;
  bool locked_ = false;
  SharedHeapError error_;
};

}  // namespace alloy::shared_heap_internal
