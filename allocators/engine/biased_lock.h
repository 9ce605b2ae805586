// alloy::BiasedLock — a mutual-exclusion lock that costs the thread which
// takes it first no atomic read-modify-write, for as long as no other thread
// has taken it.
//
// What it is for: locks that one thread takes nearly always, yet that must
// stay correct if another thread comes: an alloy::Heap (a heap per request,
// per subsystem) and a DebugAllocator (usually one test thread). An
// uncontended atomic exchange costs ~6.5 ns per lock/unlock on these
// machines, about what a whole glibc malloc+free pair costs, so the owner
// path avoids it:
//   owner (first thread to lock):  busy = 1; compiler fence;
//                                  if (!shared) enter;        // plain ops
//   any other thread:              take the spin lock; the first time,
//                                  shared = 1; membarrier(); wait busy == 0
// membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) makes every running thread of
// the process execute a full barrier, so either the owner's `busy = 1` is
// visible to the newcomer (which waits for the owner to leave) or the owner's
// read of `shared` sees 1 (and it takes the spin lock from then on). This is
// the asymmetric Dekker pattern of biased locking (folly's
// asymmetricHeavyBarrier, the JVM's biased locks). Once shared, the lock is a
// test-and-set spin lock for every thread, for good.
// Where membarrier is unavailable (kernel < 4.14, a seccomp filter) or under
// ThreadSanitizer (which cannot see the asymmetric fence), no thread becomes
// owner: it is the spin lock from the start.
//
// Cost: owner, unshared: plain stores and loads, ~1 ns a lock/unlock. Shared:
// one atomic exchange and a release store. Becoming shared: one membarrier
// syscall (an interrupt to each CPU running the process), once per lock.
// Uses only atomics and syscalls (no malloc): the engine may use it.
// Thread safety: that is its purpose. Not reentrant. A holder must not wait
// for a thread that is trying to take the same lock. try_lock never makes the
// lock shared: on an unshared lock it fails for every thread but the owner.
//
// Example:
//   alloy::BiasedLock lock;              // constexpr: fine as a global
//   lock.lock();                         // first taker becomes the owner
//   ++counter;                           // protected
//   lock.unlock();
//   if (lock.try_lock()) { ++counter; lock.unlock(); }
//   auto mode = lock.acquire(); ++counter; lock.release(mode);  // hot paths
#pragma once

#include <atomic>
#include <cstdint>

namespace alloy {

// One step of backing off in a spin loop: a pause for the first 64 spins,
// then sched_yield (the holder may be descheduled: let it run). Shared by
// alloy's spin locks.
void spin_backoff(int spins) noexcept;

class BiasedLock {
 public:
  constexpr BiasedLock() noexcept = default;
  BiasedLock(const BiasedLock&) = delete;
  BiasedLock& operator=(const BiasedLock&) = delete;

  void lock() noexcept { (void)acquire(); }

  // lock()/unlock() for hot paths: acquire() says how the lock was taken and
  // release() takes that back, sparing unlock() its check.
  enum class Mode : std::uint8_t { kOwner, kShared };
  [[nodiscard]] Mode acquire() noexcept {
    if (enter_as_owner()) [[likely]] return Mode::kOwner;
    lock_shared();
    return Mode::kShared;
  }
  void release(Mode mode) noexcept {
    if (mode == Mode::kOwner) {
      owner_busy_.store(false, std::memory_order_release);
    } else {
      held_.store(false, std::memory_order_release);
    }
  }

  bool try_lock() noexcept {
    if (enter_as_owner()) return true;
    if (!shared_.load(std::memory_order_acquire)) return false;  // never flips it
    return !held_.load(std::memory_order_relaxed) &&
           !held_.exchange(true, std::memory_order_acquire);
  }

  void unlock() noexcept {
    // Only the owner thread ever sets owner_busy_, so it is this thread's
    // owner-mode hold exactly when it is set and this thread is the owner.
    if (owner_busy_.load(std::memory_order_relaxed) &&
        owner_.load(std::memory_order_relaxed) == current_thread()) {
      owner_busy_.store(false, std::memory_order_release);
    } else {
      held_.store(false, std::memory_order_release);
    }
  }

  // In a forked child, by its only thread, which took this lock before
  // fork(): frees it whatever state fork() copied. A thread that did not
  // survive may have been queued inside it (holding the spin word while it
  // waited for the owner to leave), so unlock() is not enough.
  void reset_after_fork() noexcept {
    owner_busy_.store(false, std::memory_order_relaxed);
    held_.store(false, std::memory_order_relaxed);
  }

  // Makes the lock a plain spin lock for good; call before any thread takes
  // it. For locks that many threads take rarely (the default heap's pool of
  // idle thread heaps), where the owner path buys nothing and the membarrier
  // syscall is not wanted in every process.
  void make_plain() noexcept { shared_.store(true, std::memory_order_relaxed); }

  // Whether the lock has become (or started as) a plain spin lock.
  bool shared() const noexcept { return shared_.load(std::memory_order_relaxed); }

  // Whether this process can use the owner path at all (membarrier with
  // MEMBARRIER_CMD_PRIVATE_EXPEDITED, and not under TSan).
  static bool owner_path_available() noexcept;

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

  bool enter_as_owner() noexcept {
    // Shared for good: skip the owner path (and the first claim's syscalls).
    if (shared_.load(std::memory_order_relaxed)) return false;
    const std::uintptr_t owner = owner_.load(std::memory_order_relaxed);
    if (owner != current_thread() && (owner != 0 || !claim())) return false;
    owner_busy_.store(true, std::memory_order_relaxed);
    // Only the compiler must not reorder here: membarrier orders the CPU.
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (!shared_.load(std::memory_order_relaxed)) [[likely]] return true;
    owner_busy_.store(false, std::memory_order_release);
    return false;
  }
  bool claim() noexcept;
  void lock_shared() noexcept;

  std::atomic<std::uintptr_t> owner_{0};
  std::atomic<bool> owner_busy_{false};
  std::atomic<bool> shared_{false};
  std::atomic<bool> held_{false};
};

}  // namespace alloy
