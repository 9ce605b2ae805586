// Errors, the test die points and this process's pid, for every unit of
// alloy::SharedHeap. Not a public API (allocators/shared_heap and its tests).
//
// Cost: make_error formats with vsnprintf (error paths only); die_if is one
// relaxed load; current_pid is one relaxed load after the first call.
// Thread safety: all three may be called from any thread.
//
// Example:
//   if (fd < 0) return system_error("shm_open", name);   // kSystem + errno text
//   die_if(SharedHeap::DiePoint::kAllocAfterIntent);     // SIGKILLs when armed
#pragma once

#include <sys/types.h>

#include <atomic>

#include "alloy/allocators/shared_heap/shared_heap.h"

namespace alloy::shared_heap_internal {

// An error of `code`; with sys_errno != 0, ": strerror(sys_errno)" follows.
SharedHeapError make_error(SharedHeapErrc code, int sys_errno, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

// kSystem with the current errno: "what(name): strerror".
SharedHeapError system_error(const char* what, const char* name);

// ---- Test hook ----

extern std::atomic<SharedHeap::DiePoint> g_die_point;

// SIGKILLs this process if the test armed `point`.
[[noreturn]] void die_now();
inline void die_if(SharedHeap::DiePoint point) {
  if (g_die_point.load(std::memory_order_relaxed) == point) die_now();
}

// ---- This process's id, without a syscall per call ----
// glibc no longer caches getpid(); a fork() child re-reads it (atfork hook).

extern std::atomic<pid_t> g_pid;
pid_t current_pid_slow();
inline pid_t current_pid() {
  pid_t pid = g_pid.load(std::memory_order_relaxed);
  return pid != 0 ? pid : current_pid_slow();
}

}  // namespace alloy::shared_heap_internal
