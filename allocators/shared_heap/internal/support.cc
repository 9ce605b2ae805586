// Errors, the die-point hook and the cached pid (see support.h).
#include "alloy/allocators/shared_heap/internal/support.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace alloy::shared_heap_internal {

SharedHeapError make_error(SharedHeapErrc code, int sys_errno, const char* fmt, ...) {
  SharedHeapError e;
  e.code = code;
  e.sys_errno = sys_errno;
  va_list ap;
  va_start(ap, fmt);
  int n = std::vsnprintf(e.message, sizeof e.message, fmt, ap);
  va_end(ap);
  if (sys_errno != 0 && n >= 0 && static_cast<std::size_t>(n) < sizeof e.message) {
    std::snprintf(e.message + n, sizeof e.message - static_cast<std::size_t>(n), ": %s",
                  std::strerror(sys_errno));
  }
  return e;
}

SharedHeapError system_error(const char* what, const char* name) {
  int e = errno;
  return make_error(SharedHeapErrc::kSystem, e, "%s(%s)", what, name);
}

std::atomic<SharedHeap::DiePoint> g_die_point{SharedHeap::DiePoint::kNone};

[[noreturn]] void die_now() {
  ::kill(::getpid(), SIGKILL);
  for (;;) ::pause();
}

std::atomic<pid_t> g_pid{0};

pid_t current_pid_slow() {
  static const bool hooked = [] {
    ::pthread_atfork(nullptr, nullptr, [] { g_pid.store(0, std::memory_order_relaxed); });
    return true;
  }();
  (void)hooked;
  pid_t pid = ::getpid();
  g_pid.store(pid, std::memory_order_relaxed);
  return pid;
}

}  // namespace alloy::shared_heap_internal
