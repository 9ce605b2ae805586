// Death-style checks for Boost.Test (which has none): run a statement in a
// forked child with stderr captured, and report how it ended and what it
// printed. The child restores SIGABRT's default action (Boost.Test's monitor
// would catch it) and leaves with _exit(0) if the statement returns.
//
// Works under ASan and TSan: the child is single-threaded and std::abort()
// is an ordinary SIGABRT there (ASAN_OPTIONS=abort_on_error only changes how
// ASan's own reports end).
//
// Example:
//   auto d = alloy::testing::run_in_child([] { std::abort(); });
//   BOOST_TEST(d.aborted());
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <string>

namespace alloy::testing {

struct Death {
  int status = 0;
  std::string err;  // what the child wrote on stderr
  bool aborted() const { return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT; }
  bool exited_ok() const { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }
};

template <class F>
Death run_in_child(F&& f) {
  Death d;
  int fds[2];
  if (::pipe(fds) != 0) return d;
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    ::dup2(fds[1], 2);
    std::signal(SIGABRT, SIG_DFL);
    f();
    ::_exit(0);
  }
  ::close(fds[1]);
  char buf[512];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) d.err.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  ::waitpid(pid, &d.status, 0);
  return d;
}

}  // namespace alloy::testing
