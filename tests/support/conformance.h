// alloy::conformance — one suite of contract checks every Allocator handle
// runs (as Zig's std.testing.testAllocator): alignment 1 B .. 64 KiB, zero
// length, kSizeOverflow, the resize and remap contracts (false / null leave
// the block untouched), contents kept across realloc, no overlap among many
// live blocks, free-all-then-reuse, requests past the stated limits, and a
// bounded 4-thread hammer (with cross-thread frees) for the thread-safe ones;
// and the optional entries: size feedback with the freed-length rule, zeroed
// memory, ownership (each checked for every allocator, the claims in
// Capabilities checked against what the handle does).
//
// Each allocator states its limits in one Capabilities value and gets the
// suite in one line: a Boost.Test case whose body builds a fresh allocator
// for every check and passes its handle to `check`:
//
//   ALLOY_CONFORMANCE_CASE(arena, (alloy::conformance::Capabilities{}),
//                          [](auto check) {
//                            alloy::Arena arena(alloy::page_allocator());
//                            check(arena.allocator());
//                          });
//
// Blocks are always freed in reverse order of allocation, so LIFO-only
// allocators (stack, bump) run every check. Cost: a few thousand calls per
// check (the hammer 4 x kHammerIterations); no timing. Thread safety: the
// suite runs on the Boost.Test thread except the hammer's 4 threads.
#pragma once

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "alloy/alloc_iface/allocator.h"
#include "tests/support/pattern.h"

namespace alloy::conformance {

struct Capabilities {
  // Largest alignment served (the sweep goes 1 B .. min(64 KiB, this)).
  std::size_t max_alignment = 64 * 1024;
  // Largest block served (node pools: the node size).
  std::size_t max_len = 64 * 1024;
  // The handle may be called from several threads at once (runs the hammer).
  bool thread_safe = false;
  // Freed blocks are given out again: free-all-then-reuse runs many rounds
  // (a bounded allocator that did not reuse would run out), and the hammer
  // never runs out of memory.
  bool frees_reuse = true;
  // Shrinking the most recent block in place (resize to half, to its own
  // size, to 1 byte) answers true. False for handles whose resize is
  // no_resize (those over a std::pmr::memory_resource).
  bool can_resize = true;
  // Size feedback: some request gets more usable bytes than it asked for
  // from alloc_at_least (a size class, a node, whole pages). False: every
  // request gets exactly its length (no entry, or a child without one).
  // check_size_feedback checks the feedback itself and the freed-length rule
  // for every allocator, and that the claim matches.
  bool size_feedback = false;
  // The table has an alloc_zeroed entry (its own, or a wrapper's that
  // forwards to the child's). check_zeroed checks zeroed memory for every
  // allocator, and that the claim matches the table.
  bool zeroed_entry = false;
  // owns() answers for this allocator's blocks: kYes for each live block,
  // kNo for memory of no allocator. Without it, live blocks may get kYes or
  // kUnknown, never kNo (check_owns).
  bool owns = false;
};

// 4 threads x this many alloc/verify/free steps; fixed, never timed.
inline constexpr int kHammerIterations = 2000;

namespace detail {

inline bool aligned(const void* p, std::size_t alignment) {
  return reinterpret_cast<std::uintptr_t>(p) % alignment == 0;
}
inline std::size_t cap_len(const Capabilities& caps, std::size_t n) {
  return std::min(n, caps.max_len);
}
inline Alignment align_of(std::size_t bytes) { return *Alignment::from_bytes(bytes); }

struct Live {
  Bytes bytes;
  Alignment alignment;
  std::uintptr_t seed;
};

inline void free_reverse(Allocator a, std::vector<Live>& live) {
  for (auto it = live.rbegin(); it != live.rend(); ++it) a.free_bytes(it->bytes, it->alignment);
  live.clear();
}

}  // namespace detail

// 1 B .. min(64 KiB, max_alignment), several sizes each, alloc + fill + free.
inline void check_alignment_sweep(Allocator a, const Capabilities& caps) {
  const std::size_t top = std::min<std::size_t>(64 * 1024, caps.max_alignment);
  testing::for_each_alignment(top, [&](Alignment al) {
    const std::size_t align = al.bytes();
    for (std::size_t want : {std::size_t{1}, std::size_t{7}, align, align + 24, std::size_t{1000}}) {
      const std::size_t len = detail::cap_len(caps, want);
      BOOST_TEST_CONTEXT("alignment " << align << ", len " << len) {
        auto r = a.alloc_bytes(len, detail::align_of(align));
        BOOST_TEST_REQUIRE(r.has_value());
        BOOST_TEST(r->size() == len);
        BOOST_TEST(detail::aligned(r->data(), align));
        testing::fill(*r, len);
        BOOST_TEST(testing::intact(*r, len, len));
        a.free_bytes(*r, detail::align_of(align));
      }
    }
  });
}

// Zero-length requests: an empty span, never a table call; freeing it and
// reallocating from it work; realloc to zero frees.
inline void check_zero_length(Allocator a, const Capabilities& caps) {
  auto z = a.alloc_bytes(0, Alignment{});
  BOOST_TEST_REQUIRE(z.has_value());
  BOOST_TEST(z->empty());
  auto zi = a.alloc<std::uint32_t>(0);
  BOOST_TEST_REQUIRE(zi.has_value());
  BOOST_TEST(zi->empty());
  BOOST_TEST(detail::aligned(zi->data(), alignof(std::uint32_t)));
  a.free(*zi);
  a.free_bytes(*z, Alignment{});
  BOOST_TEST(a.resize_bytes(*z, Alignment{}, 0));  // an empty span stays empty
  const std::size_t n = detail::cap_len(caps, 48) / sizeof(std::uint32_t);
  auto grown = a.realloc(*zi, n);
  BOOST_TEST_REQUIRE(grown.has_value());
  BOOST_TEST(grown->size() == n);
  auto gone = a.realloc(*grown, 0);
  BOOST_TEST_REQUIRE(gone.has_value());
  BOOST_TEST(gone->empty());
}

// n * sizeof(T) overflow and sizes over PTRDIFF_MAX: kSizeOverflow from
// every allocator, and a block being resized is left as it was.
inline void check_overflow(Allocator a, const Capabilities& caps) {
  auto r1 = a.alloc<std::uint64_t>(SIZE_MAX / 4);
  BOOST_TEST_REQUIRE(!r1.has_value());
  BOOST_TEST((r1.error() == AllocError::kSizeOverflow));
  const auto big = static_cast<std::size_t>(PTRDIFF_MAX);
  auto r2 = a.alloc_bytes(big + 1, Alignment{});
  BOOST_TEST_REQUIRE(!r2.has_value());
  BOOST_TEST((r2.error() == AllocError::kSizeOverflow));
  auto r3 = a.alloc_bytes(big, detail::align_of(16));  // over once rounded up
  BOOST_TEST_REQUIRE(!r3.has_value());
  BOOST_TEST((r3.error() == AllocError::kSizeOverflow));
  BOOST_TEST(a.raw_alloc(big + 1, Alignment{}, 0) == nullptr);

  const std::size_t n = detail::cap_len(caps, 64) / sizeof(std::uint64_t);
  auto block = a.alloc<std::uint64_t>(n);
  BOOST_TEST_REQUIRE(block.has_value());
  Bytes bytes(reinterpret_cast<std::byte*>(block->data()), block->size_bytes());
  testing::fill(bytes, 3);
  BOOST_TEST(!a.resize(*block, SIZE_MAX / 4));
  auto moved = a.realloc(*block, SIZE_MAX / 4);
  BOOST_TEST_REQUIRE(!moved.has_value());
  BOOST_TEST((moved.error() == AllocError::kSizeOverflow));
  BOOST_TEST(!a.resize_bytes(bytes, Alignment::of<std::uint64_t>(), big + 1));
  auto moved2 = a.realloc_bytes(bytes, Alignment::of<std::uint64_t>(), big + 1);
  BOOST_TEST(!moved2.has_value());
  BOOST_TEST(a.raw_remap(bytes, Alignment::of<std::uint64_t>(), big + 1, 0) == nullptr);
  BOOST_TEST(testing::intact(bytes, 3, bytes.size()));
  a.free(*block);
}

// resize: true keeps the first min(old, new) bytes at the same address;
// false leaves the block and its contents untouched and still owned.
// resize to zero answers false (resize never frees).
inline void check_resize_contract(Allocator a, const Capabilities& caps) {
  const Alignment al = detail::align_of(std::min<std::size_t>(16, caps.max_alignment));
  const std::size_t len = detail::cap_len(caps, 256);
  for (std::size_t new_len : {len / 2, len, len * 2, std::size_t{1}, len * 8 + 3}) {
    if (new_len == 0) continue;
    BOOST_TEST_CONTEXT("resize " << len << " -> " << new_len) {
      auto r = a.alloc_bytes(len, al);
      BOOST_TEST_REQUIRE(r.has_value());
      testing::fill(*r, new_len);
      const bool ok = a.resize_bytes(*r, al, new_len);
      BOOST_TEST(testing::intact(*r, new_len, std::min(len, new_len)));
      Bytes now = ok ? Bytes(r->data(), new_len) : *r;
      if (ok) testing::fill(now, new_len + 1);  // all new_len bytes are ours
      if (caps.can_resize && new_len <= len) BOOST_TEST(ok);
      BOOST_TEST(!a.resize_bytes(now, al, 0));
      BOOST_TEST(now.size() == (ok ? new_len : len));
      a.free_bytes(now, al);
    }
  }
}

// remap: non-null is the block moved (aligned, prefix kept); null leaves the
// old block untouched and owned.
inline void check_remap_contract(Allocator a, const Capabilities& caps) {
  const std::size_t align = std::min<std::size_t>(64, caps.max_alignment);
  const Alignment al = detail::align_of(align);
  const std::size_t len = detail::cap_len(caps, 300);
  for (std::size_t new_len : {len * 4, len / 2 + 1, len, len * 64}) {
    BOOST_TEST_CONTEXT("remap " << len << " -> " << new_len) {
      auto r = a.alloc_bytes(len, al);
      BOOST_TEST_REQUIRE(r.has_value());
      testing::fill(*r, 9);
      void* p = a.raw_remap(*r, al, new_len, 0);
      Bytes now = *r;
      if (p != nullptr) {
        BOOST_TEST(detail::aligned(p, align));
        now = Bytes(static_cast<std::byte*>(p), new_len);
        BOOST_TEST(testing::intact(now, 9, std::min(len, new_len)));
        testing::fill(now, 10);
      } else {
        BOOST_TEST(testing::intact(now, 9, len));
      }
      a.free_bytes(now, al);
    }
  }
}

// realloc grows and shrinks, moving or not, keeping the first min bytes.
inline void check_contents_kept(Allocator a, const Capabilities& caps) {
  for (std::size_t align : {std::size_t{1}, std::size_t{8}, std::size_t{64}}) {
    if (align > caps.max_alignment) continue;
    const Alignment al = detail::align_of(align);
    auto r = a.alloc_bytes(detail::cap_len(caps, 16), al);
    BOOST_TEST_REQUIRE(r.has_value());
    Bytes b = *r;
    testing::fill(b, 21);
    std::size_t kept = b.size();
    for (std::size_t want : {1000, 40, 5000, 8, 30000, 3, 64}) {
      const std::size_t n = detail::cap_len(caps, want);
      BOOST_TEST_CONTEXT("alignment " << align << ", realloc " << b.size() << " -> " << n) {
        auto next = a.realloc_bytes(b, al, n);
        BOOST_TEST_REQUIRE(next.has_value());
        BOOST_TEST(next->size() == n);
        BOOST_TEST(detail::aligned(next->data(), align));
        kept = std::min(kept, n);
        BOOST_TEST(testing::intact(*next, 21, kept));
        b = *next;
        testing::fill(b, 21);
        kept = n;
      }
    }
    a.free_bytes(b, al);
  }
}

// Many live blocks of random sizes and alignments: each is filled with its
// own pattern, all still hold it afterwards, and no two ranges overlap.
inline void check_no_overlap(Allocator a, const Capabilities& caps) {
  std::mt19937 rng(12345);
  std::vector<detail::Live> live;
  const std::size_t max_align = std::min<std::size_t>(256, caps.max_alignment);
  for (std::uintptr_t i = 0; i < 200; ++i) {
    const std::size_t len = 1 + rng() % detail::cap_len(caps, 700);
    std::size_t align = std::size_t{1} << (rng() % 9);
    align = std::min(align, max_align);
    auto r = a.alloc_bytes(len, detail::align_of(align));
    BOOST_TEST_REQUIRE(r.has_value());
    BOOST_TEST(detail::aligned(r->data(), align));
    testing::fill(*r, i + 100);
    live.push_back({*r, detail::align_of(align), i + 100});
  }
  bool all_hold = true;
  for (auto& l : live) all_hold = all_hold && testing::intact(l.bytes, l.seed, l.bytes.size());
  BOOST_TEST(all_hold);
  std::vector<detail::Live> sorted = live;
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& x, const auto& y) { return x.bytes.data() < y.bytes.data(); });
  bool disjoint = true;
  for (std::size_t i = 1; i < sorted.size(); ++i) {
    disjoint = disjoint &&
               sorted[i - 1].bytes.data() + sorted[i - 1].bytes.size() <= sorted[i].bytes.data();
  }
  BOOST_TEST(disjoint);
  detail::free_reverse(a, live);
}

// Free every block, then allocate again: with frees_reuse, 64 rounds of the
// same set (a bounded allocator that kept nothing would run out).
inline void check_free_then_reuse(Allocator a, const Capabilities& caps) {
  const int rounds = caps.frees_reuse ? 64 : 2;
  for (int round = 0; round < rounds; ++round) {
    BOOST_TEST_CONTEXT("round " << round) {
      std::vector<detail::Live> live;
      for (std::uintptr_t i = 0; i < 32; ++i) {
        const std::size_t len = detail::cap_len(caps, 8 + i * 37);
        auto r = a.alloc_bytes(len, detail::align_of(8));
        BOOST_TEST_REQUIRE(r.has_value());
        testing::fill(*r, i);
        live.push_back({*r, detail::align_of(8), i});
      }
      bool all_hold = true;
      for (auto& l : live) all_hold = all_hold && testing::intact(l.bytes, l.seed, l.bytes.size());
      BOOST_TEST(all_hold);
      detail::free_reverse(a, live);
    }
  }
}

// 4 threads share the handle, each kHammerIterations steps of alloc, fill,
// realloc, verify, free with a small window of live blocks; then each frees
// a batch another thread allocated.
inline void check_hammer(Allocator a, const Capabilities& caps) {
  std::atomic<int> bad{0};
  std::atomic<int> out_of_memory{0};
  auto body = [&](std::uintptr_t t) {
    std::mt19937 rng(static_cast<unsigned>(t) + 7);
    std::vector<detail::Live> window;
    for (int i = 0; i < kHammerIterations; ++i) {
      const std::uintptr_t seed = t * 1000003 + static_cast<std::uintptr_t>(i);
      const std::size_t len = 1 + rng() % detail::cap_len(caps, 512);
      const Alignment al = detail::align_of(std::min<std::size_t>(std::size_t{1} << (rng() % 7),
                                                                  caps.max_alignment));
      auto r = a.alloc_bytes(len, al);
      if (!r) {
        out_of_memory.fetch_add(1, std::memory_order_relaxed);
      } else {
        testing::fill(*r, seed);
        Bytes b = *r;
        if (i % 5 == 0) {
          const std::size_t n = 1 + rng() % detail::cap_len(caps, 1024);
          auto m = a.realloc_bytes(b, al, n);
          if (m) {
            if (!testing::intact(*m, seed, std::min(len, n))) bad.fetch_add(1);
            b = *m;
            testing::fill(b, seed);
          }
        }
        window.push_back({b, al, seed});
      }
      if (window.size() > 8 || (i == kHammerIterations - 1)) {
        for (auto& l : window) {
          if (!testing::intact(l.bytes, l.seed, l.bytes.size())) bad.fetch_add(1);
        }
        detail::free_reverse(a, window);
      }
    }
  };
  std::vector<std::thread> threads;
  for (std::uintptr_t t = 0; t < 4; ++t) threads.emplace_back(body, t);
  for (auto& th : threads) th.join();
  threads.clear();

  // Blocks freed by another thread than the one that allocated them: each
  // thread allocates a batch, then (after a join) frees its neighbour's.
  std::vector<detail::Live> batches[4];
  for (std::uintptr_t t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (std::uintptr_t i = 0; i < 64; ++i) {
        const std::size_t len = detail::cap_len(caps, 16 + i * 5);
        auto r = a.alloc_bytes(len, detail::align_of(8));
        if (!r) {
          out_of_memory.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        testing::fill(*r, t * 64 + i);
        batches[t].push_back({*r, detail::align_of(8), t * 64 + i});
      }
    });
  }
  for (auto& th : threads) th.join();
  threads.clear();
  for (std::uintptr_t t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto& theirs = batches[(t + 1) % 4];
      for (auto& l : theirs) {
        if (!testing::intact(l.bytes, l.seed, l.bytes.size())) bad.fetch_add(1);
      }
      detail::free_reverse(a, theirs);
    });
  }
  for (auto& th : threads) th.join();
  BOOST_TEST(bad.load() == 0);
  if (caps.frees_reuse) BOOST_TEST(out_of_memory.load() == 0);
}

// Requests past the stated limits: a size over max_len (when below 64 KiB)
// gets null, never a short block; an alignment over max_alignment gets null
// or a block that really is aligned (the handle checks that without NDEBUG).
inline void check_beyond_limits(Allocator a, const Capabilities& caps) {
  if (caps.max_len < 64 * 1024) {
    auto r = a.alloc_bytes(caps.max_len + 1, Alignment{});
    BOOST_TEST(!r.has_value());
    if (r) a.free_bytes(*r, Alignment{});
  }
  if (caps.max_alignment < 64 * 1024) {
    const std::size_t align = caps.max_alignment * 2;
    auto r = a.alloc_bytes(std::min<std::size_t>(caps.max_len, 8), detail::align_of(align));
    if (r) {
      BOOST_TEST(detail::aligned(r->data(), align));
      a.free_bytes(*r, detail::align_of(align));
    }
  }
}

// alloc_at_least: at least the length asked, all of it writable and kept;
// the freed-length rule (free and realloc with the asked length, the
// reported one, or one between); the claim `size_feedback` matches.
inline void check_size_feedback(Allocator a, const Capabilities& caps) {
  const Alignment al = detail::align_of(std::min<std::size_t>(8, caps.max_alignment));
  bool any_extra = false;
  int i = 0;
  for (std::size_t want : {1, 7, 24, 100, 1000, 5000, 70000}) {
    const std::size_t len = detail::cap_len(caps, want);
    BOOST_TEST_CONTEXT("alloc_at_least " << len << " (form " << i % 3 << ")") {
      auto r = a.alloc_bytes_at_least(len, al);
      BOOST_TEST_REQUIRE(r.has_value());
      BOOST_TEST_REQUIRE(r->size() >= len);
      BOOST_TEST(detail::aligned(r->data(), al.bytes()));
      any_extra = any_extra || r->size() > len;
      testing::fill(*r, len + 5);  // every reported byte is the caller's
      BOOST_TEST(testing::intact(*r, len + 5, r->size()));
      switch (i++ % 3) {
        case 0:  // freed with the asked length
          a.free_bytes(Bytes(r->data(), len), al);
          break;
        case 1: {  // grown from the reported length: contents kept
          auto g = a.realloc_bytes(*r, al, detail::cap_len(caps, r->size() + 100));
          BOOST_TEST_REQUIRE(g.has_value());
          BOOST_TEST(testing::intact(*g, len + 5, std::min(g->size(), r->size())));
          a.free_bytes(*g, al);
          break;
        }
        default:  // freed with a length between the two
          a.free_bytes(Bytes(r->data(), len + (r->size() - len) / 2), al);
          break;
      }
    }
  }
  BOOST_TEST(any_extra == caps.size_feedback);
  auto typed = a.alloc_at_least<std::uint32_t>(detail::cap_len(caps, 40) / 4);
  BOOST_TEST_REQUIRE(typed.has_value());
  BOOST_TEST(typed->size() >= detail::cap_len(caps, 40) / 4);
  a.free(*typed);
  auto z = a.alloc_bytes_at_least(0, al);
  BOOST_TEST_REQUIRE(z.has_value());
  BOOST_TEST(z->empty());
}

// alloc_zeroed (also over memory just dirtied and freed) and
// realloc_bytes_zeroed's zero tail; the claim `zeroed_entry` matches.
inline void check_zeroed(Allocator a, const Capabilities& caps) {
  const Alignment al = detail::align_of(std::min<std::size_t>(16, caps.max_alignment));
  auto all_zero = [](Bytes b, std::size_t from) {
    for (std::size_t i = from; i < b.size(); ++i) {
      if (b[i] != std::byte{0}) return false;
    }
    return true;
  };
  for (std::size_t want : {1, 100, 4096, 70000}) {
    const std::size_t len = detail::cap_len(caps, want);
    BOOST_TEST_CONTEXT("alloc_zeroed " << len) {
      auto dirty = a.alloc_bytes(len, al);
      BOOST_TEST_REQUIRE(dirty.has_value());
      std::memset(dirty->data(), 0xAB, len);
      a.free_bytes(*dirty, al);
      auto z = a.alloc_bytes_zeroed(len, al);
      BOOST_TEST_REQUIRE(z.has_value());
      BOOST_TEST(z->size() == len);
      BOOST_TEST(detail::aligned(z->data(), al.bytes()));
      BOOST_TEST(all_zero(*z, 0));
      a.free_bytes(*z, al);
    }
  }
  auto typed = a.alloc_zeroed<std::uint64_t>(detail::cap_len(caps, 64) / 8);
  BOOST_TEST_REQUIRE(typed.has_value());
  bool zeros = true;
  for (std::uint64_t v : *typed) zeros = zeros && v == 0;
  BOOST_TEST(zeros);
  a.free(*typed);
  // Grow zeroed: the old bytes kept, the new ones zero, moving or not.
  const std::size_t small = detail::cap_len(caps, 16);
  auto r = a.alloc_bytes(small, al);
  BOOST_TEST_REQUIRE(r.has_value());
  testing::fill(*r, 77);
  const std::size_t big = detail::cap_len(caps, 3000);
  auto g = a.realloc_bytes_zeroed(*r, al, big);
  BOOST_TEST_REQUIRE(g.has_value());
  BOOST_TEST(g->size() == big);
  BOOST_TEST(testing::intact(*g, 77, std::min(small, big)));
  BOOST_TEST(all_zero(*g, std::min(small, big)));
  a.free_bytes(*g, al);
  BOOST_TEST((a.vtable->alloc_zeroed != nullptr) == caps.zeroed_entry);
}

// owns(): an allocator never disowns its live blocks; one that claims
// `owns` says kYes for each and kNo for memory of no allocator.
inline void check_owns(Allocator a, const Capabilities& caps) {
  alignas(64) static std::byte foreign[64];
  std::vector<detail::Live> live;
  for (std::uintptr_t i = 0; i < 8; ++i) {
    const std::size_t len = detail::cap_len(caps, 8 + i * 300);
    auto r = a.alloc_bytes(len, detail::align_of(8));
    BOOST_TEST_REQUIRE(r.has_value());
    live.push_back({*r, detail::align_of(8), i});
  }
  for (auto& l : live) {
    const Ownership o = a.owns(l.bytes.data());
    BOOST_TEST((o != Ownership::kNo));
    if (caps.owns) BOOST_TEST((o == Ownership::kYes));
  }
  if (caps.owns) BOOST_TEST((a.owns(foreign) == Ownership::kNo));
  detail::free_reverse(a, live);
}

// The handle factory: called once per check with a function to hand the
// fresh allocator's handle to; the allocator lives for that call.
using Check = std::function<void(Allocator)>;

template <class Factory>
void run_all(const Capabilities& caps, Factory&& with_handle) {
  struct Named {
    const char* name;
    void (*fn)(Allocator, const Capabilities&);
  };
  const Named checks[] = {
      {"alignment_sweep", &check_alignment_sweep}, {"zero_length", &check_zero_length},
      {"overflow", &check_overflow},               {"resize_contract", &check_resize_contract},
      {"remap_contract", &check_remap_contract},   {"contents_kept", &check_contents_kept},
      {"no_overlap", &check_no_overlap},           {"free_then_reuse", &check_free_then_reuse},
      {"beyond_limits", &check_beyond_limits},     {"hammer", &check_hammer},
      {"size_feedback", &check_size_feedback},     {"zeroed", &check_zeroed},
      {"owns", &check_owns},
  };
  for (const Named& c : checks) {
    if (c.fn == &check_hammer && !caps.thread_safe) continue;
    BOOST_TEST_CONTEXT("check " << c.name) {
      with_handle(Check([&](Allocator a) {
        BOOST_TEST_REQUIRE(a.valid());
        c.fn(a, caps);
      }));
    }
  }
}

}  // namespace alloy::conformance

// One Boost.Test case running every check over a handle. `caps` is an
// alloy::conformance::Capabilities (parenthesize braces); `...` is a
// callable taking a Check and calling it with a fresh allocator's handle.
#define ALLOY_CONFORMANCE_CASE(name, caps, ...) \
  BOOST_AUTO_TEST_CASE(name) { ::alloy::conformance::run_all(caps, __VA_ARGS__); }
