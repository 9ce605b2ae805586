// alloy::kNoCeiling — the one spelling of "no cap" for every allocator that
// can be capped.
//
// Every cappable allocator names its cap `ceiling` (an Options field or a
// constructor argument), reads it with `ceiling()` and moves it with
// `set_ceiling(bytes)`; the cap is in bytes, and kNoCeiling (SIZE_MAX, the
// default everywhere) means none. A ceiling of 0 serves nothing (but see
// Arena below). The members:
// Arena::Options::ceiling, Heap::Options::ceiling, LimitAllocator,
// DebugOptions::ceiling, SharedHeap::set_ceiling. Older spellings
// still work for one release: Arena's `ceiling = 0` still reads as none
// (ceiling() then answers kNoCeiling), and DebugOptions::memory_limit,
// fail_alloc_from, SharedHeap::set_cap and SharedHeapStats::cap_bytes are
// [[deprecated]] forwards.
//
// Cost: none (a constant). Thread safety: not applicable.
//
// Example:
//   alloy::Arena arena(alloy::page_allocator(), {.ceiling = 1 << 20});
//   arena.set_ceiling(alloy::kNoCeiling);          // uncapped again
#pragma once

#include <cstddef>
#include <cstdint>

namespace alloy {

inline constexpr std::size_t kNoCeiling = SIZE_MAX;

}  // namespace alloy
