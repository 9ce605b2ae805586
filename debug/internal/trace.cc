#include "alloy/debug/internal/trace.h"

#include <absl/debugging/stacktrace.h>

namespace alloy::debug::internal {

// Frames of the debug allocator itself stay in the trace; report formatting
// drops them by name, which keeps working whatever the optimizer inlined.
int capture_stack(void** frames, int max) { return absl::GetStackTrace(frames, max, 0); }

CallSite this_call_site(std::uintptr_t ret) {
  CallSite s;
  s.ret_addr = ret;
  void* frames[kMaxFrames];
  int n = capture_stack(frames, kMaxFrames);
  s.frames.assign(frames, frames + n);
  return s;
}

CallSite alloc_site(std::uintptr_t ret, const StackTrace* t) {
  CallSite s;
  s.ret_addr = ret;
  if (t != nullptr) s.frames.assign(t->frames, t->frames + t->depth);
  return s;
}

CallSite free_site(std::uintptr_t ret, const StackTrace* t) {
  CallSite s;
  s.ret_addr = ret;
  if (t != nullptr) s.frames.assign(t->free_frames, t->free_frames + t->free_depth);
  return s;
}

TracePool::~TracePool() {
  for (StackTrace* t : pool_) delete t;
}

}  // namespace alloy::debug::internal
