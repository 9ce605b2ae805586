// Shared checks for the wrapper suites: a bounded 4-thread hammer that fills every block with a pattern unique to it
// and checks it before freeing (overlap or lost blocks show up as mismatches).
//
// Cost: linear in the blocks touched. Thread safety: the hammer runs its own
// threads and reports counts back to the calling test thread.
//
// Example:
//   alloy::CountingAllocator counting(alloy::c_allocator());
//   BOOST_TEST(alloy::testing::misaligned_count(counting.allocator(), 64 * 1024) == 0);
//   // every alignment from 1 B to 64 KiB came back aligned, and was freed
//   BOOST_TEST(counting.stats().live_bytes == 0u);
//   // (hammer helpers below do the same from 4 threads)
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "alloy/alloc_iface/allocator.h"
#include "tests/support/sweep.h"  // misaligned_count, the alignment sweep

namespace alloy::testing {

struct HammerResult {
  std::size_t allocs = 0;    // successful allocations (all later freed)
  std::size_t failures = 0;  // allocations the allocator refused
  std::size_t corrupted = 0; // blocks whose pattern changed while live
};

// Each of `threads` threads keeps up to 16 live blocks of 1..max_len bytes,
// for `iterations` steps, sometimes growing one with realloc; everything is
// freed at the end.
inline HammerResult hammer(Allocator a, int threads, int iterations,
                           std::size_t max_len = 256) {
  std::atomic<std::size_t> allocs{0}, failures{0}, corrupted{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      struct Live {
        std::span<unsigned char> mem;
        unsigned char tag;
      };
      std::vector<Live> live;
      std::mt19937 rng(static_cast<unsigned>(t) * 7919u + 1u);
      unsigned char next_tag = static_cast<unsigned char>(t * 61 + 1);
      auto check = [&](const Live& l) {
        for (unsigned char c : l.mem) {
          if (c != l.tag) {
            corrupted.fetch_add(1);
            return;
          }
        }
      };
      for (int i = 0; i < iterations; ++i) {
        const unsigned op = rng() % 8;
        if (live.size() < 16 && op < 5) {
          const std::size_t len = 1 + rng() % max_len;
          auto r = a.alloc<unsigned char>(len);
          if (!r) {
            failures.fetch_add(1);
            continue;
          }
          allocs.fetch_add(1);
          Live l{*r, next_tag++};
          std::memset(l.mem.data(), l.tag, l.mem.size());
          live.push_back(l);
        } else if (!live.empty() && op == 5) {
          Live& l = live[rng() % live.size()];
          check(l);
          const std::size_t len = 1 + rng() % (2 * max_len);
          auto r = a.realloc(l.mem, len);
          if (!r) {
            failures.fetch_add(1);
            continue;
          }
          const std::size_t old = l.mem.size();
          l.mem = *r;
          if (len > old) std::memset(l.mem.data() + old, l.tag, len - old);
        } else if (!live.empty()) {
          const std::size_t k = rng() % live.size();
          check(live[k]);
          a.free(live[k].mem);
          live[k] = live.back();
          live.pop_back();
        }
      }
      for (auto& l : live) {
        check(l);
        a.free(l.mem);
      }
    });
  }
  for (auto& th : pool) th.join();
  return {allocs.load(), failures.load(), corrupted.load()};
}

}  // namespace alloy::testing
