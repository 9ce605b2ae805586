// alloy::ThreadSafeAllocator — serialises every call to any child behind a mutex.
//
// Makes a single-threaded allocator (a bump, an arena, a pool) shareable:
// alloc, resize, remap and free each hold one absl::Mutex for the length of the
// child's call. `locked(fn)` runs other work on the child (a reset, a stats
// read) under the same mutex.
//
// Cost: an uncontended lock + unlock (two atomic operations, ~20 ns) around one
// indirect call to the child; under contention, callers wait in turn.
// Thread safety: fully thread-safe, whatever the child.
// Under ThreadSanitizer the lock is also announced to TSan by hand: Debian's
// abseil is built without TSan, so its Mutex would otherwise be invisible.
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
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "alloc_iface/allocator.h"

#if defined(__SANITIZE_THREAD__)
#define ALLOY_WRAPPERS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ALLOY_WRAPPERS_TSAN 1
#endif
#endif
#if defined(ALLOY_WRAPPERS_TSAN)
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
#if defined(ALLOY_WRAPPERS_TSAN)
    __tsan_acquire(&mutex_);
#endif
  }
  ~AnnotatedLock() ABSL_UNLOCK_FUNCTION() {
#if defined(ALLOY_WRAPPERS_TSAN)
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
  explicit ThreadSafeAllocator(Allocator child) : child_(child) {}
  ThreadSafeAllocator(const ThreadSafeAllocator&) = delete;
  ThreadSafeAllocator& operator=(const ThreadSafeAllocator&) = delete;

  // The handle; valid while this object lives.
  Allocator allocator() { return Allocator{this, &kVTable}; }
  Allocator child() const { return child_; }

  // Runs fn(child) while holding the mutex; returns what fn returns.
  template <class Fn>
  decltype(auto) locked(Fn&& fn) {
    detail::AnnotatedLock lock(mutex_);
    return std::forward<Fn>(fn)(child_);
  }

 private:
  static void* do_alloc(void* ctx, std::size_t len, Alignment alignment,
                        std::uintptr_t ret_addr);
  static bool do_resize(void* ctx, Bytes memory, Alignment alignment,
                        std::size_t new_len, std::uintptr_t ret_addr);
  static void* do_remap(void* ctx, Bytes memory, Alignment alignment,
                        std::size_t new_len, std::uintptr_t ret_addr);
  static void do_free(void* ctx, Bytes memory, Alignment alignment,
                      std::uintptr_t ret_addr);
  static constexpr VTable kVTable = {do_alloc, do_resize, do_remap, do_free};

  const Allocator child_;
  absl::Mutex mutex_;
};

}  // namespace alloy
