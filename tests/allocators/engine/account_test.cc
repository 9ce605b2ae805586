// Memory accounts (allocators/engine/account.h) through handles, the
// charging wrapper and AccountScope over alloy::engine::alloc (the malloc
// adapter's scoped malloc/new are in tests/adapters/malloc/account_scope_test.cc).
// Runs in every configuration.
#define BOOST_TEST_MODULE account
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "alloy/allocators/engine/account.h"
#include "alloy/allocators/engine/engine.h"
#include "alloy/allocators/engine/heap.h"
#include "alloy/allocators/page_allocator.h"

namespace {

// A fresh top-level account for one test, destroyed at the end.
struct Fresh {
  alloy::Account a;
  explicit Fresh(const char* name, alloy::AccountOptions o = {})
      : a(*alloy::Account::root().create(name, o)) {}
  ~Fresh() { a.destroy(); }
};

std::size_t rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  long pages = 0, resident = 0;
  if (f != nullptr) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<std::size_t>(resident) * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace

BOOST_AUTO_TEST_CASE(handle_charges_usable_bytes_to_every_ancestor) {
  Fresh top("t_rollup");
  alloy::Account mid = *top.a.create("mid");
  alloy::Account leaf = *mid.create("leaf");
  alloy::Allocator h = leaf.allocator();
  void* p = h.raw_alloc(100, alloy::Alignment::of<std::max_align_t>(), 0);
  BOOST_REQUIRE(p != nullptr);
  const std::size_t n = alloy::engine::usable_size(p);  // 112: the size class
  for (alloy::Account x : {leaf, mid, top.a}) {
    BOOST_TEST(x.bytes() == n);
    BOOST_TEST(x.blocks() == 1u);
    BOOST_TEST(x.peak() == n);
  }
  BOOST_TEST(alloy::Account::root().bytes() >= n);
  h.raw_free({static_cast<std::byte*>(p), 100}, alloy::Alignment::of<std::max_align_t>(), 0);
  for (alloy::Account x : {leaf, mid, top.a}) {
    BOOST_TEST(x.bytes() == 0u);
    BOOST_TEST(x.blocks() == 0u);
    BOOST_TEST(x.peak() == n);
  }
  BOOST_TEST(leaf.path() == "t_rollup/mid/leaf");
}

// 4 threads allocate in their own leaves; each block is freed by another
// thread (the next one), through engine::free and Heap::free alternately.
BOOST_AUTO_TEST_CASE(rollup_exact_across_four_threads_with_cross_thread_frees) {
  Fresh top("t_threads");
  constexpr int kThreads = 4;
  constexpr int kBlocks = 4000;
  alloy::Account leaves[kThreads];
  for (int t = 0; t < kThreads; ++t) leaves[t] = *top.a.create("w" + std::to_string(t));
  std::vector<std::atomic<void*>> slots(kThreads * kBlocks);
  std::atomic<int> ready{0};
  std::atomic<int> failed{0};  // Boost.Test is not for use from several threads
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      alloy::Allocator h = leaves[t].allocator();
      for (int i = 0; i < kBlocks; ++i) {
        const std::size_t size = 8 + static_cast<std::size_t>((i * 37 + t) % 3000);
        void* p = h.raw_alloc(size, alloy::Alignment::of<std::max_align_t>(), 0);
        if (p == nullptr) failed.fetch_add(1);
        slots[t * kBlocks + i].store(p, std::memory_order_release);
      }
      ready.fetch_add(1);
      while (ready.load() < kThreads) std::this_thread::yield();
      // Free the blocks of the next thread's account, half of them.
      const int victim = (t + 1) % kThreads;
      for (int i = 0; i < kBlocks; i += 2) {
        void* p = slots[victim * kBlocks + i].exchange(nullptr);
        if (i % 4 == 0) alloy::engine::free(p); else alloy::Heap::free(p);
      }
    });
  }
  for (auto& th : threads) th.join();
  BOOST_TEST(failed.load() == 0);
  std::size_t total = 0, blocks = 0;
  for (int t = 0; t < kThreads; ++t) {
    std::size_t bytes = 0;
    std::size_t n = 0;
    for (int i = 0; i < kBlocks; ++i) {
      if (void* p = slots[t * kBlocks + i].load()) {
        bytes += alloy::engine::usable_size(p);
        ++n;
      }
    }
    BOOST_TEST(leaves[t].bytes() == bytes);
    BOOST_TEST(leaves[t].blocks() == n);
    total += bytes;
    blocks += n;
  }
  BOOST_TEST(top.a.bytes() == total);
  BOOST_TEST(top.a.blocks() == blocks);
  for (auto& s : slots) alloy::engine::free(s.exchange(nullptr));
  BOOST_TEST(top.a.bytes() == 0u);
  BOOST_TEST(top.a.blocks() == 0u);
}

// A limit at each level of a 3-level tree: 64-byte blocks (an exact size
// class), limit 1000 bytes at one level; the 16th block is refused, exactly,
// and the refusal names that level.
BOOST_AUTO_TEST_CASE(a_limit_at_each_level_refuses_exactly) {
  for (int level = 0; level < 3; ++level) {
    alloy::AccountOptions lim{.limit = 1000};
    Fresh top("t_limits", level == 0 ? lim : alloy::AccountOptions{});
    alloy::Account mid = *top.a.create("mid", level == 1 ? lim : alloy::AccountOptions{});
    alloy::Account leaf = *mid.create("leaf", level == 2 ? lim : alloy::AccountOptions{});
    alloy::Allocator h = leaf.allocator();
    std::vector<void*> got;
    for (int i = 0; i < 15; ++i) {
      void* p = h.raw_alloc(64, alloy::Alignment::of<std::max_align_t>(), 0);
      BOOST_REQUIRE(p != nullptr);
      got.push_back(p);
    }
    BOOST_TEST(leaf.bytes() == 960u);
    BOOST_TEST(h.raw_alloc(64, alloy::Alignment::of<std::max_align_t>(), 0) == nullptr);
    auto r = h.alloc<std::byte>(64);
    BOOST_TEST(!r);
    BOOST_TEST((r.error() == alloy::AllocError::kOutOfMemory));
    const alloy::AccountRefusal* why = alloy::last_account_refusal();
    BOOST_REQUIRE(why != nullptr);
    const char* names[] = {"t_limits", "t_limits/mid", "t_limits/mid/leaf"};
    BOOST_TEST(std::string(why->account) == names[level]);
    BOOST_TEST(why->used == 960u);
    BOOST_TEST(why->limit == 1000u);
    BOOST_TEST(why->request == 64u);
    BOOST_TEST(why->message() == std::string("memory limit exceeded: account ") + names[level] +
                                     " (used 960 bytes, limit 1000 bytes) refused 64 bytes");
    // Nothing was charged by the refusals, anywhere on the path.
    for (alloy::Account x : {leaf, mid, top.a}) BOOST_TEST(x.bytes() == 960u);
    alloy::Account limited = level == 0 ? top.a : level == 1 ? mid : leaf;
    BOOST_TEST(limited.refusals() == 2u);
    // A 40-byte block (class 40) still fits: 1000 is the exact bound.
    void* p40 = h.raw_alloc(40, alloy::Alignment::of<std::uint64_t>(), 0);
    BOOST_TEST(p40 != nullptr);
    BOOST_TEST(leaf.bytes() == 1000u);
    alloy::Heap::free(p40);
    for (void* p : got) alloy::Heap::free(p);
    BOOST_TEST(top.a.bytes() == 0u);
  }
}

BOOST_AUTO_TEST_CASE(scope_routes_engine_alloc_and_nests) {
  Fresh outer("t_scope_outer");
  Fresh inner("t_scope_inner");
  void* a;
  void* b;
  void* c;
  void* z;
  {
    alloy::AccountScope s1(outer.a);
    a = alloy::engine::alloc(200);
    {
      alloy::AccountScope s2(inner.a);
      b = alloy::engine::alloc(3000);
      z = alloy::engine::alloc_zeroed(100000);  // a large block, zeroed
    }
    c = alloy::engine::alloc_aligned(500, 256);
  }
  void* d = alloy::engine::alloc(200);  // unscoped again: the default heap
  BOOST_TEST(outer.a.blocks() == 2u);
  BOOST_TEST(outer.a.bytes() == alloy::engine::usable_size(a) + alloy::engine::usable_size(c));
  BOOST_TEST(inner.a.blocks() == 2u);
  BOOST_TEST(inner.a.bytes() == alloy::engine::usable_size(b) + alloy::engine::usable_size(z));
  BOOST_TEST(reinterpret_cast<std::uintptr_t>(c) % 256 == 0u);
  bool zero = true;
  for (std::size_t i = 0; i < 100000; ++i) zero = zero && static_cast<char*>(z)[i] == 0;
  BOOST_TEST(zero);
  for (void* p : {a, b, c, d, z}) alloy::engine::free(p);
  BOOST_TEST(outer.a.bytes() == 0u);
  BOOST_TEST(inner.a.bytes() == 0u);
}

BOOST_AUTO_TEST_CASE(scope_past_its_limit_returns_null_and_thread_goes_on) {
  Fresh acct("t_scope_limit", {.limit = 64 << 10});
  std::vector<void*> got;
  {
    alloy::AccountScope s(acct.a);
    void* p;
    while ((p = alloy::engine::alloc(1024)) != nullptr) got.push_back(p);
    BOOST_TEST(got.size() == 64u);
    BOOST_TEST(alloy::engine::alloc(1 << 20) == nullptr);
    BOOST_TEST(std::string(alloy::last_account_refusal()->account) == "t_scope_limit");
    alloy::engine::free(got.back());
    got.pop_back();
    p = alloy::engine::alloc(1000);  // room again
    BOOST_TEST(p != nullptr);
    got.push_back(p);
  }
  void* q = alloy::engine::alloc(1 << 20);  // outside the scope: no limit
  BOOST_TEST(q != nullptr);
  alloy::engine::free(q);
  for (void* p : got) alloy::engine::free(p);
  BOOST_TEST(acct.a.bytes() == 0u);
}

// A block allocated in a scope, freed by another thread after the scope
// ended (engine::free, Heap::free, realloc that moves it), credits the
// account that holds it, not the freeing thread's scope.
BOOST_AUTO_TEST_CASE(free_after_scope_from_another_thread_credits_the_right_account) {
  Fresh mine("t_after_mine");
  Fresh other("t_after_other");
  void* p[3];
  {
    alloy::AccountScope s(mine.a);
    p[0] = alloy::engine::alloc(100);
    p[1] = alloy::engine::alloc(70000);
    p[2] = alloy::engine::alloc(5 << 20);
  }
  const std::size_t held = mine.a.bytes();
  BOOST_TEST(held == alloy::engine::usable_size(p[0]) + alloy::engine::usable_size(p[1]) +
                         alloy::engine::usable_size(p[2]));
  std::thread t([&] {
    alloy::AccountScope s(other.a);  // the freeing thread is in another account
    alloy::engine::free(p[0]);
    alloy::Heap::free(p[2]);
    // realloc keeps the block in its account: moved (large blocks of an
    // account do not grow in place), charged anew, old credit.
    void* q = alloy::engine::realloc(p[1], 200000);
    BOOST_REQUIRE(q != nullptr);
    p[1] = q;
  });
  t.join();
  BOOST_TEST(other.a.bytes() == 0u);
  BOOST_TEST(mine.a.blocks() == 1u);
  BOOST_TEST(mine.a.bytes() == alloy::engine::usable_size(p[1]));
  alloy::engine::free(p[1]);
  BOOST_TEST(mine.a.bytes() == 0u);
  BOOST_TEST(other.a.bytes() == 0u);
}

BOOST_AUTO_TEST_CASE(reset_and_destroy_free_everything_and_keep_parents_exact) {
  Fresh top("t_reset");
  alloy::Account keep = *top.a.create("keep");
  alloy::Account gone = *top.a.create("gone");
  alloy::Account sub = *gone.create("sub");
  void* kept = keep.allocator().raw_alloc(1000, alloy::Alignment::of<std::max_align_t>(), 0);
  const std::size_t kept_bytes = alloy::engine::usable_size(kept);
  const std::size_t rss0 = rss_bytes();
  constexpr std::size_t kMiB = 1 << 20;
  for (alloy::Account a : {gone, sub}) {
    alloy::AccountScope s(a);
    for (int i = 0; i < 48; ++i) std::memset(alloy::engine::alloc(512 << 10), 1, 512 << 10);
    for (int i = 0; i < 4; ++i) std::memset(alloy::engine::alloc(3 * kMiB), 1, 3 * kMiB);
    for (int i = 0; i < 20000; ++i) std::memset(alloy::engine::alloc(100), 1, 100);
  }
  const std::size_t rss1 = rss_bytes();
  BOOST_TEST(rss1 > rss0 + 60 * kMiB);
  BOOST_TEST(top.a.bytes() == gone.bytes() + kept_bytes);
  BOOST_TEST(sub.bytes() > 30 * kMiB);
  gone.reset();
  BOOST_TEST(rss_bytes() + 60 * kMiB < rss1);  // the pages went back
  BOOST_TEST(gone.bytes() == 0u);
  BOOST_TEST(sub.bytes() == 0u);
  BOOST_TEST(sub.blocks() == 0u);
  BOOST_TEST(top.a.bytes() == kept_bytes);
  BOOST_TEST(top.a.blocks() == 1u);
  // The accounts stay usable after a reset.
  {
    alloy::AccountScope s(sub);
    void* p = alloy::engine::alloc(300);
    BOOST_REQUIRE(p != nullptr);
  }
  BOOST_TEST(top.a.bytes() == kept_bytes + sub.bytes());
  const std::size_t rss2 = rss_bytes();
  {
    alloy::AccountScope s(sub);
    for (int i = 0; i < 20; ++i) std::memset(alloy::engine::alloc(3 * kMiB), 1, 3 * kMiB);
  }
  BOOST_TEST(rss_bytes() > rss2 + 50 * kMiB);
  gone.destroy();
  BOOST_TEST(!gone);
  BOOST_TEST(rss_bytes() < rss2 + 10 * kMiB);
  BOOST_TEST(top.a.bytes() == kept_bytes);
  BOOST_TEST(top.a.blocks() == 1u);
  BOOST_TEST(!top.a.child("gone"));
  BOOST_TEST((top.a.child("keep") == keep));
  alloy::Heap::free(kept);
  BOOST_TEST(top.a.bytes() == 0u);
}

BOOST_AUTO_TEST_CASE(accounts_created_and_destroyed_while_other_threads_allocate) {
  Fresh top("t_churn", {.limit = std::size_t{1} << 30});
  std::atomic<bool> stop{false};
  alloy::Account steady[2] = {*top.a.create("steady0"), *top.a.create("steady1")};
  std::vector<std::thread> workers;
  std::atomic<std::size_t> live[2] = {0, 0};
  for (int t = 0; t < 2; ++t) {
    workers.emplace_back([&, t] {
      std::vector<void*> held(256, nullptr);
      unsigned x = 7u + static_cast<unsigned>(t);
      alloy::AccountScope s(steady[t]);
      while (!stop.load(std::memory_order_relaxed)) {
        x = x * 1103515245u + 12345u;
        void*& slot = held[(x >> 8) % held.size()];
        if (slot != nullptr) {
          alloy::engine::free(slot);
          slot = nullptr;
        } else {
          slot = alloy::engine::alloc((x >> 12) % 2000 + 1);
        }
      }
      std::size_t bytes = 0;
      for (void* p : held) bytes += p != nullptr ? alloy::engine::usable_size(p) : 0;
      live[t] = bytes;
      for (void*& p : held) {
        alloy::engine::free(p);
        p = nullptr;
      }
    });
  }
  for (int round = 0; round < 200; ++round) {
    alloy::Account r = *top.a.create("round" + std::to_string(round));
    alloy::Account c = *r.create("child");
    {
      alloy::AccountScope s(c);
      for (int i = 0; i < 50; ++i) (void)alloy::engine::alloc(64 + i);
    }
    BOOST_TEST(c.blocks() == 50u);
    r.destroy();
  }
  stop = true;
  for (auto& w : workers) w.join();
  BOOST_TEST(steady[0].bytes() == 0u);
  BOOST_TEST(steady[1].bytes() == 0u);
  BOOST_TEST(top.a.bytes() == 0u);
  BOOST_TEST(top.a.blocks() == 0u);
}

BOOST_AUTO_TEST_CASE(charging_wrapper_charges_any_child) {
  Fresh acct("t_wrap", {.limit = 10000});
  alloy::ChargingAllocator w(acct.a, alloy::page_allocator());
  alloy::Allocator h = w.allocator();
  auto a = h.alloc<char>(4000);
  BOOST_REQUIRE(a);
  BOOST_TEST(acct.a.bytes() <= 4000u);  // this thread's wrapper batch holds it until published
  alloy::Account::publish_thread();
  BOOST_TEST(acct.a.bytes() == 4000u);
  auto b = h.alloc<char>(7000);
  BOOST_TEST(!b);
  BOOST_TEST(std::string(alloy::last_account_refusal()->account) == "t_wrap");
  auto grown = h.realloc(*a, 9000);  // page allocator: remap, charged the difference
  BOOST_REQUIRE(grown);
  BOOST_TEST(acct.a.bytes() == 9000u);
  BOOST_TEST(acct.a.blocks() == 1u);
  BOOST_TEST(!h.realloc(*grown, 11000));  // over the limit: refused, block intact
  BOOST_TEST(acct.a.bytes() == 9000u);
  h.free(*grown);
  alloy::Account::publish_thread();
  BOOST_TEST(acct.a.bytes() == 0u);
  BOOST_TEST(acct.a.blocks() == 0u);
}

// ChargingAllocator batches per thread (32 KiB, never past the path's
// headroom): two threads charging siblings below one limit exceed it by at
// most one batch (the other thread's), none is refused while the true total
// is under the limit by more than a block, thread exit publishes, and the
// figures are exact once published; a destroyed account's batch is dropped.
BOOST_AUTO_TEST_CASE(wrapper_batches_exceed_a_shared_limit_by_at_most_the_stated_bound) {
  constexpr std::size_t kLimit = 1 << 20;
  constexpr std::size_t kBlock = 1000;
  Fresh parent("t_wrap_batch", {.limit = kLimit});
  alloy::Account kids[2] = {*parent.a.create("a"), *parent.a.create("b")};
  std::vector<void*> got[2];
  got[0].reserve(4096);
  got[1].reserve(4096);
  std::atomic<int> ready{0};
  std::atomic<std::size_t> peak_total{0};
  std::vector<std::thread> ts;
  const alloy::Alignment al = alloy::Alignment::of<std::max_align_t>();
  for (int t = 0; t < 2; ++t) {
    ts.emplace_back([&, t] {
      alloy::ChargingAllocator w(kids[t], alloy::Heap::default_allocator());
      ready.fetch_add(1);
      while (ready.load() < 2) std::this_thread::yield();
      while (void* p = w.allocator().raw_alloc(kBlock, al, 0)) got[t].push_back(p);
      // thread exit publishes this thread's batch
    });
  }
  for (auto& th : ts) th.join();
  const std::size_t total = (got[0].size() + got[1].size()) * kBlock;
  BOOST_TEST(parent.a.bytes() == total);
  BOOST_TEST(parent.a.blocks() == got[0].size() + got[1].size());
  BOOST_TEST(total <= kLimit + alloy::AccountScope::kBatchBytes);
  BOOST_TEST(total + kBlock > kLimit);
  BOOST_TEST(parent.a.peak() <= kLimit + alloy::AccountScope::kBatchBytes);
  for (int t = 0; t < 2; ++t) {
    alloy::ChargingAllocator w(kids[t], alloy::Heap::default_allocator());
    for (void* p : got[t]) w.allocator().raw_free({static_cast<std::byte*>(p), kBlock}, al, 0);
  }
  alloy::Account::publish_thread();
  BOOST_TEST(parent.a.bytes() == 0u);
  BOOST_TEST(parent.a.blocks() == 0u);
  // One thread alone is refused exactly at the limit.
  {
    alloy::ChargingAllocator w(kids[0], alloy::Heap::default_allocator());
    std::vector<void*> mine;
    while (void* p = w.allocator().raw_alloc(kBlock, al, 0)) mine.push_back(p);
    BOOST_TEST(mine.size() == kLimit / kBlock);
    for (void* p : mine) w.allocator().raw_free({static_cast<std::byte*>(p), kBlock}, al, 0);
  }
  // A batch naming a destroyed account: dropped, the parent stays exact.
  alloy::Account gone = *parent.a.create("gone");
  {
    alloy::ChargingAllocator w(gone, alloy::Heap::default_allocator());
    void* p = w.allocator().raw_alloc(kBlock, al, 0);
    w.allocator().raw_free({static_cast<std::byte*>(p), kBlock}, al, 0);
    void* q = w.allocator().raw_alloc(kBlock, al, 0);
    alloy::Account::publish_thread();
    w.allocator().raw_free({static_cast<std::byte*>(q), kBlock}, al, 0);  // a pending credit
  }
  gone.destroy();
  alloy::Account::publish_thread();
  BOOST_TEST(parent.a.bytes() == 0u);
  BOOST_TEST(parent.a.blocks() == 0u);
}

BOOST_AUTO_TEST_CASE(soft_limit_calls_back_once_per_crossing) {
  struct Seen {
    int calls = 0;
    std::size_t bytes = 0;
    std::string path;
  } seen;
  alloy::AccountOptions o;
  o.soft_limit = 1000;
  o.ctx = &seen;
  o.on_soft_limit = [](const alloy::AccountEvent& e, void* ctx) {
    auto* s = static_cast<Seen*>(ctx);
    ++s->calls;
    s->bytes = e.bytes;
    s->path = e.account->path();  // may allocate
  };
  Fresh acct("t_soft", o);
  alloy::Allocator h = acct.a.allocator();
  std::vector<void*> got;
  for (int i = 0; i < 30; ++i) got.push_back(h.raw_alloc(64, alloy::Alignment::of<std::max_align_t>(), 0));
  BOOST_TEST(seen.calls == 1);
  BOOST_TEST(seen.bytes == 1024u);
  BOOST_TEST(seen.path == "t_soft");
  for (void* p : got) alloy::Heap::free(p);
  got.clear();
  for (int i = 0; i < 30; ++i) got.push_back(h.raw_alloc(64, alloy::Alignment::of<std::max_align_t>(), 0));
  BOOST_TEST(seen.calls == 2);  // re-armed when it fell back under
  for (void* p : got) alloy::Heap::free(p);
}

BOOST_AUTO_TEST_CASE(reports_text_json_prometheus_and_snapshot) {
  Fresh top("t_report", {.limit = 1 << 20});
  BOOST_TEST(!top.a.create("req\"1").has_value());  // a quote is refused in names
  BOOST_TEST(!top.a.create("a/b").has_value());
  BOOST_TEST(top.a.create("r1").has_value());
  BOOST_TEST(!top.a.create("r1").has_value());  // duplicate
  top.a.child("r1").destroy();
  alloy::Account r1 = *top.a.create("r1", {.limit = 4096});
  alloy::Account r2 = *top.a.create("r2");
  void* p = r1.allocator().raw_alloc(64, alloy::Alignment::of<std::max_align_t>(), 0);
  void* q = r2.allocator().raw_alloc(128, alloy::Alignment::of<std::max_align_t>(), 0);
  BOOST_TEST(r1.allocator().raw_alloc(8000, alloy::Alignment::of<std::max_align_t>(), 0) == nullptr);
  const auto snap = top.a.snapshot();
  BOOST_REQUIRE(snap.size() == 3u);
  BOOST_TEST(snap[0].path == "t_report");
  BOOST_TEST(snap[0].bytes == 192u);
  BOOST_TEST(snap[0].own_bytes == 0u);
  BOOST_TEST(snap[0].children == 2u);
  BOOST_TEST(snap[1].path == "t_report/r1");
  BOOST_TEST(snap[1].depth == 1u);
  BOOST_TEST(snap[1].refusals == 1u);
  BOOST_TEST(top.a.report_text() ==
             "t_report: 192 bytes in 2 blocks (own 0), peak 192, limit 1048576\n"
             "  r1: 64 bytes in 1 blocks (own 64), peak 64, limit 4096, 1 refused\n"
             "  r2: 128 bytes in 1 blocks (own 128), peak 128\n");
  BOOST_TEST(top.a.report_json() ==
             "{\"name\":\"t_report\",\"path\":\"t_report\",\"bytes\":192,\"own_bytes\":0,"
             "\"blocks\":2,\"peak\":192,\"limit\":1048576,\"soft_limit\":null,\"refusals\":0,"
             "\"children\":[{\"name\":\"r1\",\"path\":\"t_report/r1\",\"bytes\":64,\"own_bytes\":64,"
             "\"blocks\":1,\"peak\":64,\"limit\":4096,\"soft_limit\":null,\"refusals\":1,"
             "\"children\":[]},{\"name\":\"r2\",\"path\":\"t_report/r2\",\"bytes\":128,"
             "\"own_bytes\":128,\"blocks\":1,\"peak\":128,\"limit\":null,\"soft_limit\":null,"
             "\"refusals\":0,\"children\":[]}]}");
  const std::string prom = top.a.report_prometheus();
  BOOST_TEST(prom.find("# TYPE alloy_account_bytes gauge\n") != std::string::npos);
  BOOST_TEST(prom.find("alloy_account_bytes{account=\"t_report/r1\"} 64\n") != std::string::npos);
  BOOST_TEST(prom.find("alloy_account_limit_bytes{account=\"t_report/r1\"} 4096\n") != std::string::npos);
  BOOST_TEST(prom.find("alloy_account_limit_bytes{account=\"t_report/r2\"}") == std::string::npos);
  BOOST_TEST(prom.find("alloy_account_refusals_total{account=\"t_report/r1\"} 1\n") != std::string::npos);
  BOOST_TEST(prom.find("# TYPE alloy_account_refusals_total counter\n") != std::string::npos);
  const std::string root = alloy::Account::root().report_prometheus();
  BOOST_TEST(root.find("alloy_account_bytes{account=\"/\"}") != std::string::npos);
  alloy::Heap::free(p);
  alloy::Heap::free(q);
}

// Two threads in scopes below one limit: each batches up to kBatchBytes, so
// the limit is exceeded by at most one batch (the other thread's), no
// allocation is refused while the true total is under the limit by more
// than a block, and the figures are exact once the scopes end.
BOOST_AUTO_TEST_CASE(scope_batches_exceed_a_shared_limit_by_at_most_the_stated_bound) {
  constexpr std::size_t kLimit = 1 << 20;
  Fresh parent("t_batch", {.limit = kLimit});
  alloy::Account kids[2] = {*parent.a.create("a"), *parent.a.create("b")};
  std::vector<void*> got[2];
  got[0].reserve(4096);
  got[1].reserve(4096);
  std::atomic<int> ready{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 2; ++t) {
    ts.emplace_back([&, t] {
      alloy::AccountScope s(kids[t]);
      ready.fetch_add(1);
      while (ready.load() < 2) std::this_thread::yield();
      while (void* p = alloy::engine::alloc(1000)) got[t].push_back(p);
    });
  }
  for (auto& th : ts) th.join();
  std::size_t total = 0;
  for (auto& g : got) {
    for (void* p : g) total += alloy::engine::usable_size(p);
  }
  BOOST_TEST(parent.a.bytes() == total);
  BOOST_TEST(kids[0].bytes() + kids[1].bytes() == total);
  BOOST_TEST(parent.a.blocks() == got[0].size() + got[1].size());
  BOOST_TEST(total <= kLimit + alloy::AccountScope::kBatchBytes);
  BOOST_TEST(total + 1024 > kLimit);
  BOOST_TEST(parent.a.peak() <= kLimit + alloy::AccountScope::kBatchBytes);
  for (auto& g : got) {
    for (void* p : g) alloy::engine::free(p);
  }
  BOOST_TEST(parent.a.bytes() == 0u);
}

// A big block charged in a scope sees the thread's own batched bytes: the
// limit holds exactly, and the refusal reports them.
BOOST_AUTO_TEST_CASE(scope_big_block_after_batched_small_ones_is_checked_exactly) {
  Fresh acct("t_batch_big", {.limit = 100 << 10});
  void* small[20];
  void* big;
  {
    alloy::AccountScope s(acct.a);
    for (auto& p : small) p = alloy::engine::alloc(1024);  // 20 KiB, batched
    big = alloy::engine::alloc(96 << 10);                   // 20 + 96 > 100 KiB
  }
  BOOST_TEST(big == nullptr);
  BOOST_TEST(alloy::last_account_refusal()->used == 20u << 10);
  BOOST_TEST(acct.a.bytes() == 20u << 10);
  for (void* p : small) alloy::engine::free(p);
}

// In a scope of `parent`, a handle charge to its child sees the thread's
// batched bytes of `parent`: the parent's limit holds exactly.
BOOST_AUTO_TEST_CASE(charges_to_another_account_inside_a_scope_see_the_batch) {
  Fresh parent("t_batch_other", {.limit = 40 << 10});
  alloy::Account kid = *parent.a.create("kid");
  void* small[20];
  void* extra;
  {
    alloy::AccountScope s(parent.a);
    for (auto& p : small) p = alloy::engine::alloc(1024);  // 20 KiB batched on parent
    extra = kid.allocator().raw_alloc(24 << 10, alloy::Alignment::of<std::max_align_t>(), 0);
  }
  BOOST_TEST(extra == nullptr);  // 20 + 24 > 40 KiB
  BOOST_TEST(alloy::last_account_refusal()->used == 20u << 10);
  for (void* p : small) alloy::engine::free(p);
  BOOST_TEST(parent.a.bytes() == 0u);
}

// A soft limit crossed inside a scope: the callback runs once, on the
// allocating thread, and may itself allocate in the scope; the figures are
// exact when the scope ends.
BOOST_AUTO_TEST_CASE(soft_limit_in_a_scope_calls_back_and_may_allocate) {
  struct Seen {
    int calls = 0;
    void* made = nullptr;
  } seen;
  alloy::AccountOptions o;
  o.soft_limit = 4096;
  o.ctx = &seen;
  o.on_soft_limit = [](const alloy::AccountEvent&, void* ctx) {
    auto* s = static_cast<Seen*>(ctx);
    ++s->calls;
    s->made = alloy::engine::alloc(100);  // charged to the scope's account too
  };
  Fresh acct("t_soft_scope", o);
  std::vector<void*> got;
  got.reserve(200);
  {
    alloy::AccountScope s(acct.a);
    for (int i = 0; i < 200; ++i) got.push_back(alloy::engine::alloc(64));
  }
  BOOST_TEST(seen.calls == 1);
  BOOST_REQUIRE(seen.made != nullptr);
  BOOST_TEST(acct.a.blocks() == 201u);
  BOOST_TEST(acct.a.bytes() == 200u * 64 + alloy::engine::usable_size(seen.made));
  for (void* p : got) alloy::engine::free(p);
  alloy::engine::free(seen.made);
  BOOST_TEST(acct.a.bytes() == 0u);
}

// Carve mode (a scope's leased heap serves the inline fast path and is
// charged per carve): while the scope runs, the account's figures are never
// below the truth by more than the scope's batch (kBatchBytes), through
// owner frees, frees by another thread (collected later) and new
// allocations; exact once it ends.
BOOST_AUTO_TEST_CASE(carve_mode_figures_never_fall_below_the_truth_past_the_batch) {
  Fresh acct("t_carve");
  std::vector<void*> got;
  got.reserve(8000);
  std::size_t truth = 0;
  bool bound_held = true;
  {
    alloy::AccountScope s(acct.a);
    auto churn = [&](int n) {
      for (int i = 0; i < n; ++i) {
        void* p = alloy::engine::alloc(static_cast<std::size_t>(16 + (i * 53) % 1000));
        BOOST_TEST_REQUIRE(p != nullptr);
        truth += alloy::engine::usable_size(p);
        got.push_back(p);
        if (i % 4 == 0) {
          truth -= alloy::engine::usable_size(got.back());
          alloy::engine::free(got.back());
          got.pop_back();
        }
        if (acct.a.bytes() + alloy::AccountScope::kBatchBytes < truth) bound_held = false;
      }
    };
    churn(3000);
    std::vector<void*> theirs;
    for (std::size_t k = 0; k < got.size(); k += 3) theirs.push_back(got[k]);
    std::vector<void*> keep;
    for (std::size_t k = 0; k < got.size(); ++k) {
      if (k % 3 != 0) keep.push_back(got[k]);
    }
    for (void* p : theirs) truth -= alloy::engine::usable_size(p);
    std::thread([&] {
      for (void* p : theirs) alloy::engine::free(p);
    }).join();
    got = keep;
    got.reserve(8000);
    churn(3000);  // collects the other thread's frees
  }
  BOOST_TEST(bound_held);
  std::size_t expect = 0;
  for (void* p : got) expect += alloy::engine::usable_size(p);
  BOOST_TEST(expect == truth);
  BOOST_TEST(acct.a.bytes() == expect);
  BOOST_TEST(acct.a.blocks() == got.size());
  for (void* p : got) alloy::engine::free(p);
  BOOST_TEST(acct.a.bytes() == 0u);
  BOOST_TEST(acct.a.blocks() == 0u);
}

// A scope nested in a carve-mode scope: the outer lease goes on per block
// while the inner one runs (its batch published first), the outer's blocks
// freed inside the inner scope credit the outer account, and the outer
// scope is back in carve mode when the inner one ends.
BOOST_AUTO_TEST_CASE(nested_scope_inside_a_carve_mode_scope_keeps_both_exact) {
  Fresh outer("t_carve_outer");
  Fresh inner("t_carve_inner");
  std::vector<void*> mine;
  mine.reserve(400);
  void* in;
  void* after;
  {
    alloy::AccountScope s1(outer.a);
    for (int i = 0; i < 300; ++i) mine.push_back(alloy::engine::alloc(48));
    {
      alloy::AccountScope s2(inner.a);
      in = alloy::engine::alloc(200);
      for (int i = 0; i < 100; ++i) {
        alloy::engine::free(mine.back());
        mine.pop_back();
      }
    }
    after = alloy::engine::alloc(48);  // the outer scope again (carve mode resumed)
    for (int i = 0; i < 50; ++i) {  // its own frees and allocations, after the resume
      alloy::engine::free(mine.back());
      mine.pop_back();
    }
    for (int i = 0; i < 20; ++i) mine.push_back(alloy::engine::alloc(48));
  }
  mine.push_back(after);
  BOOST_TEST(outer.a.blocks() == mine.size());
  BOOST_TEST(outer.a.bytes() == mine.size() * alloy::engine::usable_size(after));
  BOOST_TEST(inner.a.bytes() == alloy::engine::usable_size(in));
  for (void* p : mine) alloy::engine::free(p);
  alloy::engine::free(in);
  BOOST_TEST(outer.a.bytes() == 0u);
  BOOST_TEST(inner.a.bytes() == 0u);
}
