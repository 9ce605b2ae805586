#include "debug/biased_lock.h"

#include <linux/membarrier.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace alloy::debug {
namespace {

#if defined(__SANITIZE_THREAD__)
#define ALLOY_BIASED_LOCK_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ALLOY_BIASED_LOCK_TSAN 1
#endif
#endif

long membarrier(int cmd) { return syscall(SYS_membarrier, cmd, 0, 0); }

// Whether this process may use MEMBARRIER_CMD_PRIVATE_EXPEDITED; registers
// it on first call (the registration covers threads created later).
bool expedited_membarrier_ready() {
#if defined(ALLOY_BIASED_LOCK_TSAN)
  return false;  // TSan cannot see the asymmetric fence: always lock
#else
  static const bool ready = [] {
    const long supported = membarrier(MEMBARRIER_CMD_QUERY);
    return supported > 0 && (supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 &&
           membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
  }();
  return ready;
#endif
}

// A full memory barrier on every running thread of this process.
void heavy_barrier() {
  if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return;
  // A forked child inherits no registration: register again, then retry.
  membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED);
  membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
}

void relax(int spins) {
  if (spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  } else {
    sched_yield();  // the holder may be descheduled: let it run
  }
}

}  // namespace

BiasedLock::BiasedLock() noexcept {
  if (!expedited_membarrier_ready()) shared_.store(true, std::memory_order_relaxed);
}

bool BiasedLock::claim() noexcept {
  std::uintptr_t expected = 0;
  return owner_.compare_exchange_strong(expected, current_thread(), std::memory_order_relaxed);
}

void BiasedLock::lock_shared() noexcept {
  for (int spins = 0;; ++spins) {
    if (!held_.load(std::memory_order_relaxed) &&
        !held_.exchange(true, std::memory_order_acquire)) {
      break;
    }
    relax(spins);
  }
  if (!shared_.load(std::memory_order_relaxed)) {
    // The first other thread: stop the owner's lock-free path, then wait for
    // the owner to leave the section it may be in.
    shared_.store(true, std::memory_order_relaxed);
    heavy_barrier();
    for (int spins = 0; owner_busy_.load(std::memory_order_acquire); ++spins) relax(spins);
  }
}

}  // namespace alloy::debug
