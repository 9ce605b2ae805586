// fork() from a multi-threaded program while other threads are inside malloc
// must not deadlock the child (the engine's atfork handlers take and release
// its locks), and the child's malloc must work, including in new threads.
#define BOOST_TEST_MODULE malloc_fork
#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "tests/adapters/malloc/malloc_test_util.h"

namespace {

std::atomic<bool> g_stop{false};

// Churns malloc/free/realloc of mixed sizes, with frees of blocks another
// thread allocated (through a shared slot array).
void churn(unsigned seed, std::atomic<void*>* shared, std::size_t nshared) {
  std::vector<void*> mine(64, nullptr);
  unsigned x = seed;
  while (!g_stop.load(std::memory_order_relaxed)) {
    x = x * 1103515245u + 12345u;
    std::size_t i = (x >> 8) % mine.size();
    std::size_t size = (x >> 16) % 3 == 0 ? (x >> 4) % 70000 : (x >> 4) % 300;
    if (mine[i] != nullptr) {
      if ((x & 3) == 0) {
        void* q = std::realloc(mine[i], size + 1);
        if (q != nullptr) mine[i] = q;
      } else {
        std::free(mine[i]);
        mine[i] = nullptr;
      }
    } else {
      mine[i] = std::malloc(size + 1);
      if (mine[i] != nullptr) static_cast<char*>(mine[i])[0] = 1;
    }
    // Hand a block over to whichever thread takes the slot next.
    void* handed = std::malloc(48);
    void* old = shared[(x >> 3) % nshared].exchange(handed);
    std::free(old);
  }
  for (void* p : mine) std::free(p);
}

// What the child does: allocate and free in the forked copy, from the main
// thread and from a new thread; exit 0 only if everything worked.
[[noreturn]] void child_body(int round) {
  bool ok = true;
  std::vector<void*> blocks;
  for (int i = 0; i < 200; ++i) {
    void* p = std::malloc(static_cast<std::size_t>(16 + (i * 37 + round) % 5000));
    ok = ok && p != nullptr;
    blocks.push_back(p);
  }
  for (void* p : blocks) std::free(p);
  int* boxed = new int(round);
  ok = ok && *boxed == round;
  delete boxed;
  std::thread t([&ok] {
    for (int i = 0; i < 100; ++i) {
      void* p = std::malloc(static_cast<std::size_t>(i * 100 + 1));
      ok = ok && p != nullptr;
      std::free(p);
    }
  });
  t.join();
  _exit(ok ? 0 : 1);
}

// Waits for `pid`; kills it and reports a deadlock after `seconds`.
int wait_with_timeout(pid_t pid, int seconds) {
  for (int waited_ms = 0; waited_ms < seconds * 1000; waited_ms += 5) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    timespec ts{0, 5 * 1000 * 1000};
    nanosleep(&ts, nullptr);
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return -1;  // deadlocked
}

}  // namespace

ALLOY_MALLOC_ALWAYS_CHECK_ACTIVE_MALLOC()

ALLOY_MALLOC_CASE(fork_while_threads_are_in_malloc_never_deadlocks) {
  constexpr std::size_t kShared = 32;
  static std::atomic<void*> shared[kShared];
  g_stop = false;
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 3; ++t) threads.emplace_back(churn, t + 1, shared, kShared);
  int deadlocks = 0, failures = 0;
  for (int round = 0; round < 60; ++round) {
    pid_t pid = fork();
    BOOST_TEST_REQUIRE(pid >= 0);
    if (pid == 0) child_body(round);
    int rc = wait_with_timeout(pid, 10);
    if (rc == -1) ++deadlocks;
    else if (rc != 0) ++failures;
    // The parent keeps allocating too.
    void* p = std::malloc(static_cast<std::size_t>(round * 1000 + 1));
    BOOST_TEST(p != nullptr);
    std::free(p);
  }
  g_stop = true;
  for (auto& t : threads) t.join();
  for (auto& s : shared) std::free(s.exchange(nullptr));
  BOOST_TEST(deadlocks == 0);
  BOOST_TEST(failures == 0);
}

ALLOY_MALLOC_CASE(blocks_allocated_before_fork_are_usable_in_the_child) {
  char* s = static_cast<char*>(std::malloc(100));
  std::strcpy(s, "before fork");
  pid_t pid = fork();
  BOOST_TEST_REQUIRE(pid >= 0);
  if (pid == 0) {
    bool ok = std::strcmp(s, "before fork") == 0;
    char* t = static_cast<char*>(std::realloc(s, 100000));  // moves or grows
    ok = ok && t != nullptr && std::strcmp(t, "before fork") == 0;
    std::free(t);
    _exit(ok ? 0 : 1);
  }
  BOOST_TEST(wait_with_timeout(pid, 10) == 0);
  BOOST_TEST(std::strcmp(s, "before fork") == 0);
  std::free(s);
}

ALLOY_MALLOC_CASE(fork_while_a_thread_maps_blocks_aligned_above_2_mib) {
  // Those blocks are the adapter's own (a spin-locked list), not the engine's.
  std::atomic<bool> stop{false};
  std::thread busy([&stop] {
    while (!stop.load()) {
      void* p = nullptr;
      if (posix_memalign(&p, 4 << 20, 1000) == 0) std::free(p);
    }
  });
  void* kept = nullptr;
  BOOST_TEST_REQUIRE(posix_memalign(&kept, 8 << 20, 64) == 0);
  int failures = 0;
  for (int round = 0; round < 20; ++round) {
    pid_t pid = fork();
    BOOST_TEST_REQUIRE(pid >= 0);
    if (pid == 0) {
      void* p = nullptr;
      bool ok = posix_memalign(&p, 4 << 20, 100) == 0 && aligned_to(p, 4 << 20);
      std::free(p);
      std::free(kept);
      _exit(ok ? 0 : 1);
    }
    if (wait_with_timeout(pid, 10) != 0) ++failures;
  }
  stop = true;
  busy.join();
  std::free(kept);
  BOOST_TEST(failures == 0);
}
