// The alignment sweep every suite runs over a handle: a `len`-byte block at
// every alignment from 1 byte to max_alignment, each filled with the shared
// pattern (tests/support/pattern.h) and checked.
//
// Cost: one alloc and free per alignment, linear in the bytes. Thread safety:
// calls the allocator from the calling thread only.
//
// Example:
//   BOOST_TEST(alloy::testing::misaligned_count(counting.allocator(), 64 * 1024) == 0u);
//   BOOST_TEST(alloy::testing::misaligned_count(stack.allocator(), 4096, 24,
//                                               alloy::testing::Hold::kAll) == 0u);
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "alloy/alloc_iface/allocator.h"
#include "tests/support/pattern.h"

namespace alloy::testing {

// The alignment sweep: a `len`-byte block at every alignment from 1 byte to
// max_alignment, each filled and checked; returns how many came back null,
// misaligned or clobbered (0 is a pass). kOneAtATime frees each block before
// the next; kAll keeps them all live and frees them in reverse (so LIFO
// allocators rewind), which also shows overlap.
enum class Hold { kOneAtATime, kAll };
inline std::size_t misaligned_count(Allocator a, std::size_t max_alignment,
                                    std::size_t len = 24, Hold hold = Hold::kOneAtATime) {
  std::size_t bad = 0;
  std::vector<std::pair<Bytes, Alignment>> live;
  std::uintptr_t seed = 0;
  for_each_alignment(max_alignment, [&](Alignment al) {
    auto r = a.alloc_bytes(len, al);
    if (!r || !al.check(r->data())) ++bad;
    if (!r) return;
    fill(*r, ++seed);
    if (hold == Hold::kAll) {
      live.push_back({*r, al});
    } else {
      if (!intact(*r, seed, len)) ++bad;
      a.free_bytes(*r, al);
    }
  });
  seed = 0;
  for (const auto& [b, al] : live) {
    if (!intact(b, ++seed, len)) ++bad;
  }
  for (auto it = live.rbegin(); it != live.rend(); ++it) a.free_bytes(it->first, it->second);
  return bad;
}

}  // namespace alloy::testing
