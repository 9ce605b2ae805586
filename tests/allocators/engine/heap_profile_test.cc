// Per-heap profiles (alloy::Heap::set_profile_rate / write_profile): a
// profiled heap's allocations are sampled Poisson by bytes and its profile,
// read back with go tool pprof, holds that heap's call sites only. Two heaps
// with different call sites; in-use bytes fall after frees by every path;
// destroy clears; four threads sharing a heap; calloc-sized and huge blocks.
#define BOOST_TEST_MODULE heap_profile
#include <boost/test/unit_test.hpp>

#include <cstddef>

#include <atomic>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "alloy/allocators/engine/account.h"
#include "alloy/allocators/engine/engine.h"
#include "alloy/allocators/engine/heap.h"
#include "tests/support/pprof_tool.h"

using alloy::testing::Pprof;

namespace heap_sites {

// Not tail calls: each site stays a frame of its own.
inline void* keep(void* p) {
  __asm__ volatile("" : : "r"(p) : "memory");
  return p;
}
[[gnu::noinline]] void* site_a(alloy::Heap& h, std::size_t n) { return keep(h.alloc(n)); }
[[gnu::noinline]] void* site_b(alloy::Heap& h, std::size_t n) { return keep(h.alloc(n)); }
[[gnu::noinline]] void* site_one(alloy::Heap& h, std::size_t n) { return keep(h.alloc(n)); }
[[gnu::noinline]] void* site_two(alloy::Heap& h, std::size_t n) { return keep(h.alloc(n)); }
[[gnu::noinline]] void* site_four(alloy::Heap& h, std::size_t n) { return keep(h.alloc(n)); }
[[gnu::noinline]] void* leaky_site(alloy::Heap& h, std::size_t n) { return keep(h.alloc(n)); }
inline alloy::Alignment a16() { return alloy::Alignment::of<std::max_align_t>(); }
[[gnu::noinline]] void* handle_site(alloy::Heap& h, std::size_t n) {
  auto r = h.allocator().alloc_bytes(n, a16());
  return keep(r ? r->data() : nullptr);
}

[[gnu::noinline]] void* scoped_site(std::size_t n) { return keep(alloy::engine::alloc(n)); }
[[gnu::noinline]] void* unscoped_site(std::size_t n) { return keep(alloy::engine::alloc(n)); }

}  // namespace heap_sites

namespace {

std::string path_of(const std::string& name) { return Pprof::tmpdir() + "/" + name; }

// The shares of site_one, site_two and site_four match 1:2:4 within `bound` points.
void check_shares(const std::string& path, double bound) {
  const Pprof t = Pprof::top(path, "alloc_space");
  BOOST_TEST_REQUIRE(t.status == 0, t.output);
  const double one = t.cum_share("heap_sites::site_one");
  const double two = t.cum_share("heap_sites::site_two");
  const double four = t.cum_share("heap_sites::site_four");
  const double sum = one + two + four;
  BOOST_TEST_REQUIRE(sum > 0, t.output);
  BOOST_TEST(std::abs(100 * one / sum - 100.0 / 7) < bound, t.output);
  BOOST_TEST(std::abs(100 * two / sum - 200.0 / 7) < bound, t.output);
  BOOST_TEST(std::abs(100 * four / sum - 400.0 / 7) < bound, t.output);
}

void run_sites(alloy::Heap& h, std::vector<void*>& out, std::size_t bytes, std::size_t size) {
  for (std::size_t done = 0; done < bytes; done += 7 * size) {
    out.push_back(heap_sites::site_one(h, size));
    for (int k = 0; k < 2; ++k) out.push_back(heap_sites::site_two(h, size));
    for (int k = 0; k < 4; ++k) out.push_back(heap_sites::site_four(h, size));
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(an_unprofiled_heap_writes_an_empty_profile) {
  auto h = alloy::Heap::create();
  BOOST_REQUIRE(h);
  BOOST_TEST(h->profile_rate() == 0);
  void* p = heap_sites::site_a(*h, 100);
  const std::string path = path_of("empty.pb.gz");
  BOOST_REQUIRE(h->write_profile(path.c_str()));
  const Pprof t = Pprof::top(path, "alloc_space");
  BOOST_TEST(t.status == 0, t.output);
  BOOST_TEST(t.output.find("site_a") == std::string::npos, t.output);
  alloy::Heap::free(p);
  BOOST_TEST(!h->write_profile("/nonexistent/dir/x.pb.gz"));
}

BOOST_AUTO_TEST_CASE(two_heaps_each_profile_only_their_own_sites) {
  auto a = alloy::Heap::create({.profile_rate = 4096});
  auto b = alloy::Heap::create();
  BOOST_REQUIRE(a);
  BOOST_REQUIRE(b);
  BOOST_REQUIRE(b->set_profile_rate(4096));
  BOOST_TEST(a->profile_rate() == 4096);
  BOOST_TEST(b->profile_rate() == 4096);
  std::vector<void*> blocks;
  // Interleaved, mixed sizes (small, large, huge), plus unprofiled malloc.
  for (int i = 0; i < 4000; ++i) {
    const std::size_t n = i % 100 == 0 ? 70000 : 24 + (i % 7) * 100;
    blocks.push_back(heap_sites::site_a(*a, n));
    blocks.push_back(heap_sites::site_b(*b, n));
    blocks.push_back(alloy::engine::alloc(n));
  }
  blocks.push_back(heap_sites::site_a(*a, 5 << 20));
  for (int i = 0; i < 100; ++i) blocks.push_back(heap_sites::handle_site(*a, 3000));
  for (void* p : blocks) BOOST_REQUIRE(p != nullptr);
  // Sampled blocks are the heap's own: its stats, its invariants.
  BOOST_TEST(a->stats().live_blocks == 4101u);
  BOOST_TEST(a->find_broken_invariant() == nullptr);
  std::size_t visited = 0;
  a->visit([&](void*, std::size_t) { ++visited; });
  BOOST_TEST(visited == 4101u);

  const std::string pa = path_of("heap_a.pb.gz"), pb = path_of("heap_b.pb.gz");
  BOOST_REQUIRE(a->write_profile(pa.c_str()));
  BOOST_REQUIRE(b->write_profile(pb.c_str()));
  for (const char* index : {"alloc_space", "inuse_space", "inuse_objects"}) {
    const Pprof ta = Pprof::top(pa, index);
    const Pprof tb = Pprof::top(pb, index);
    BOOST_TEST_REQUIRE(ta.status == 0, ta.output);
    BOOST_TEST(ta.cum_share("heap_sites::site_a") > 90.0, ta.output);
    BOOST_TEST(ta.output.find("site_b") == std::string::npos, ta.output);
    BOOST_TEST(tb.cum_share("heap_sites::site_b") == 100.0, tb.output);
    BOOST_TEST(tb.output.find("site_a") == std::string::npos, tb.output);
    // Frame 0 is the caller of Heap::alloc, not alloy.
    BOOST_TEST(ta.output.find("alloy::") == std::string::npos, ta.output);
    BOOST_TEST(tb.output.find("alloy::") == std::string::npos, tb.output);
  }
  // The handle's allocations are the heap's too.
  BOOST_TEST(Pprof::top(pa, "alloc_objects").output.find("heap_sites::handle_site") !=
             std::string::npos);
  for (void* p : blocks) alloy::Heap::free(p);
  BOOST_TEST(a->stats().live_blocks == 0u);
}

BOOST_AUTO_TEST_CASE(sites_in_ratio_1_2_4_within_bounds) {
  // 16 MiB at a mean of 4 KiB: ~4000 samples, each share's standard error
  // under 0.8 points; the bound is 4 (five sigma).
  auto h = alloy::Heap::create({.profile_rate = 4096});
  BOOST_REQUIRE(h);
  std::vector<void*> blocks;
  run_sites(*h, blocks, std::size_t{16} << 20, 256);
  const std::string path = path_of("ratio.pb.gz");
  BOOST_REQUIRE(h->write_profile(path.c_str()));
  check_shares(path, 4.0);
  // The estimate of the bytes allocated: 16 MiB within 6%.
  const Pprof t = Pprof::run("-top -unit=MB -sample_index=alloc_space " + path);
  const auto of = t.output.find(" of ");
  BOOST_TEST_REQUIRE(of != std::string::npos, t.output);
  BOOST_TEST(std::abs(std::stod(t.output.substr(of + 4)) - 16) < 16 * 0.06, t.output);
  for (void* p : blocks) alloy::Heap::free(p);
}

BOOST_AUTO_TEST_CASE(inuse_falls_after_frees_by_every_path_and_the_leak_profile_names_the_leak) {
  auto h = alloy::Heap::create({.profile_rate = 2048});
  BOOST_REQUIRE(h);
  std::vector<void*> kept, leaked;
  for (int i = 0; i < 6000; ++i) kept.push_back(heap_sites::site_four(*h, 512));
  for (int i = 0; i < 3000; ++i) leaked.push_back(heap_sites::leaky_site(*h, 512));
  kept.push_back(heap_sites::site_four(*h, 3 << 20));  // huge: its own free path
  const std::string before = path_of("inuse_before.pb.gz"), after = path_of("inuse_after.pb.gz");
  BOOST_REQUIRE(h->write_profile(before.c_str()));
  // Heap::free (the owner's push), engine::free (free_cross), the handle's
  // free, Heap::realloc's move, and frees from another thread.
  for (std::size_t i = 0; i < kept.size(); ++i) {
    void* p = kept[i];
    switch (i % 4) {
      case 0: alloy::Heap::free(p); break;
      case 1: alloy::engine::free(p); break;
      case 2: h->allocator().free_bytes(alloy::Bytes(static_cast<std::byte*>(p), 512), heap_sites::a16()); break;
      default: kept[i] = alloy::Heap::realloc(p, 2000); break;
    }
  }
  std::thread other([&] {
    for (std::size_t i = 3; i < kept.size(); i += 4) alloy::engine::free(kept[i]);
  });
  other.join();
  BOOST_REQUIRE(h->write_profile(after.c_str()));
  const Pprof b = Pprof::top(before, "inuse_space");
  const Pprof a = Pprof::top(after, "inuse_space");
  BOOST_TEST(b.cum_share("heap_sites::site_four") > 50.0, b.output);
  BOOST_TEST(a.cum_share("heap_sites::site_four") == 0.0, a.output);
  BOOST_TEST(a.cum_share("heap_sites::leaky_site") == 100.0, a.output);
  BOOST_TEST(Pprof::top(after, "alloc_space").cum_share("heap_sites::site_four") > 50.0);
  const std::string leaks = path_of("heap_leaks.pb.gz");
  BOOST_REQUIRE(h->write_profile(leaks.c_str(), true));
  const Pprof l = Pprof::top(leaks, "alloc_space");
  BOOST_TEST(l.output.find("heap_sites::leaky_site") != std::string::npos, l.output);
  BOOST_TEST(l.output.find("site_four") == std::string::npos, l.output);
  // Rate 0 stops sampling and keeps what was recorded.
  BOOST_REQUIRE(h->set_profile_rate(0));
  for (int i = 0; i < 4000; ++i) kept.push_back(heap_sites::site_a(*h, 512));
  BOOST_REQUIRE(h->write_profile(after.c_str()));
  const Pprof stopped = Pprof::top(after, "alloc_space");
  BOOST_TEST(stopped.output.find("site_a") == std::string::npos, stopped.output);
  BOOST_TEST(stopped.output.find("heap_sites::leaky_site") != std::string::npos, stopped.output);
  BOOST_TEST(h->find_broken_invariant() == nullptr);
}

BOOST_AUTO_TEST_CASE(destroy_clears_the_profile) {
  std::string path = path_of("destroyed.pb.gz");
  {
    auto h = alloy::Heap::create({.profile_rate = 1024});
    BOOST_REQUIRE(h);
    for (int i = 0; i < 2000; ++i) BOOST_REQUIRE(heap_sites::site_a(*h, 256) != nullptr);
    h->destroy();  // every block, and the profile, gone
    BOOST_TEST(!h->write_profile(path.c_str()));
    BOOST_TEST(h->profile_rate() == 0);
    BOOST_TEST(!h->set_profile_rate(1024));
  }
  // A new heap (its state may land where the old one was) starts empty.
  auto h = alloy::Heap::create({.profile_rate = 1024});
  BOOST_REQUIRE(h);
  std::vector<void*> blocks;
  for (int i = 0; i < 2000; ++i) blocks.push_back(heap_sites::site_b(*h, 256));
  BOOST_REQUIRE(h->write_profile(path.c_str()));
  const Pprof t = Pprof::top(path, "alloc_space");
  BOOST_TEST(t.cum_share("heap_sites::site_b") == 100.0, t.output);
  BOOST_TEST(t.output.find("site_a") == std::string::npos, t.output);
  for (void* p : blocks) alloy::Heap::free(p);
}

BOOST_AUTO_TEST_CASE(four_threads_share_a_profiled_heap_while_profiles_are_written) {
  auto h = alloy::Heap::create({.profile_rate = 4096});
  BOOST_REQUIRE(h);
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  std::vector<std::vector<void*>> kept(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<void*> mine;
      run_sites(*h, mine, std::size_t{4} << 20, 128);
      // Keep allocating and freeing (half from the next thread's blocks)
      // while the main thread writes profiles.
      while (!stop.load()) {
        std::vector<void*> churn;
        run_sites(*h, churn, 1 << 18, 128);
        for (void* p : churn) alloy::engine::free(p);
      }
      kept[t] = std::move(mine);
    });
  }
  const std::string path = path_of("heap_threads.pb.gz");
  for (int i = 0; i < 5; ++i) BOOST_REQUIRE(h->write_profile(path.c_str()));
  stop = true;
  for (auto& t : threads) t.join();
  // Frees from other threads than the allocating ones.
  std::vector<std::thread> freers;
  for (int t = 0; t < 4; ++t) {
    freers.emplace_back([&, t] {
      for (void* p : kept[(t + 1) % 4]) alloy::Heap::free(p);
    });
  }
  for (auto& t : freers) t.join();
  BOOST_REQUIRE(h->write_profile(path.c_str()));
  check_shares(path, 4.0);
  // Everything freed: nothing in use.
  const Pprof inuse = Pprof::top(path, "inuse_space");
  BOOST_TEST(inuse.cum_share("heap_sites::site_four") == 0.0, inuse.output);
  BOOST_TEST(h->stats().live_blocks == 0u);
  BOOST_TEST(h->find_broken_invariant() == nullptr);
}

BOOST_AUTO_TEST_CASE(an_account_profiles_its_scoped_allocations) {
  auto acct = alloy::Account::root().create("profiled");
  BOOST_REQUIRE(acct);
  BOOST_REQUIRE(acct->set_profile_rate(2048));
  std::vector<void*> scoped, unscoped;
  {
    alloy::AccountScope scope(*acct);
    for (int i = 0; i < 4000; ++i) scoped.push_back(heap_sites::scoped_site(300));
  }
  for (int i = 0; i < 4000; ++i) unscoped.push_back(heap_sites::unscoped_site(300));
  const std::string path = path_of("account.pb.gz");
  BOOST_REQUIRE(acct->write_profile(path.c_str()));
  const Pprof t = Pprof::top(path, "inuse_space");
  BOOST_TEST(t.cum_share("heap_sites::scoped_site") == 100.0, t.output);
  BOOST_TEST(t.output.find("unscoped_site") == std::string::npos, t.output);
  BOOST_TEST(acct->blocks() == 4000u);
  // Frees credit the account and leave the profile; reset forgets the rest.
  for (std::size_t i = 0; i < 2000; ++i) alloy::engine::free(scoped[i]);
  BOOST_TEST(acct->blocks() == 2000u);
  acct->reset();
  BOOST_REQUIRE(acct->write_profile(path.c_str()));
  const Pprof r = Pprof::top(path, "inuse_space");
  BOOST_TEST(r.cum_share("heap_sites::scoped_site") == 0.0, r.output);
  BOOST_TEST(Pprof::top(path, "alloc_space").cum_share("heap_sites::scoped_site") == 100.0);
  for (void* p : unscoped) alloy::engine::free(p);
  acct->destroy();
}
