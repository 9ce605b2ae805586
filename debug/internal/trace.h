// alloy::debug::internal trace capture — the full stack traces DebugAllocator
// keeps for sampled blocks (allocation frames, then free frames), a pool that
// recycles them, and the call sites reports are built from.
//
// Not a public API: visible to debug/ and tests/debug only. Everything here is
// in namespace alloy::debug::internal on purpose: report formatting drops
// frames of that namespace by name (debug/report.cc), so capture itself never
// shows up in a trace, whatever the optimizer inlined.
//
// Cost: capture_stack() is one absl::GetStackTrace (O(depth), up to
// kMaxFrames); TracePool::take() reuses a pooled trace (a vector pop) and
// allocates one from the process heap only when the pool is empty; release()
// is a vector push. Thread safety: none; the owner locks.
//
// Example:
//   alloy::debug::internal::TracePool pool;
//   alloy::debug::internal::StackTrace* t = pool.take();  // alloc frames now
//   pool.capture_free(t);                                  // free frames now
//   alloy::debug::CallSite s = alloy::debug::internal::alloc_site(ret, t);
//   pool.release(t);
#pragma once

#include <cstdint>
#include <vector>

#include "alloy/debug/report.h"

namespace alloy::debug::internal {

inline constexpr int kMaxFrames = 32;

// Allocation frames and, once the block is freed, free frames.
struct StackTrace {
  int depth = 0;
  int free_depth = 0;  // 0 until the block is freed
  void* frames[kMaxFrames];
  void* free_frames[kMaxFrames];
};

// Captures the current stack into `frames` (at most `max`); returns the depth.
[[gnu::noinline]] int capture_stack(void** frames, int max);

// The site `ret` with the current full trace (for the call being reported).
CallSite this_call_site(std::uintptr_t ret);
// The site `ret` with t's allocation / free frames (none if t is null).
CallSite alloc_site(std::uintptr_t ret, const StackTrace* t);
CallSite free_site(std::uintptr_t ret, const StackTrace* t);

// Recycled traces; owns the ones handed back. Traces still handed out when
// it dies are the taker's to release first.
class TracePool {
 public:
  TracePool() = default;
  ~TracePool();
  TracePool(const TracePool&) = delete;
  TracePool& operator=(const TracePool&) = delete;

  // A trace holding the current stack as its allocation frames. Inline, so
  // it adds no frame of its own to the trace.
  StackTrace* take() {
    StackTrace* t;
    if (!pool_.empty()) {
      t = pool_.back();
      pool_.pop_back();
    } else {
      t = new StackTrace;
    }
    t->depth = capture_stack(t->frames, kMaxFrames);
    t->free_depth = 0;
    return t;
  }
  // Records the current stack as t's free frames.
  static void capture_free(StackTrace* t) {
    t->free_depth = capture_stack(t->free_frames, kMaxFrames);
  }
  // Back to the pool; null is ignored.
  void release(StackTrace* t) {
    if (t != nullptr) pool_.push_back(t);
  }
  std::size_t pooled() const { return pool_.size(); }

 private:
  std::vector<StackTrace*> pool_;
};

}  // namespace alloy::debug::internal
