// alloy::profile::capture_stack — the current call stack by frame pointers,
// without malloc, locks or signals: usable inside malloc itself.
//
// alloy builds with -fno-omit-frame-pointer, so each frame of alloy's and the
// program's code links to its caller's. The walk stops at the first frame
// that breaks the chain (a library built without frame pointers, the
// outermost frame): the next frame pointer must lie above the current one,
// within 1 MiB of it, 8-aligned, and on a page mincore(2) says is mapped
// (asked once per page and thread: the pages found mapped are remembered),
// so a garbage frame pointer ends the walk instead of faulting. It trusts a
// stack's pages to stay mapped while the thread runs on that stack.
//
// Cost: O(depth) loads; one mincore(2) per stack page the thread had not
// walked before (after the first samples, none). Thread
// safety: reads only the calling thread's own stack.
//
// Example:
//   std::uintptr_t frames[alloy::profile::kMaxFrames];
//   int n = alloy::profile::capture_stack(frames, alloy::profile::kMaxFrames, 0);
//   // frames[0] lies in this function, frames[1] in its caller, ...
#pragma once

#include <cstdint>

namespace alloy::profile {

inline constexpr int kMaxFrames = 64;

// Writes up to `max` return addresses, innermost first, into `out` and
// returns how many. frames[0] is the return address into capture_stack's
// caller (so it names the caller, at its call of capture_stack); `skip`
// drops that many frames from the top first.
[[gnu::noinline]] int capture_stack(std::uintptr_t* out, int max, int skip) noexcept;

}  // namespace alloy::profile
