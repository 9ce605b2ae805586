// Helpers for the shared-heap suites: unique names, forked children, checks
// that work inside a child (Boost.Test must not run there).
//
// Cost: one fork per child. Thread safety: test code, single-threaded.
//
// Example:
//   UniqueName name("visit");
//   auto heap = alloy::SharedHeap::create(name.get(), 1 << 20);
//   pid_t pid = spawn([&] { CHILD_CHECK(1 + 1 == 2); return 0; });
//   BOOST_TEST(wait_child(pid) == 0);
#pragma once

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <utility>

#include "alloy/allocators/shared_heap/shared_heap.h"

namespace shared_heap_test {

// A shm name unique to this process and call; destroyed at scope exit.
class UniqueName {
 public:
  explicit UniqueName(const char* tag) {
    static int counter = 0;
    name_ = "/alloy_test_" + std::string(tag) + "_" + std::to_string(::getpid()) + "_" +
            std::to_string(counter++);
  }
  ~UniqueName() { ::shm_unlink(name_.c_str()); }
  const std::string& get() const { return name_; }

 private:
  std::string name_;
};

// Runs `fn` in a child; the child leaves with _exit(fn()).
template <class F>
pid_t spawn(F&& fn) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    int rc = std::forward<F>(fn)();
    ::_exit(rc);
  }
  return pid;
}

// The child's exit code, or 1000 + signal number if it was killed.
inline int wait_child(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 1000 + WTERMSIG(status);
  return -2;
}

// Spins (with short sleeps) until `flag` reaches `value`; false after ~10 s.
inline bool wait_for(const std::atomic<int>& flag, int value) {
  for (int i = 0; i < 100000; ++i) {
    if (flag.load() >= value) return true;
    ::usleep(100);
  }
  return false;
}

}  // namespace shared_heap_test

// Inside a child: report and leave with a failure code.
#define CHILD_CHECK(cond)                                                        \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "child %d: check failed at %s:%d: %s\n", ::getpid(),   \
                   __FILE__, __LINE__, #cond);                                   \
      return 1;                                                                  \
    }                                                                            \
  } while (0)
