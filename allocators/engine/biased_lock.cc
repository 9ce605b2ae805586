#include "alloy/allocators/engine/biased_lock.h"

#include <linux/membarrier.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "alloy/base/config.h"

namespace alloy {
namespace {

long membarrier(int cmd) { return syscall(SYS_membarrier, cmd, 0, 0); }

// 0: not yet asked, 1: available (and registered), 2: unavailable.
std::atomic<int> g_membarrier_state{0};

// A full memory barrier on every running thread of this process.
void heavy_barrier() {
  if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return;
  // A forked child inherits no registration: register again, then retry.
  membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED);
  membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
}

}  // namespace

void spin_backoff(int spins) noexcept {
  if (spins < 64) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  } else {
    sched_yield();
  }
}

bool BiasedLock::owner_path_available() noexcept {
#if defined(ALLOY_HAVE_TSAN)
  return false;  // TSan cannot see the asymmetric fence
#else
  int state = g_membarrier_state.load(std::memory_order_acquire);
  if (state == 0) {
    // Racing threads may both ask; registering twice is harmless.
    const long supported = membarrier(MEMBARRIER_CMD_QUERY);
    const bool ok = supported > 0 && (supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 &&
                    membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
    state = ok ? 1 : 2;
    g_membarrier_state.store(state, std::memory_order_release);
  }
  return state == 1;
#endif
}

bool BiasedLock::claim() noexcept {
  if (!owner_path_available()) {
    shared_.store(true, std::memory_order_relaxed);  // a plain spin lock, for good
    return false;
  }
  std::uintptr_t expected = 0;
  return owner_.compare_exchange_strong(expected, current_thread(), std::memory_order_relaxed);
}

void BiasedLock::lock_shared() noexcept {
  for (int spins = 0;; ++spins) {
    if (!held_.load(std::memory_order_relaxed) &&
        !held_.exchange(true, std::memory_order_acquire)) {
      break;
    }
    spin_backoff(spins);
  }
  if (!shared_.load(std::memory_order_relaxed)) {
    // The first other thread: stop the owner's lock-free path, then wait for
    // the owner to leave the section it may be in.
    shared_.store(true, std::memory_order_relaxed);
    heavy_barrier();
    for (int spins = 0; owner_busy_.load(std::memory_order_acquire); ++spins) spin_backoff(spins);
  }
}

}  // namespace alloy
