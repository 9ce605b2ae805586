// alloy::debug::BiasedLock — a mutual-exclusion lock that costs the thread
// which uses it first no atomic read-modify-write, for as long as no other
// thread has touched it.
//
// What it is for: DebugAllocator's lock. A debug allocator is usually used by
// one thread (a test, a subsystem), yet must stay correct if a second thread
// calls it. An uncontended exchange costs ~6.5 ns per lock/unlock on these
// machines, about as much as a whole glibc malloc+free pair, so the owner
// path avoids it:
//   owner (the first thread to lock):  busy = 1; compiler fence;
//                                       if (!shared) enter;    // plain ops
//   any other thread:                   take the spin lock; the first time,
//                                       shared = 1; membarrier(); wait busy == 0
// membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) makes every running thread of
// the process execute a full barrier, so either the owner's `busy = 1` is
// visible to the newcomer (which then waits for the owner to leave) or the
// owner's read of `shared` sees 1 (and it takes the spin lock from then on).
// This is the asymmetric Dekker pattern (folly's asymmetricHeavyBarrier,
// biased locking in JVMs). Once shared, the lock stays a plain test-and-set
// spin lock for everyone.
// Where membarrier is unavailable (kernel < 4.14, seccomp) or under
// ThreadSanitizer (which cannot see the asymmetric fence), the lock starts
// out shared: always the spin lock.
//
// Cost: owner, unshared: two plain stores and two loads, ~1 ns. Shared: one
// atomic exchange and a release store. Becoming shared: one membarrier
// syscall (an IPI to each CPU running the process), once per lock.
// Thread safety: that is its purpose. Not reentrant. A thread that holds it
// must not wait for another thread that is trying to take it.
//
// Example:
//   alloy::debug::BiasedLock lock;
//   {
//     alloy::debug::BiasedLock::Holder hold(lock);  // owner: no atomic RMW
//     ++counter;                                     // protected
//   }                                                // released
#pragma once

#include <atomic>
#include <cstdint>

namespace alloy::debug {

class BiasedLock {
 public:
  enum class Mode : std::uint8_t { kOwner, kShared };

  BiasedLock() noexcept;
  BiasedLock(const BiasedLock&) = delete;
  BiasedLock& operator=(const BiasedLock&) = delete;

  // Takes the lock; pass the result to unlock().
  Mode lock() noexcept {
    const std::uintptr_t owner = owner_.load(std::memory_order_relaxed);
    if (owner == current_thread() || (owner == 0 && claim())) [[likely]] {
      owner_busy_.store(true, std::memory_order_relaxed);
      // Only the compiler must not reorder: membarrier orders the CPU.
      std::atomic_signal_fence(std::memory_order_seq_cst);
      if (!shared_.load(std::memory_order_relaxed)) [[likely]] return Mode::kOwner;
      owner_busy_.store(false, std::memory_order_release);
    }
    lock_shared();
    return Mode::kShared;
  }

  void unlock(Mode mode) noexcept {
    if (mode == Mode::kOwner) {
      owner_busy_.store(false, std::memory_order_release);
    } else {
      held_.store(false, std::memory_order_release);
    }
  }

  // Whether another thread has taken the lock since it was created (always
  // true without membarrier or under TSan). For tests and benchmarks.
  bool shared() const noexcept { return shared_.load(std::memory_order_relaxed); }

  // RAII holder.
  class Holder {
   public:
    explicit Holder(BiasedLock& lock) noexcept : lock_(lock), mode_(lock.lock()) {}
    ~Holder() { lock_.unlock(mode_); }
    Holder(const Holder&) = delete;
    Holder& operator=(const Holder&) = delete;

   private:
    BiasedLock& lock_;
    Mode mode_;
  };

 private:
  static std::uintptr_t current_thread() noexcept {
    std::uintptr_t tp;
#if defined(__x86_64__)
    __asm__("mov %%fs:0, %0" : "=r"(tp));  // the thread's TCB: unique while it lives
#elif defined(__aarch64__)
    __asm__("mrs %0, tpidr_el0" : "=r"(tp));
#else
    static thread_local char tag;
    tp = reinterpret_cast<std::uintptr_t>(&tag);
#endif
    return tp;
  }
  bool claim() noexcept;
  void lock_shared() noexcept;

  std::atomic<std::uintptr_t> owner_{0};
  std::atomic<bool> owner_busy_{false};
  std::atomic<bool> shared_{false};
  std::atomic<bool> held_{false};
};

}  // namespace alloy::debug
