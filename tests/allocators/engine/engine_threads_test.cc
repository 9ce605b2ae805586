// alloy::engine across threads: cross-thread frees, thread exit with live
// blocks, ThreadHeap adoption, concurrent churn.
#define BOOST_TEST_MODULE engine_threads
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "alloy/allocators/engine/engine.h"
#include "alloy/allocators/engine/heap.h"
#include "alloy/allocators/engine/internal.h"
#include "alloy/base/config.h"
#include "tests/support/capture_stderr.h"
#include "tests/support/pattern.h"

#if defined(ALLOY_HAVE_ASAN)
#include <sanitizer/asan_interface.h>
#endif

namespace engine = alloy::engine;

namespace {
struct Tagged {
  void* p;
  std::size_t n;
  std::uint8_t tag;
};
void fill(const Tagged& t) { alloy::testing::fill(t.p, t.n, t.tag); }
bool check(const Tagged& t) { return alloy::testing::intact(t.p, t.n, t.tag); }
}  // namespace

BOOST_AUTO_TEST_CASE(four_threads_free_each_others_blocks) {
  constexpr int kThreads = 4;
#if defined(ALLOY_HAVE_TSAN)
  constexpr int kRounds = 8;
#else
  constexpr int kRounds = 30;
#endif
  constexpr int kPerRound = 2000;
  std::mutex mu[kThreads];
  std::vector<Tagged> inbox[kThreads];
  std::atomic<int> bad{0};
  std::atomic<int> done{0};
  auto worker = [&](int id) {
    std::mt19937 rng(static_cast<unsigned>(id));
    for (int r = 0; r < kRounds; ++r) {
      std::vector<Tagged> out;
      for (int i = 0; i < kPerRound; ++i) {
        const unsigned k = rng() % 100;
        std::size_t n = k < 90 ? 1 + rng() % 512 : k < 99 ? 1 + rng() % 40000 : 1 + rng() % 600000;
        Tagged t{engine::alloc(n), n, static_cast<std::uint8_t>(id * 50 + r)};
        if (t.p == nullptr) { ++bad; continue; }
        fill(t);
        out.push_back(t);
      }
      {
        std::lock_guard<std::mutex> g(mu[(id + 1) % kThreads]);
        for (auto& t : out) inbox[(id + 1) % kThreads].push_back(t);
      }
      std::vector<Tagged> mine;
      {
        std::lock_guard<std::mutex> g(mu[id]);
        mine.swap(inbox[id]);
      }
      for (auto& t : mine) {
        if (!check(t)) ++bad;
        engine::free(t.p);
      }
      // This thread's ThreadHeap after each round, with other threads'
      // frees of its blocks in flight (validate.cc).
      engine::detail::Violation v;
      if (!engine::detail::validate_current_thread(&v)) {
        ++bad;
        std::fprintf(stderr, "thread %d round %d: %s at %p\n", id, r, v.what, v.where);
      }
    }
    done.fetch_add(1);
    // Keep allocating until everyone is done so pages parked as full get
    // announced frees back.
    while (done.load() < kThreads) {
      std::vector<Tagged> mine;
      {
        std::lock_guard<std::mutex> g(mu[id]);
        mine.swap(inbox[id]);
      }
      for (auto& t : mine) {
        if (!check(t)) ++bad;
        engine::free(t.p);
      }
      engine::free(engine::alloc(64));
      std::this_thread::yield();
    }
  };
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; ++i) ts.emplace_back(worker, i);
  for (auto& t : ts) t.join();
  for (auto& box : inbox) {
    for (auto& t : box) {
      if (!check(t)) ++bad;
      engine::free(t.p);
    }
  }
  BOOST_CHECK_EQUAL(bad.load(), 0);
}

BOOST_AUTO_TEST_CASE(thread_exit_with_live_blocks_hands_pages_over) {
  std::vector<Tagged> left;
  for (int round = 0; round < 4; ++round) {
    std::thread t([&] {
      for (int i = 0; i < 5000; ++i) {
        const std::size_t n = 8 + static_cast<std::size_t>(i % 700);
        Tagged b{engine::alloc(n), n, static_cast<std::uint8_t>(i)};
        fill(b);
        left.push_back(b);
      }
      void* big = engine::alloc(500000);  // a large block, freed later elsewhere
      left.push_back(Tagged{big, 500000, 7});
      fill(left.back());
    });
    t.join();
  }
  // The threads are gone; their blocks are intact and freeable from here.
  for (auto& b : left) {
    BOOST_REQUIRE(check(b));
    engine::free(b.p);
  }
  // A new thread adopts an idle ThreadHeap and allocates normally.
  std::thread t2([] {
    std::vector<void*> v;
    for (int i = 0; i < 10000; ++i) v.push_back(engine::alloc(48));
    for (void* p : v) engine::free(p);
  });
  t2.join();
  alloy::Heap::collect_default();
}

BOOST_AUTO_TEST_CASE(producer_consumer_memory_stays_bounded) {
#if defined(ALLOY_HAVE_TSAN)
  constexpr int kItems = 150000;  // TSan runs this ~20x slower
#else
  constexpr int kItems = 1000000;  // 64 MiB if the producer never reused a block
#endif
  const std::size_t before = engine::detail::g_default_heap.committed.load();
  std::size_t max_committed = before;
  std::vector<void*> ring(1024, nullptr);
  std::atomic<std::uint64_t> head{0}, tail{0};
  std::thread producer([&] {
    for (int i = 0; i < kItems; ++i) {
      while (head.load(std::memory_order_acquire) - tail.load(std::memory_order_acquire) >= ring.size()) {
        std::this_thread::yield();
      }
      void* p = engine::alloc(64);
      std::memset(p, 0x5a, 64);
      if (i % 4096 == 0) {
        max_committed = std::max(max_committed, engine::detail::g_default_heap.committed.load());
      }
      ring[head.load(std::memory_order_relaxed) % ring.size()] = p;
      head.fetch_add(1, std::memory_order_release);
    }
  });
  std::thread consumer([&] {
    for (int i = 0; i < kItems; ++i) {
      while (tail.load(std::memory_order_acquire) == head.load(std::memory_order_acquire)) {
        std::this_thread::yield();
      }
      void* p = ring[tail.load(std::memory_order_relaxed) % ring.size()];
      if (static_cast<unsigned char*>(p)[63] != 0x5a) std::abort();
      engine::free(p);
      tail.fetch_add(1, std::memory_order_release);
    }
  });
  producer.join();
  consumer.join();
  // At most ~1024 blocks were live at once: the producer reused the blocks
  // the consumer freed instead of taking 64 MiB of fresh pages.
  BOOST_CHECK_LT(max_committed - before, std::size_t{kItems} * 64 / 4);
}

BOOST_AUTO_TEST_CASE(memory_of_exited_threads_is_reused_without_collect) {
  engine::free(engine::alloc(16));  // this thread has its own ThreadHeap: no adoption below
  alloy::Heap::collect_default();
  std::vector<void*> blocks;
  std::thread t([&] {
    for (int i = 0; i < 40000; ++i) blocks.push_back(engine::alloc(1000));  // ~40 MiB
  });
  t.join();
  for (void* p : blocks) engine::free(p);  // into the exited thread's pages
  const std::size_t before = engine::detail::g_default_heap.committed.load();
  std::vector<void*> mine;
  for (int i = 0; i < 40000; ++i) mine.push_back(engine::alloc(1000));
  const std::size_t after = engine::detail::g_default_heap.committed.load();
  // The exited thread's empty segments went back before fresh ones were taken.
  BOOST_TEST_MESSAGE("committed before " << before << " after " << after);
  BOOST_CHECK_LT(after, before + (std::size_t{16} << 20));
  for (void* p : mine) engine::free(p);
}

BOOST_AUTO_TEST_CASE(many_short_threads_do_not_leak_locals) {
  for (int i = 0; i < 64; ++i) {
    std::thread t([] {
      void* p = engine::alloc(100);
      engine::free(p);
    });
    t.join();
  }
  std::size_t n = 0;
  for (auto* l = engine::detail::g_default_heap.idle; l != nullptr; l = l->pool_next) ++n;
  BOOST_CHECK_LE(n, 8u);  // exited threads' ThreadHeaps are reused, not accumulated
}

// A use-after-free write to a block on a page's cross-thread free list (its
// link now points outside the page) is reported when the owner collects the
// list, and the link is not followed: the engine stays usable and never
// hands out the stray address. (Errors report instead of aborting here.)
BOOST_AUTO_TEST_CASE(corrupted_cross_thread_free_list_is_reported_not_followed) {
  engine::set_abort_on_error(false);
  auto* b0 = static_cast<std::uintptr_t*>(engine::alloc(48));
  auto* b1 = static_cast<std::uintptr_t*>(engine::alloc(48));
  auto* b2 = static_cast<std::uintptr_t*>(engine::alloc(48));
  BOOST_REQUIRE(b0 != nullptr && b1 != nullptr && b2 != nullptr);
  std::thread([&] {
    engine::free(b1);
    engine::free(b2);  // b2's link is b1 now
  }).join();
#if defined(ALLOY_HAVE_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(b2, sizeof(std::uintptr_t));
#endif
  std::uintptr_t outside[8] = {};
  b2[0] = reinterpret_cast<std::uintptr_t>(outside);  // decodes to garbage
  std::string text;
  {
    alloy::testing::CaptureStderr err;
    engine::collect();
    text = err.text();
  }
  BOOST_TEST(text.find("corrupted free list") != std::string::npos, text);
  std::vector<void*> again;
  for (int i = 0; i < 200; ++i) {
    void* p = engine::alloc(48);
    BOOST_REQUIRE(p != nullptr);
    BOOST_TEST((p < static_cast<void*>(outside) || p >= static_cast<void*>(outside + 8)));
    again.push_back(p);
  }
  for (void* p : again) engine::free(p);
  engine::free(b0);
  engine::set_abort_on_error(true);
}
