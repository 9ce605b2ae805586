// alloy::engine entry points: sizes, alignments, churn, realloc, huge blocks,
// ownership, purge and RSS, fork.
#define BOOST_TEST_MODULE engine
#include <boost/test/unit_test.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "alloy/allocators/engine/engine.h"
#include "alloy/allocators/engine/heap.h"
#include "alloy/allocators/engine/internal.h"
#include "alloy/base/config.h"
#include "tests/support/pattern.h"

namespace engine = alloy::engine;

namespace {

// Pattern over the whole block up to 32 KiB, else over its first and last
// 16 KiB (keeps sanitizer runs fast; overlap is also checked exactly).
constexpr std::size_t kEdge = 16 << 10;
// The pattern (tests/support/pattern.h) over its first and last kEdge bytes.
void fill(void* p, std::size_t n, std::uint8_t seed) {
  alloy::testing::fill(p, n, seed, {.edge = kEdge});
}
bool check(const void* p, std::size_t n, std::uint8_t seed) {
  return alloy::testing::intact(p, n, seed, {.edge = kEdge});
}

std::size_t rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size = 0, resident = 0;
  const int got = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return got == 2 ? resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE)) : 0;
}

// Every case ends with this thread's ThreadHeap intact: all of the engine's
// structural invariants hold (validate.cc).
struct EngineIntact {
  void teardown() {
    engine::detail::Violation v;
    const bool ok = engine::detail::validate_current_thread(&v);
    BOOST_TEST(ok, "engine invariant broken: " << (v.what ? v.what : "") << " at " << v.where);
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(engine_cases, *boost::unit_test::fixture<EngineIntact>())

BOOST_AUTO_TEST_CASE(every_size_up_to_4k_is_aligned_usable_and_distinct) {
  std::vector<void*> live;
  for (std::size_t n = 1; n <= 4096; ++n) {
    void* p = engine::alloc(n);
    BOOST_REQUIRE(p != nullptr);
    BOOST_CHECK_EQUAL(reinterpret_cast<std::uintptr_t>(p) % 16, 0u);
    BOOST_CHECK_GE(engine::usable_size(p), n);
    BOOST_CHECK(engine::owns(p));
    fill(p, engine::usable_size(p), static_cast<std::uint8_t>(n));
    live.push_back(p);
  }
  for (std::size_t n = 1; n <= 4096; ++n) {
    void* p = live[n - 1];
    BOOST_CHECK(check(p, engine::usable_size(p), static_cast<std::uint8_t>(n)));
    engine::free_sized(p, n);
  }
}

BOOST_AUTO_TEST_CASE(every_size_class_boundary_with_waste_at_most_an_eighth_above_128) {
  namespace d = engine::detail;
  for (unsigned c = 1; c < d::kClasses; ++c) {
    const std::size_t cs = d::class_size(c);
    for (std::size_t n : {cs - (cs > 1 ? 1 : 0), cs, cs + 1}) {
      if (n == 0) continue;
      void* p = engine::alloc(n);
      BOOST_REQUIRE(p != nullptr);
      const std::size_t usable = engine::usable_size(p);
      BOOST_CHECK_GE(usable, n);
      if (n > 128 && n <= d::kSmallMax) BOOST_CHECK_LE(usable - n, usable / 8);
      fill(p, usable, 3);
      BOOST_CHECK(check(p, usable, 3));
      engine::free(p);
    }
  }
}

BOOST_AUTO_TEST_CASE(alignments_up_to_2mib) {
  for (std::size_t align = 1; align <= (std::size_t{2} << 20); align <<= 1) {
    for (std::size_t n : {std::size_t{1}, std::size_t{24}, std::size_t{1000}, std::size_t{5000},
                          std::size_t{70000}, std::size_t{1} << 20, std::size_t{3} << 20}) {
      void* p = engine::alloc_aligned(n, align);
      BOOST_REQUIRE_MESSAGE(p != nullptr, "align " << align << " size " << n);
      BOOST_CHECK_EQUAL(reinterpret_cast<std::uintptr_t>(p) % align, 0u);
      BOOST_CHECK_GE(engine::usable_size(p), n);
      fill(p, n, 9);
      BOOST_CHECK(check(p, n, 9));
      engine::free(p);
    }
  }
}

BOOST_AUTO_TEST_CASE(alignment_above_2mib_is_refused_cleanly) {
  BOOST_CHECK(engine::alloc_aligned(100, std::size_t{4} << 20) == nullptr);
  void* p = engine::alloc_aligned(100, 64);  // still usable
  BOOST_CHECK(p != nullptr);
  engine::free(p);
}

BOOST_AUTO_TEST_CASE(small_alignments_do_not_waste_the_alignment) {
  // 64 blocks of 64 bytes aligned to 64: all from one page, no padding.
  std::vector<void*> v;
  for (int i = 0; i < 64; ++i) {
    void* p = engine::alloc_aligned(64, 64);
    BOOST_REQUIRE(p != nullptr);
    BOOST_CHECK_EQUAL(engine::usable_size(p), 64u);
    v.push_back(p);
  }
  for (void* p : v) engine::free(p);
  void* big = engine::alloc_aligned(100, std::size_t{1} << 20);  // 1 MiB alignment
  BOOST_REQUIRE(big != nullptr);
  BOOST_CHECK_LE(engine::usable_size(big), std::size_t{64} << 10);  // one slice, not 1 MiB
  engine::free(big);
}

BOOST_AUTO_TEST_CASE(random_churn_no_overlap_contents_kept) {
  std::mt19937_64 rng(42);
  std::map<std::uintptr_t, std::size_t> live;  // start -> size
  struct Block { void* p; std::size_t n; std::uint8_t seed; };
  std::vector<Block> blocks;
#if defined(ALLOY_HAVE_TSAN)
  constexpr int kIterations = 20000;
#else
  constexpr int kIterations = 60000;
#endif
  for (int it = 0; it < kIterations; ++it) {
    if (blocks.size() < 200 || rng() % 2 == 0) {
      const unsigned r = rng() % 100;
      std::size_t n = r < 80 ? 1 + rng() % 256 : r < 97 ? 1 + rng() % 20000 : 1 + rng() % (3u << 20);
      void* p = engine::alloc(n);
      BOOST_REQUIRE(p != nullptr);
      const auto a = reinterpret_cast<std::uintptr_t>(p);
      auto next = live.lower_bound(a);
      if (next != live.end()) BOOST_REQUIRE_LE(a + n, next->first);
      if (next != live.begin()) {
        auto prev = std::prev(next);
        BOOST_REQUIRE_LE(prev->first + prev->second, a);
      }
      live[a] = n;
      const auto seed = static_cast<std::uint8_t>(rng());
      fill(p, n, seed);
      blocks.push_back({p, n, seed});
    } else {
      const std::size_t i = rng() % blocks.size();
      Block b = blocks[i];
      BOOST_REQUIRE(check(b.p, b.n, b.seed));
      live.erase(reinterpret_cast<std::uintptr_t>(b.p));
      if (rng() % 2) engine::free_sized(b.p, b.n); else engine::free(b.p);
      blocks[i] = blocks.back();
      blocks.pop_back();
    }
  }
  for (auto& b : blocks) {
    BOOST_CHECK(check(b.p, b.n, b.seed));
    engine::free(b.p);
  }
}

BOOST_AUTO_TEST_CASE(realloc_keeps_contents_through_every_kind) {
  std::size_t n = 10;
  void* p = engine::alloc(n);
  fill(p, n, 5);
  for (std::size_t next : {std::size_t{100}, std::size_t{5000}, std::size_t{100000},
                           std::size_t{3} << 20, std::size_t{9} << 20, std::size_t{40} << 20,
                           std::size_t{200000}, std::size_t{50}, std::size_t{8}}) {
    void* q = engine::realloc(p, next);
    BOOST_REQUIRE(q != nullptr);
    BOOST_CHECK_EQUAL(reinterpret_cast<std::uintptr_t>(q) % 16, 0u);
    BOOST_CHECK(check(q, std::min({n, next, kEdge}), 5));
    fill(q, next, 5);
    p = q;
    n = next;
  }
  engine::free(p);
}

BOOST_AUTO_TEST_CASE(realloc_growth_by_small_steps_moves_once_per_class_and_keeps_every_byte) {
  // Append loop: 1 byte at a time up to 48 KiB. A small block moves to the
  // class of its new size, no further (no headroom), so it moves at most
  // once per size class on the way.
  std::size_t moves = 0;
  auto* p = static_cast<unsigned char*>(engine::alloc(1));
  p[0] = 0;
  for (std::size_t n = 2; n <= 48 * 1024; ++n) {
    auto* q = static_cast<unsigned char*>(engine::realloc(p, n));
    BOOST_REQUIRE(q != nullptr);
    if (q != p) ++moves;
    BOOST_REQUIRE_GE(engine::usable_size(q), n);
    q[n - 1] = static_cast<unsigned char>(n - 1);
    p = q;
  }
  bool intact = true;
  for (std::size_t i = 0; i < 48 * 1024; ++i) intact &= p[i] == static_cast<unsigned char>(i);
  BOOST_CHECK(intact);
  BOOST_CHECK_LE(moves, std::size_t{engine::detail::class_of(48 * 1024)});
  // A shrink far below the usable size moves to a smaller class.
  void* s = engine::realloc(p, 100);
  BOOST_REQUIRE(s != nullptr);
  BOOST_CHECK_LT(engine::usable_size(s), 200u);
  BOOST_CHECK_EQUAL(static_cast<unsigned char*>(s)[99], 99);
  engine::free(s);
}

BOOST_AUTO_TEST_CASE(small_blocks_grown_to_a_cap_keep_only_their_class_slack) {
  // Buffers grown by small reallocs to a cap (redis's listpacks) end in the
  // class of the cap: moving growths get no headroom below 64 KiB, which
  // such buffers would keep for good. Large blocks still get headroom.
  using engine::detail::class_of;
  using engine::detail::class_size;
  for (std::size_t cap : {std::size_t{1000}, std::size_t{3000}, std::size_t{6000}, std::size_t{40000}}) {
    void* p = engine::alloc(16);
    for (std::size_t n = 16; n < cap;) {
      n = std::min(cap, n + 1 + n % 61);
      p = engine::realloc(p, n);
      BOOST_REQUIRE(p != nullptr);
    }
    BOOST_CHECK_EQUAL(engine::usable_size(p), class_size(class_of(cap)));
    engine::free(p);
  }
  void* big = engine::alloc(70000);
  void* moved = engine::realloc(big, 200000);  // large: moves with ~25% headroom
  BOOST_REQUIRE(moved != nullptr);
  BOOST_CHECK_GE(engine::usable_size(moved), 200000u);
  engine::free(moved);
}

BOOST_AUTO_TEST_CASE(pages_kept_by_classes_no_longer_used_are_reused) {
  // Sizes drift upwards through every class from 9 KiB to 64 KiB (8 blocks
  // of each, then freed): each class keeps its emptied page, but those pages
  // must be reused before the heap grows, so commitment stays near one page.
  auto& committed = engine::detail::g_default_heap.committed;
  const std::size_t before = committed.load();
  for (int round = 0; round < 2; ++round) {
    for (unsigned c = engine::detail::class_of(9 * 1024); c < engine::detail::kClasses; ++c) {
      const std::size_t size = engine::detail::class_size(c);
      void* b[8];
      for (void*& p : b) {
        p = engine::alloc(size);
        BOOST_REQUIRE(p != nullptr);
        fill(p, size, 3);
      }
      for (void* p : b) engine::free(p);
    }
  }
  const std::size_t after = committed.load();
  BOOST_CHECK_LT(after > before ? after - before : 0, std::size_t{6} << 20);
}

BOOST_AUTO_TEST_CASE(dirty_slices_over_the_budget_are_purged_before_fresh_ones) {
  // 256 one-slice pages of 8 KiB blocks; every other page freed leaves 128
  // touched one-slice holes (8 MiB, over the dirty budget of 4 segments)
  // between live pages. Large blocks of 4 slices fit none of them, so they
  // take fresh slices; before it commits them the heap purges dirty slices
  // down to under half the budget, so its commitment falls. Live blocks
  // keep their contents. (A new thread: its own ThreadHeap.)
  std::thread([] {
    namespace d = engine::detail;
    auto& committed = d::g_default_heap.committed;
    constexpr std::size_t kBlock = 8 * 1024;
    BOOST_REQUIRE_EQUAL(d::class_slices(d::class_of(kBlock)), 1u);
    std::vector<void*> blocks(2048);
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      blocks[i] = engine::alloc(kBlock);
      BOOST_REQUIRE(blocks[i] != nullptr);
      fill(blocks[i], kBlock, static_cast<std::uint8_t>(i));
    }
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      if ((i / 8) % 2 == 0) {
        engine::free(blocks[i]);
        blocks[i] = nullptr;
      }
    }
    d::ThreadHeap* l = d::t_local;
    const std::uint32_t budget =
        std::max(d::kDirtyMinSlices, l->segment_count * static_cast<std::uint32_t>(d::kSlices) / d::kDirtyFraction);
    BOOST_TEST_MESSAGE("dirty " << l->dirty << " budget " << budget);
    BOOST_REQUIRE_GT(l->dirty, budget);
    const std::size_t before = committed.load();
    std::vector<void*> large;
    for (int i = 0; i < 4; ++i) {
      void* p = engine::alloc(4 * d::kSliceSize);
      BOOST_REQUIRE(p != nullptr);
      fill(p, 4 * d::kSliceSize, 9);
      large.push_back(p);
    }
    const std::size_t after = committed.load();
    BOOST_TEST_MESSAGE("committed before " << before << " after " << after);
    BOOST_CHECK_LE(l->dirty, budget);
    BOOST_CHECK_LT(after + std::size_t{budget / 2} * d::kSliceSize, before + 16 * d::kSliceSize);
    bool intact = true;
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      if (blocks[i] != nullptr) intact &= check(blocks[i], kBlock, static_cast<std::uint8_t>(i));
    }
    BOOST_CHECK(intact);
    for (void* p : large) {
      BOOST_CHECK(check(p, 4 * d::kSliceSize, 9));
      engine::free(p);
    }
    for (void* p : blocks) {
      if (p != nullptr) engine::free(p);
    }
  }).join();
}

BOOST_AUTO_TEST_CASE(a_working_set_breathing_by_a_slice_makes_few_madvise_calls) {
  // Eight large blocks of 2 or 3 slices replaced at random for 100k rounds:
  // the working set breathes by a slice at a time. Purging right before
  // every fresh slice made ~4000 madvise calls here (and ~140k with 2-5
  // slices); the delay purges only spans that stayed free for
  // kPurgeDelayMs, so at most one pass per segment and delay (counted in
  // os_purge; bounded by the run's own duration, not timed against it).
  std::thread([] {
    namespace d = engine::detail;
    engine::collect();  // what earlier tests left (an adopted idle heap's dirty slices)
    const std::uint64_t calls_before = d::g_os_purge_calls.load();
    const auto start = std::chrono::steady_clock::now();
    void* blk[8] = {};
    std::mt19937_64 rng(5);
    for (int i = 0; i < 100000; ++i) {
      const std::size_t k = rng() % 8;
      engine::free(blk[k]);
      const std::size_t n = (2 + rng() % 2) * d::kSliceSize - 512;
      blk[k] = engine::alloc(n);
      BOOST_REQUIRE(blk[k] != nullptr);
      static_cast<char*>(blk[k])[0] = 1;
      static_cast<char*>(blk[k])[n - 1] = 1;
    }
    for (void* p : blk) engine::free(p);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - start).count();
    const std::uint64_t calls = d::g_os_purge_calls.load() - calls_before;
    const std::uint64_t bound = 16 + 16 * (static_cast<std::uint64_t>(ms) / d::kPurgeDelayMs + 1);
    BOOST_TEST_MESSAGE("madvise calls " << calls << " in " << ms << " ms (bound " << bound << ")");
    BOOST_CHECK_LE(calls, bound);
  }).join();
}

namespace {
// Calls engine::alloc/free lightly (a 64-byte pair every 5 ms) until done()
// or `limit_ms` passed.
template <class Done>
void idle_lightly_until(Done done, int limit_ms) {
  for (int t = 0; t < limit_ms && !done(); t += 5) {
    void* p = engine::alloc(64);
    static_cast<char*>(p)[0] = 1;
    engine::free(p);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}
constexpr std::size_t kIdleBytes = std::size_t{64} << 20;
// A live set big enough that freeing kIdleBytes leaves the heap less than
// kMostlyFree parts free to one used (no purge at free time).
constexpr std::size_t kBallastBytes = std::size_t{24} << 20;
static_assert(kIdleBytes <= engine::detail::kMostlyFree * kBallastBytes);
// `bytes` of 256 KiB blocks, every byte written.
std::vector<void*> touch_large_blocks(std::size_t bytes) {
  std::vector<void*> v;
  for (std::size_t done = 0; done < bytes; done += 256 << 10) {
    void* p = engine::alloc(256 << 10);
    std::memset(p, 1, 256 << 10);
    v.push_back(p);
  }
  return v;
}
// Under TSan the shadow of the freed memory stays resident: there the
// engine's own figures (commitment, mappings) are checked, elsewhere RSS too.
#if defined(ALLOY_HAVE_TSAN)
constexpr bool kRssFollows = false;
#else
constexpr bool kRssFollows = true;
#endif
}  // namespace

BOOST_AUTO_TEST_CASE(rss_falls_after_an_idle_period_for_a_thread_that_calls_lightly) {
  // A thread holds 24 MiB of large blocks (a live set: what it frees is not
  // most of its heap), touches 64 MiB more, frees those and then only calls
  // alloc/free of one small block now and then: the freed slices are kept
  // at first (a working set may come back), and its slow path's purge tick
  // gives them back once they have stayed free for the delay (well within
  // 5 s), with no collect() and no thread of the engine's own.
  std::thread([] {
    auto& committed = engine::detail::g_default_heap.committed;
    const std::size_t base = rss_bytes();
    const std::size_t base_committed = committed.load();
    const std::vector<void*> ballast = touch_large_blocks(kBallastBytes);
    const std::vector<void*> v = touch_large_blocks(kIdleBytes);
    const std::size_t peak = rss_bytes();
    for (void* p : v) engine::free(p);
    const std::size_t live = base_committed + kBallastBytes;
    const bool kept = committed.load() > live + kIdleBytes / 2;  // not purged at once
    auto done = [&] {
      return committed.load() <= live + kIdleBytes / 4 &&
             (!kRssFollows || rss_bytes() <= base + kBallastBytes + kIdleBytes / 4);
    };
    idle_lightly_until(done, 5000);
    BOOST_TEST_MESSAGE("rss base " << base << " peak " << peak << " after idling " << rss_bytes()
                       << "; committed base " << base_committed << " after " << committed.load());
    BOOST_CHECK(kept);
    BOOST_CHECK(done());
    for (void* p : ballast) engine::free(p);
  }).join();
}

BOOST_AUTO_TEST_CASE(rss_falls_without_any_call_after_freeing_most_of_the_heap) {
  // A thread touches 64 MiB of large blocks and 32 MiB of 1 KiB blocks,
  // frees them all and then makes no call at all (it sleeps): with most of
  // its heap free, the frees themselves give the excess back (dirty slices
  // down to half the budget, purge_if_mostly_free), so RSS falls with no
  // purge tick to wait for. Checked for up to 3 s of sleeping, not timed.
  std::thread([] {
    namespace d = engine::detail;
    auto& committed = d::g_default_heap.committed;
    const std::size_t base = rss_bytes();
    const std::size_t base_committed = committed.load();
    const std::vector<void*> v = touch_large_blocks(kIdleBytes);
    std::vector<void*> small;
    for (std::size_t done = 0; done < kIdleBytes / 2; done += 1024) {
      void* p = engine::alloc(1024);
      std::memset(p, 2, 1024);
      small.push_back(p);
    }
    const std::size_t peak = rss_bytes();
    const std::size_t peak_committed = committed.load();
    for (void* p : v) engine::free(p);
    for (void* p : small) engine::free(p);
    // What may stay: half the dirty budget and the page each class keeps.
    const std::size_t slack = std::size_t{d::kDirtyMinSlices} * d::kSliceSize + (std::size_t{4} << 20);
    auto done = [&] {
      return committed.load() <= base_committed + slack &&
             (!kRssFollows || rss_bytes() <= base + slack);
    };
    for (int t = 0; t < 3000 && !done(); t += 10) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    BOOST_TEST_MESSAGE("rss base " << base << " peak " << peak << " after " << rss_bytes()
                       << "; committed base " << base_committed << " peak " << peak_committed
                       << " after " << committed.load());
    BOOST_CHECK(done());
  }).join();
}

BOOST_AUTO_TEST_CASE(a_mostly_free_heap_gives_back_its_empty_segments_in_few_calls) {
  // 48 MiB of 256 KiB blocks (a dozen segments, cut from a few reservations)
  // freed in order: once most of the heap is free, its empty segments go
  // back sorted by address, one madvise or munmap per run of adjacent
  // segments, not one per segment (a heap torn down at exit pays a few
  // calls). The bound counts every run the segments could form.
  std::thread([] {
    namespace d = engine::detail;
    const std::vector<void*> v = touch_large_blocks(kIdleBytes * 3 / 4);
    d::ThreadHeap* l = d::t_local;
    const std::uint32_t segments = l->segment_count;
    const std::uint64_t calls_before = d::g_os_purge_calls.load() + d::g_os_unmap_calls.load();
    for (void* p : v) engine::free(p);
    const std::uint64_t calls =
        d::g_os_purge_calls.load() + d::g_os_unmap_calls.load() - calls_before;
    BOOST_TEST_MESSAGE("segments " << segments << " left " << l->segment_count << " calls " << calls);
    BOOST_CHECK_GE(segments, 10u);
    BOOST_CHECK_LT(l->segment_count, segments / 2);
    BOOST_CHECK_LE(calls, 8u);
  }).join();
}

BOOST_AUTO_TEST_CASE(rss_falls_after_an_idle_period_for_exited_threads_and_huge_blocks) {
  // A thread holds 24 MiB, touches 64 MiB, frees those and exits: its
  // ThreadHeap goes idle with the slices still dirty (not most of its heap,
  // and no purge at exit). A 64 MiB huge block freed goes to the huge cache.
  // Both are given back by the purge tick of the thread that goes on
  // calling lightly (the huge cache after kHugeCacheTtlMs). The ballast is
  // freed from here afterwards (cross-thread frees into the idle heap).
  auto& committed = engine::detail::g_default_heap.committed;
  auto& mapped = engine::detail::g_os_mapped;
  const std::size_t base = rss_bytes();
  const std::size_t base_committed = committed.load();
  std::vector<void*> ballast;
  std::thread([&ballast] {
    ballast = touch_large_blocks(kBallastBytes);
    const std::vector<void*> v = touch_large_blocks(kIdleBytes);
    for (void* p : v) engine::free(p);
  }).join();
  const std::size_t live = base_committed + kBallastBytes;
  const bool kept = committed.load() > live + kIdleBytes / 2;  // not purged at exit
  void* huge = engine::alloc(kIdleBytes);
  std::memset(huge, 1, kIdleBytes);
  const std::size_t peak = rss_bytes();
  const std::size_t peak_mapped = mapped.load();
  engine::free(huge);
  auto done = [&] {
    return committed.load() <= live + kIdleBytes / 4 &&
           mapped.load() + kIdleBytes / 2 <= peak_mapped &&
           (!kRssFollows || rss_bytes() <= base + kBallastBytes + kIdleBytes / 4);
  };
  idle_lightly_until(done, 5000);
  BOOST_TEST_MESSAGE("rss base " << base << " peak " << peak << " after idling " << rss_bytes());
  BOOST_CHECK(kept);
  BOOST_CHECK(done());
  for (void* p : ballast) engine::free(p);
}

BOOST_AUTO_TEST_CASE(freed_blocks_are_reused_before_fresh_memory) {
  // Several pages of one class, every second block freed: the next
  // allocations of that class come from the freed blocks (no fresh carving
  // while older pages have free blocks), whichever page is at the front.
  std::thread([] {
    constexpr std::size_t kCount = 6000;
    std::vector<void*> blocks(kCount);
    for (void*& p : blocks) p = engine::alloc(48);
    std::vector<void*> freed;
    for (std::size_t i = 0; i < kCount; i += 2) {
      freed.push_back(blocks[i]);
      engine::free(blocks[i]);
      blocks[i] = nullptr;
    }
    std::sort(freed.begin(), freed.end());
    std::size_t reused = 0;
    std::vector<void*> again(freed.size());
    for (void*& p : again) {
      p = engine::alloc(48);
      reused += std::binary_search(freed.begin(), freed.end(), p) ? 1 : 0;
    }
    BOOST_CHECK_GE(reused, freed.size() * 9 / 10);
    for (void* p : again) engine::free(p);
    for (void* p : blocks) engine::free(p);
  }).join();
}

BOOST_AUTO_TEST_CASE(alloc_zeroed_is_zero_even_on_reused_memory) {
  for (std::size_t size : {std::size_t{1}, std::size_t{100}, std::size_t{5000},
                           std::size_t{70000}, std::size_t{1} << 20, std::size_t{3} << 20}) {
    // Dirty a block of this size, free it, ask for zeros (likely the same memory).
    void* d = engine::alloc(size);
    BOOST_REQUIRE(d != nullptr);
    std::memset(d, 0xAB, size);
    engine::free(d);
    auto* z = static_cast<const unsigned char*>(engine::alloc_zeroed(size));
    BOOST_REQUIRE(z != nullptr);
    BOOST_CHECK_EQUAL(reinterpret_cast<std::uintptr_t>(z) % 16, 0u);
    BOOST_CHECK_GE(engine::usable_size(z), size);
    bool zero = true;
    for (std::size_t i = 0; i < size; ++i) zero &= z[i] == 0;
    BOOST_CHECK_MESSAGE(zero, "alloc_zeroed(" << size << ") has non-zero bytes");
    engine::free(const_cast<unsigned char*>(z));
  }
}

BOOST_AUTO_TEST_CASE(alloc_zeroed_of_fresh_memory_is_not_touched) {
  // 96 MiB of zeros from a new mapping: nothing is written, so RSS barely moves
  // (a cached mapping is reused only if it fits; only its old part is cleared).
  const std::size_t size = std::size_t{96} << 20;
  alloy::Heap::collect_default();  // no cached huge mapping to reuse
  const std::size_t before = rss_bytes();
  auto* z = static_cast<unsigned char*>(engine::alloc_zeroed(size));
  BOOST_REQUIRE(z != nullptr);
  const std::size_t after = rss_bytes();
  BOOST_CHECK_LT(after > before ? after - before : 0, std::size_t{16} << 20);
  BOOST_CHECK_EQUAL(z[0], 0);
  BOOST_CHECK_EQUAL(z[size / 2], 0);
  BOOST_CHECK_EQUAL(z[size - 1], 0);
  engine::free(z);
}

BOOST_AUTO_TEST_CASE(large_blocks_grow_in_place_into_free_slices) {
  std::thread([] {
    // A fresh ThreadHeap: the slices after the first large block are free.
    auto* p = static_cast<unsigned char*>(engine::alloc(100000));
    BOOST_REQUIRE(p != nullptr);
    fill(p, 100000, 9);
    const bool grew = engine::resize_in_place(p, 700000);
    if (grew) {
      BOOST_CHECK_GE(engine::usable_size(p), 700000u);
      BOOST_CHECK(check(p, 100000, 9));
      std::memset(p + 100000, 0x5A, 600000);
      // The grown block and a new large block do not overlap.
      auto* q = static_cast<unsigned char*>(engine::alloc(300000));
      BOOST_REQUIRE(q != nullptr);
      BOOST_CHECK(q + 300000 <= p || q >= p + 700000);
      engine::free(q);
    }
    // realloc keeps growing it (in place or moved), contents intact.
    std::size_t n = grew ? 700000 : 100000;
    if (!grew) fill(p, n, 9);
    auto* r = static_cast<unsigned char*>(engine::realloc(p, 1500000));
    BOOST_REQUIRE(r != nullptr);
    BOOST_CHECK(check(r, 100000, 9));
    BOOST_CHECK_GE(engine::usable_size(r), 1500000u);
    engine::free(r);
    BOOST_TEST_MESSAGE("large block grew in place: " << grew);
  }).join();
}

BOOST_AUTO_TEST_CASE(resize_in_place_within_usable_and_huge_growth) {
  void* p = engine::alloc(100);
  BOOST_CHECK(engine::resize_in_place(p, engine::usable_size(p)));
  BOOST_CHECK(!engine::resize_in_place(p, 1 << 20));
  engine::free(p);
  void* h = engine::alloc(std::size_t{5} << 20);
  fill(h, std::size_t{5} << 20, 1);
  if (engine::resize_in_place(h, std::size_t{30} << 20)) {
    BOOST_CHECK_GE(engine::usable_size(h), std::size_t{30} << 20);
  }
  BOOST_CHECK(check(h, std::size_t{5} << 20, 1));
  engine::free(h);
}

BOOST_AUTO_TEST_CASE(owns_rejects_foreign_pointers) {
  int local = 0;
  void* m = std::malloc(64);
  BOOST_CHECK(!engine::owns(&local));
  BOOST_CHECK(!engine::owns(m));
  std::free(m);
  void* p = engine::alloc(64);
  void* h = engine::alloc(std::size_t{6} << 20);
  BOOST_CHECK(engine::owns(p));
  BOOST_CHECK(engine::owns(h));
  BOOST_CHECK(engine::owns(static_cast<char*>(h) + (std::size_t{5} << 20)));
  engine::free(p);
  engine::free(h);
}

BOOST_AUTO_TEST_CASE(huge_loop_reuses_mappings) {
  // 5..25 MiB alloc/free loop: the huge cache keeps the mapping, so the
  // process's mapped memory stays bounded and contents work every time.
  for (int i = 0; i < 40; ++i) {
    const std::size_t n = (std::size_t{5} + static_cast<std::size_t>(i * 7) % 21) << 20;
    auto* p = static_cast<char*>(engine::alloc(n));
    BOOST_REQUIRE(p != nullptr);
    p[0] = 1;
    p[n - 1] = 2;
    BOOST_CHECK_EQUAL(p[n - 1], 2);
    engine::free(p);
  }
}

BOOST_AUTO_TEST_CASE(rss_falls_after_collect) {
  alloy::Heap::collect_default();
  const std::size_t before = rss_bytes();
  std::vector<void*> v;
  for (int i = 0; i < 200000; ++i) {  // ~50 MiB of 256-byte blocks
    void* p = engine::alloc(256);
    std::memset(p, 1, 256);
    v.push_back(p);
  }
  for (int i = 0; i < 40; ++i) {  // and 40 large blocks
    void* p = engine::alloc(300000);
    std::memset(p, 1, 300000);
    v.push_back(p);
  }
  const std::size_t peak = rss_bytes();
  for (void* p : v) engine::free(p);
  alloy::Heap::collect_default();
  const std::size_t after = rss_bytes();
  BOOST_TEST_MESSAGE("rss before " << before << " peak " << peak << " after " << after);
  BOOST_CHECK_GT(peak, before + (std::size_t{40} << 20));
  BOOST_CHECK_LT(after, before + (std::size_t{12} << 20));
}

BOOST_AUTO_TEST_CASE(eager_purge_returns_memory_without_collect) {
  engine::set_eager_purge(true);
  std::vector<void*> v;
  for (int i = 0; i < 20000; ++i) v.push_back(engine::alloc(3000));
  for (void* p : v) engine::free(p);
  engine::set_eager_purge(false);
  void* p = engine::alloc(3000);  // still usable
  BOOST_CHECK(p != nullptr);
  engine::free(p);
}

#if !defined(ALLOY_HAVE_TSAN)
BOOST_AUTO_TEST_CASE(fork_while_another_thread_allocates) {
  std::atomic<bool> stop{false};
  std::thread hammer([&] {
    std::vector<void*> v;
    while (!stop.load()) {
      for (int i = 0; i < 100; ++i) v.push_back(engine::alloc(16 + i));
      for (void* p : v) engine::free(p);
      v.clear();
    }
  });
  for (int round = 0; round < 5; ++round) {
    const pid_t pid = fork();
    BOOST_REQUIRE(pid >= 0);
    if (pid == 0) {
      void* ps[100];
      for (int i = 0; i < 100; ++i) ps[i] = engine::alloc(32 * (i + 1));
      for (void* p : ps) engine::free(p);
#if !defined(ALLOY_HAVE_ASAN)
      // Not under ASan: its own malloc (std::thread's state) may be locked
      // by the hammer thread at fork time and would hang the child.
      std::thread t([] { engine::free(engine::alloc(100)); });
      t.join();
#endif
      _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    BOOST_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  stop = true;
  hammer.join();
}
#endif

BOOST_AUTO_TEST_CASE(write_stats_writes_text) {
  int fds[2];
  BOOST_REQUIRE(pipe(fds) == 0);
  engine::write_stats(fds[1]);
  close(fds[1]);
  char buf[2048];
  const ssize_t n = read(fds[0], buf, sizeof buf);
  close(fds[0]);
  BOOST_CHECK_GT(n, 20);
  BOOST_CHECK(std::string(buf, static_cast<std::size_t>(n)).find("committed") != std::string::npos);
}

#if !defined(NDEBUG)
BOOST_AUTO_TEST_CASE(wrong_sized_free_is_reported_not_forwarded) {
  void* p = engine::alloc(32);
  fill(p, 32, 4);
  engine::free_sized(p, 4096);  // reported on stderr, block stays live
  BOOST_CHECK(check(p, 32, 4));
  engine::free_sized(p, 32);
}
#endif

#if defined(ALLOY_HAVE_ASAN)
#include <sanitizer/asan_interface.h>
BOOST_AUTO_TEST_CASE(freed_blocks_are_poisoned_for_asan) {
  auto* p = static_cast<char*>(engine::alloc(64));
  p[63] = 1;
  BOOST_CHECK(!__asan_address_is_poisoned(p + 63));
  engine::free(p);
  BOOST_CHECK(__asan_address_is_poisoned(p + 63));  // a use after free would be caught
  auto* q = static_cast<char*>(engine::alloc(64));
  BOOST_CHECK(!__asan_address_is_poisoned(q + 63));
  std::thread t([q] { engine::free(q); });  // cross-thread free poisons too
  t.join();
  BOOST_CHECK(__asan_address_is_poisoned(q + 63));
}
#endif

// The validator itself: a free list pointing outside its page (what a
// use-after-free write does to the link) is found and named.
BOOST_AUTO_TEST_CASE(validator_finds_a_corrupted_free_list) {
  auto* keep = static_cast<std::uintptr_t*>(engine::alloc(48));
  auto* freed = static_cast<std::uintptr_t*>(engine::alloc(48));
  BOOST_REQUIRE(keep != nullptr && freed != nullptr);
  engine::free(freed);
#if defined(ALLOY_HAVE_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(freed, sizeof(std::uintptr_t));
#endif
  const std::uintptr_t link = freed[0];
  freed[0] = reinterpret_cast<std::uintptr_t>(keep) + 1;  // not a block start
  engine::detail::Violation v;
  const bool ok = engine::detail::validate_current_thread(&v);
  freed[0] = link;
  BOOST_TEST(!ok);
  BOOST_TEST(std::string(v.what ? v.what : "") ==
             "free list holds a pointer that is not a carved block of its page");
  BOOST_TEST(engine::detail::validate_current_thread(&v));
  engine::free(keep);
}

BOOST_AUTO_TEST_CASE(a_freed_large_block_span_is_reused_whole_and_flushed_by_collect) {
  // A large block's span freed goes to its thread's span cache: the next
  // block of the same slice count gets it back (same address), a pointer
  // into a cached span is no live block, the invariants hold with spans
  // cached, and collect hands them back to the free-span bins.
  std::thread([] {
    namespace d = engine::detail;
    constexpr std::size_t kSize = 3 * d::kSliceSize - 512;
    void* keep = engine::alloc(kSize);  // the heap is not mostly free
    void* p = engine::alloc(kSize);
    BOOST_REQUIRE(p != nullptr && keep != nullptr);
    fill(p, kSize, 7);
    engine::free(p);
    d::ThreadHeap* l = d::t_local;
    BOOST_TEST(l->span_cache_bins == (1u << 3));
    BOOST_TEST(engine::check_block(p) != nullptr);  // a second free would be refused
    d::Violation v;
    BOOST_TEST(d::validate_current_thread(&v), (v.what ? v.what : ""));
    void* q = engine::alloc(kSize);
    BOOST_TEST(q == p);
    BOOST_TEST(engine::check_block(q) == nullptr);
    fill(q, kSize, 9);
    BOOST_TEST(check(q, kSize, 9));
    engine::free(q);
    engine::collect();
    BOOST_TEST(l->span_cache_bins == 0u);
    BOOST_TEST(d::validate_current_thread(&v), (v.what ? v.what : ""));
    engine::free(keep);
  }).join();
}

BOOST_AUTO_TEST_SUITE_END()
