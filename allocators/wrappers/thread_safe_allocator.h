// alloy::ThreadSafeAllocator — serialises every call to any child behind a mutex.
//
// Makes a single-threaded allocator (a bump, an arena, a pool) shareable:
// alloc, resize, remap and free each hold one mutex for the length of the
// child's call. `locked(fn)` runs other work on the child (a reset, a stats
// read) under the same mutex. The mutex is an absl::Mutex by default;
// Lock::kStdMutex picks std::mutex instead, which is several times cheaper
// uncontended here (Debian's abseil runs its deadlock detection on every lock).
//
// The optional entries (alloc_at_least, alloc_zeroed, owns) are forwarded
// under the lock too.
//
// Wrong frees are passed to the child under the lock, unchanged: a foreign,
// double or wrong-size free gets exactly what the child promises for it.
//
// Cost: O(1), an uncontended lock + unlock around one indirect call to the
// child; kStdMutex is the cheapest, Debian's absl::Mutex the dearest (figures
// from //bench/wrappers:wrapper_overhead in bench/README.md). Contended
// callers wait.
// Thread safety: fully thread-safe, whatever the child.
// Under ThreadSanitizer the absl lock is also announced to TSan by hand:
// Debian's abseil is built without TSan, so its Mutex would be invisible.
//
// Example:
//   alloy::CountingAllocator inner(alloy::c_allocator());   // any child
//   alloy::ThreadSafeAllocator shared(inner.allocator());
//   alloy::Allocator a = shared.allocator();                // give to every thread
//   std::thread t([a] { auto v = a.alloc<int>(8); if (v) a.free(*v); });
//   t.join();
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "alloy/alloc_iface/allocator.h"
#include "alloy/base/config.h"
#if defined(ALLOY_HAVE_TSAN)
#include <sanitizer/tsan_interface.h>
#endif

namespace alloy {

namespace detail {
// absl::MutexLock plus, under TSan, the acquire/release edges TSan cannot see
// inside an uninstrumented libabsl.
class ABSL_SCOPED_LOCKABLE [[nodiscard]] AnnotatedLock {
 public:
  explicit AnnotatedLock(absl::Mutex& mutex) ABSL_EXCLUSIVE_LOCK_FUNCTION(mutex)
      : mutex_(mutex) {
    mutex_.Lock();
#if defined(ALLOY_HAVE_TSAN)
    __tsan_acquire(&mutex_);
#endif
  }
  ~AnnotatedLock() ABSL_UNLOCK_FUNCTION() {
#if defined(ALLOY_HAVE_TSAN)
    __tsan_release(&mutex_);
#endif
    mutex_.Unlock();
  }
  AnnotatedLock(const AnnotatedLock&) = delete;
  AnnotatedLock& operator=(const AnnotatedLock&) = delete;

 private:
  absl::Mutex& mutex_;
};
}  // namespace detail

class ThreadSafeAllocator {
 public:
  enum class Lock : unsigned char {
    kAbslMutex,  // absl::Mutex (the default)
    kStdMutex,   // std::mutex: cheaper uncontended with Debian's abseil
  };

  explicit ThreadSafeAllocator(Allocator child, Lock lock = Lock::kAbslMutex)
      : child_(child), lock_(lock) {}
  ThreadSafeAllocator(const ThreadSafeAllocator&) = delete;
  ThreadSafeAllocator& operator=(const ThreadSafeAllocator&) = delete;

  // The handle; valid while this object lives.
  Allocator allocator() {
    return Allocator{this, lock_ == Lock::kAbslMutex ? &kAbslVTable : &kStdVTable};
  }
  Allocator child() const { return child_; }
  Lock lock() const { return lock_; }

  // Runs fn(child) while holding the mutex; returns what fn returns.
  template <class Fn>
  decltype(auto) locked(Fn&& fn) {
    if (lock_ == Lock::kStdMutex) {
      std::lock_guard<std::mutex> guard(std_mutex_);
      return std::forward<Fn>(fn)(child_);
    }
    detail::AnnotatedLock guard(mutex_);
    return std::forward<Fn>(fn)(child_);
  }

 private:
  template <class Guard>
  struct Ops;  // the vtable functions, one set per lock type
  static const VTable kAbslVTable;
  static const VTable kStdVTable;

  const Allocator child_;
  const Lock lock_;
  absl::Mutex mutex_;
  std::mutex std_mutex_;
};

}  // namespace alloy
