// alloy::Heap: handle, ceiling, visit, stats, destroy, collect, threads.
#define BOOST_TEST_MODULE heap
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/allocators/engine/engine.h"
#include "alloy/allocators/engine/heap.h"

namespace {
alloy::Heap make(alloy::HeapOptions o = {}) {
  auto h = alloy::Heap::create(o);
  BOOST_REQUIRE(h.ok());
  return std::move(*h);
}

using Blocks = std::vector<std::pair<unsigned char*, std::size_t>>;

// One step of thread `id`'s random churn on `heap`: while it holds fewer
// than `min_live` blocks (or on a coin flip) it allocates 1..max_size bytes
// and fills them with `id`; otherwise it checks one of its blocks still holds
// `id` and hands it to `release`. Counts failures and corruption in `bad`.
template <class Release>
void churn_step(alloy::Heap& heap, unsigned char id, std::mt19937& rng, Blocks& mine,
                std::size_t min_live, std::size_t max_size, std::atomic<int>& bad,
                Release release) {
  if (mine.size() < min_live || rng() % 2) {
    const std::size_t n = 1 + rng() % max_size;
    auto* p = static_cast<unsigned char*>(heap.alloc(n));
    if (p == nullptr) {
      ++bad;
      return;
    }
    std::memset(p, id, n);
    mine.push_back({p, n});
  } else {
    const std::size_t k = rng() % mine.size();
    auto [p, n] = mine[k];
    if (p[0] != id || p[n - 1] != id) ++bad;
    mine[k] = mine.back();
    mine.pop_back();
    release(p);
  }
}
}  // namespace

BOOST_AUTO_TEST_CASE(handle_alloc_realloc_free_keep_contents) {
  alloy::Heap heap = make();
  alloy::Allocator a = heap.allocator();
  auto v = a.alloc<int>(10);
  BOOST_REQUIRE(v.ok());
  for (int i = 0; i < 10; ++i) (*v)[static_cast<std::size_t>(i)] = i;
  std::span<int> s = *v;
  for (std::size_t n : {100u, 50000u, 1000000u, 3000000u, 20u}) {
    auto r = a.realloc(s, n);
    BOOST_REQUIRE(r.ok());
    for (int i = 0; i < 10; ++i) BOOST_CHECK_EQUAL((*r)[static_cast<std::size_t>(i)], i);
    s = *r;
  }
  a.free(s);
  auto d = a.dupe_z("hello");
  BOOST_REQUIRE(d.ok());
  BOOST_CHECK_EQUAL(std::string(d->data()), "hello");
  a.free(*d);
}

BOOST_AUTO_TEST_CASE(handle_alignments_up_to_1mib) {
  alloy::Heap heap = make();
  alloy::Allocator a = heap.allocator();
  for (std::size_t align = 1; align <= (std::size_t{1} << 20); align <<= 1) {
    auto r = a.alloc_aligned<std::byte>(align * 3 / 2 + 1, align);
    BOOST_REQUIRE(r.ok());
    BOOST_CHECK_EQUAL(reinterpret_cast<std::uintptr_t>(r->data()) % align, 0u);
    std::memset(r->data(), 1, r->size());
    a.free_aligned(*r, *alloy::Alignment::from_bytes(align));
  }
}

BOOST_AUTO_TEST_CASE(eight_byte_blocks_for_small_alignment) {
  alloy::Heap heap = make();
  void* a = heap.alloc(8, 8);
  void* b = heap.alloc(8, 8);
  BOOST_CHECK_EQUAL(alloy::engine::usable_size(a), 8u);
  BOOST_CHECK_EQUAL(static_cast<char*>(b) - static_cast<char*>(a) == 8 ||
                        static_cast<char*>(a) - static_cast<char*>(b) == 8,
                    true);
  alloy::Heap::free(a);
  alloy::Heap::free(b);
}

BOOST_AUTO_TEST_CASE(ceiling_is_never_exceeded_and_heap_stays_usable) {
  constexpr std::size_t kCap = std::size_t{3} << 20;
  alloy::Heap heap = make({.ceiling = kCap});
  std::vector<void*> v;
  std::mt19937 rng(7);
  std::size_t failures = 0;
  for (int i = 0; i < 100000 && failures < 50; ++i) {
    const std::size_t n = rng() % 10 == 0 ? 1 + rng() % 200000 : 1 + rng() % 2000;
    void* p = heap.alloc(n);
    BOOST_REQUIRE_LE(heap.committed(), kCap);
    if (p == nullptr) {
      ++failures;
      continue;
    }
    std::memset(p, 1, n);
    v.push_back(p);
  }
  BOOST_CHECK_GT(failures, 0u);
  BOOST_CHECK_LE(heap.stats().live_bytes, kCap);
  BOOST_CHECK_LE(heap.stats().peak_committed_bytes, kCap);
  // Huge requests past the ceiling fail cleanly too.
  BOOST_CHECK(heap.alloc(std::size_t{8} << 20) == nullptr);
  // Free half: allocation works again.
  for (std::size_t i = 0; i < v.size(); i += 2) alloy::Heap::free(v[i]);
  heap.collect();
  void* p = heap.alloc(1000);
  BOOST_CHECK(p != nullptr);
  alloy::Heap::free(p);
  // Raising the ceiling lets a huge block through.
  heap.set_ceiling(std::size_t{64} << 20);
  void* h = heap.alloc(std::size_t{8} << 20);
  BOOST_CHECK(h != nullptr);
  alloy::Heap::free(h);
  for (std::size_t i = 1; i < v.size(); i += 2) alloy::Heap::free(v[i]);
}

BOOST_AUTO_TEST_CASE(ceiling_exact_for_one_size) {
  // 8 KiB of segment header + 15 slices of 64 KiB for 112-byte blocks
  // (floor(65536 / 112) blocks per slice), then a 16th page charged per
  // 4 KiB OS page: the last 56 KiB hold 14 * 4096 / 112 blocks.
  alloy::Heap heap = make({.ceiling = std::size_t{1} << 20});
  std::size_t n = 0;
  while (heap.alloc(100) != nullptr) ++n;
  BOOST_CHECK_EQUAL(n, 15u * (65536u / 112u) + 14u * 4096u / 112u);
  BOOST_CHECK_EQUAL(heap.committed(), std::size_t{1} << 20);
}

BOOST_AUTO_TEST_CASE(visit_reports_exactly_the_live_blocks) {
  alloy::Heap heap = make();
  std::mt19937 rng(3);
  std::vector<void*> all;
  for (int i = 0; i < 20000; ++i) {
    const unsigned k = rng() % 1000;
    const std::size_t n = k < 950 ? 1 + rng() % 1000 : k < 998 ? 70000 + rng() % 900000 : (5u << 20);
    void* p = heap.alloc(n);
    BOOST_REQUIRE(p != nullptr);
    all.push_back(p);
  }
  std::set<void*> live(all.begin(), all.end());
  // Free a third here and a third from another thread.
  std::vector<void*> other;
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (i % 3 == 0) {
      alloy::Heap::free(all[i]);
      live.erase(all[i]);
    } else if (i % 3 == 1) {
      other.push_back(all[i]);
      live.erase(all[i]);
    }
  }
  std::thread t([&] {
    for (void* p : other) alloy::Heap::free(p);
  });
  t.join();
  std::set<void*> seen;
  std::size_t dup = 0;
  heap.visit([&](void* p, std::size_t size) {
    BOOST_CHECK_GE(size, alloy::engine::usable_size(p) > 0 ? 1u : 0u);
    if (!seen.insert(p).second) ++dup;
  });
  BOOST_CHECK_EQUAL(dup, 0u);
  BOOST_CHECK(seen == live);
  const alloy::HeapStats s = heap.stats();
  BOOST_CHECK_EQUAL(s.live_blocks, live.size());
  std::size_t per_class = 0;
  for (const auto& c : s.classes) per_class += c.live_blocks;
  BOOST_CHECK_EQUAL(per_class + s.large_blocks + s.huge_blocks, live.size());
}

BOOST_AUTO_TEST_CASE(destroy_with_millions_of_live_blocks) {
  alloy::Heap heap = make();
  std::size_t n = 0;
  for (int i = 0; i < 2000000; ++i) {
    void* p = heap.alloc(16 + static_cast<std::size_t>(i % 4) * 16);
    BOOST_REQUIRE(p != nullptr);
    ++n;
  }
  BOOST_CHECK_EQUAL(heap.stats().live_blocks, n);
  BOOST_CHECK_GT(heap.committed(), std::size_t{60} << 20);
  heap.destroy();  // one call; unmaps ~30 segments
  BOOST_CHECK(!heap);
}

BOOST_AUTO_TEST_CASE(collect_returns_committed_memory) {
  alloy::Heap heap = make();
  std::vector<void*> v;
  for (int i = 0; i < 100000; ++i) v.push_back(heap.alloc(200));
  const std::size_t full = heap.committed();
  for (void* p : v) alloy::Heap::free(p);
  heap.collect();
  BOOST_CHECK_LT(heap.committed(), full / 8);
  BOOST_CHECK_EQUAL(heap.stats().live_blocks, 0u);
}

// bigfrag's shape (issue 12), scaled down: ~40 MiB of 16-255 B blocks, 90%
// freed at random, then 2-8 KiB blocks. A small page cannot change class
// while one of its blocks lives, so the new blocks take fresh pages: what is
// pinned here is that the cost stays at most their bytes plus the class
// rounding and page slack (today 1.11x their bytes; no page per block, no
// unbounded growth), and that the frees never raise the commitment. Issue 12's target (peak within 10%
// of glibc's, which fills the holes) is not met; see bench/README.md.
BOOST_AUTO_TEST_CASE(scattered_frees_then_larger_blocks_stay_bounded) {
  alloy::Heap heap = make();
  std::mt19937 rng(99);
  std::vector<void*> small(300000);
  for (auto& p : small) {
    p = heap.alloc(16 + rng() % 240);
    BOOST_REQUIRE(p != nullptr);
  }
  const std::size_t full = heap.committed();
  for (auto& p : small) {
    if (rng() % 10 != 0) {
      alloy::Heap::free(p);
      p = nullptr;
    }
  }
  BOOST_CHECK_LE(heap.committed(), full);
  const std::size_t after_free = heap.committed();
  std::vector<void*> big(3000);
  std::size_t big_bytes = 0;
  for (auto& p : big) {
    const std::size_t n = 2048 + rng() % 6144;
    p = heap.alloc(n);
    BOOST_REQUIRE(p != nullptr);
    std::memset(p, 3, n);
    big_bytes += n;
  }
  BOOST_TEST_MESSAGE("full " << full << " after free " << after_free << " + big " << big_bytes
                               << " -> " << heap.committed());
  BOOST_CHECK_LE(heap.committed(), after_free + big_bytes + big_bytes / 4);
  BOOST_CHECK_LE(heap.stats().peak_committed_bytes, full + big_bytes + big_bytes / 4);
  for (void* p : big) alloy::Heap::free(p);
  for (void* p : small) alloy::Heap::free(p);
}

// The reuse that does exist: pages emptied by frees are whole free spans, and
// a later class takes them instead of committing fresh slices.
BOOST_AUTO_TEST_CASE(emptied_small_pages_serve_another_class) {
  alloy::Heap heap = make();
  std::vector<void*> small(200000);
  for (auto& p : small) {
    p = heap.alloc(200);
    BOOST_REQUIRE(p != nullptr);
  }
  const std::size_t full = heap.committed();
  for (void* p : small) alloy::Heap::free(p);
  std::vector<void*> big(4000);  // ~20 MiB of 2-8 KiB, less than the 38 MiB freed
  for (std::size_t i = 0; i < big.size(); ++i) {
    const std::size_t n = 2048 + (i * 2654435761u) % 6144;
    big[i] = heap.alloc(n);
    BOOST_REQUIRE(big[i] != nullptr);
    std::memset(big[i], 5, n);
  }
  BOOST_TEST_MESSAGE("full " << full << " peak " << heap.stats().peak_committed_bytes);
  BOOST_CHECK_LE(heap.stats().peak_committed_bytes, full + (std::size_t{1} << 20));
  for (void* p : big) alloy::Heap::free(p);
}

BOOST_AUTO_TEST_CASE(heap_shared_by_four_threads) {
  alloy::Heap heap = make({.ceiling = std::size_t{256} << 20});
  std::vector<std::thread> ts;
  std::atomic<int> bad{0};
  for (int id = 0; id < 4; ++id) {
    ts.emplace_back([&, id] {
      std::mt19937 rng(static_cast<unsigned>(id));
      Blocks mine;
      for (int i = 0; i < 20000; ++i) {
        churn_step(heap, static_cast<unsigned char>(id), rng, mine, 100, 3000, bad,
                   alloy::Heap::free);
      }
      for (auto [p, n] : mine) alloy::Heap::free(p);
    });
  }
  for (auto& t : ts) t.join();
  BOOST_CHECK_EQUAL(bad.load(), 0);
  BOOST_CHECK_EQUAL(heap.stats().live_blocks, 0u);
}

// The heap's lock is biased to its first user (no atomic exchange) until a
// second thread allocates; this hammers that hand-over: the owner churns
// while three threads arrive, and blocks cross threads through shared slots.
BOOST_AUTO_TEST_CASE(owner_keeps_churning_while_other_threads_arrive) {
  for (int round = 0; round < 20; ++round) {
    alloy::Heap heap = make();
    constexpr std::size_t kSlots = 64;
    std::atomic<unsigned char*> slots[kSlots] = {};
    std::atomic<int> bad{0}, arrived_done{0};
    // Frees a block, or (about one time in four, by address) hands it to
    // whoever takes its slot next, freeing what the slot held: blocks cross
    // threads.
    auto release = [&](unsigned char* p) {
      if ((reinterpret_cast<std::uintptr_t>(p) >> 4) % 4 != 0) {
        alloy::Heap::free(p);
        return;
      }
      p[0] = 0xEE;
      unsigned char* old = slots[reinterpret_cast<std::uintptr_t>(p) / 16 % kSlots].exchange(p);
      if (old != nullptr && old[0] != 0xEE) ++bad;
      alloy::Heap::free(old);
    };
    auto churn = [&](unsigned char id, std::mt19937& rng, Blocks& mine) {
      churn_step(heap, id, rng, mine, 50, 600, bad, release);
    };
    std::mt19937 owner_rng(static_cast<unsigned>(round));
    Blocks owner_blocks;
    for (int i = 0; i < 200; ++i) churn(1, owner_rng, owner_blocks);  // the owner
    std::vector<std::thread> ts;
    for (unsigned char id = 2; id < 5; ++id) {
      ts.emplace_back([&, id] {
        std::mt19937 rng(id * 1000u + static_cast<unsigned>(round));
        Blocks mine;
        for (int i = 0; i < 3000; ++i) churn(id, rng, mine);
        for (auto [p, n] : mine) alloy::Heap::free(p);
        ++arrived_done;
      });
    }
    while (arrived_done.load() < 3) churn(1, owner_rng, owner_blocks);
    for (auto& t : ts) t.join();
    for (auto [p, n] : owner_blocks) alloy::Heap::free(p);
    for (auto& slot : slots) alloy::Heap::free(slot.exchange(nullptr));
    BOOST_REQUIRE_EQUAL(bad.load(), 0);
    BOOST_REQUIRE_EQUAL(heap.stats().live_blocks, 0u);
  }
}

BOOST_AUTO_TEST_CASE(default_allocator_handle) {
  alloy::Allocator a = alloy::Heap::default_allocator();
  auto r = a.alloc<double>(1000);
  BOOST_REQUIRE(r.ok());
  BOOST_CHECK(alloy::engine::owns(r->data()));
  a.free(*r);
}

BOOST_AUTO_TEST_CASE(visit_while_another_thread_allocates) {
  alloy::Heap heap = make();
  std::vector<void*> mine;
  for (int i = 0; i < 30000; ++i) mine.push_back(heap.alloc(16 + static_cast<std::size_t>(i % 50) * 8));
  std::atomic<bool> stop{false};
  std::thread churn([&] {
    std::vector<void*> v;
    while (!stop.load()) {
      for (int i = 0; i < 500; ++i) v.push_back(heap.alloc(24 + static_cast<std::size_t>(i % 300)));
      for (void* p : v) alloy::Heap::free(p);
      v.clear();
    }
  });
  for (int round = 0; round < 5; ++round) {
    std::set<void*> seen;
    std::size_t dup = 0;
    heap.visit([&](void* p, std::size_t) {
      if (!seen.insert(p).second) ++dup;
    });
    BOOST_CHECK_EQUAL(dup, 0u);
    std::size_t missing = 0;
    for (void* p : mine) missing += seen.count(p) == 0;
    BOOST_CHECK_EQUAL(missing, 0u);  // blocks live throughout are always reported
  }
  stop = true;
  churn.join();
}

// Size feedback: the block's usable size (its class, its slices, its
// mapping), which free_sized in checked builds accepts as its length.
BOOST_AUTO_TEST_CASE(alloc_at_least_reports_the_usable_size) {
  alloy::Heap heap = make();
  for (alloy::Allocator a : {heap.allocator(), alloy::Heap::default_allocator()}) {
    for (std::size_t len : {std::size_t{1}, std::size_t{100}, std::size_t{1000},
                            std::size_t{70000}, std::size_t{3} << 20}) {
      auto b = a.alloc_bytes_at_least(len, alloy::Alignment::from_log2(4));
      BOOST_REQUIRE(b.ok());
      BOOST_TEST(b->size() >= len);
      BOOST_TEST(b->size() == alloy::engine::usable_size(b->data()));
      std::memset(b->data(), 0x3C, b->size());
      a.free_bytes(*b, alloy::Alignment::from_log2(4));  // with the reported length
    }
  }
  auto b = heap.allocator().alloc_bytes_at_least(100, alloy::Alignment{});
  BOOST_REQUIRE(b.ok());
  BOOST_TEST(b->size() > 100u);  // the size class of 100 bytes (104)
  heap.allocator().free_bytes(*b, alloy::Alignment{});
  BOOST_TEST(heap.stats().live_blocks == 0u);
}

// owns(): a heap answers for its own blocks only; the default allocator,
// whose free takes a block of any heap, for every engine block.
BOOST_AUTO_TEST_CASE(owns_tells_the_heaps_apart) {
  alloy::Heap a = make();
  alloy::Heap b = make();
  alloy::Allocator def = alloy::Heap::default_allocator();
  void* pa = a.alloc(100);
  void* pb = b.alloc(5 << 20);  // a huge block
  void* pd = def.alloc<char>(40)->data();
  static char not_engine[16];
  BOOST_TEST((a.allocator().owns(pa) == alloy::Ownership::kYes));
  BOOST_TEST((a.allocator().owns(pb) == alloy::Ownership::kNo));
  BOOST_TEST((a.allocator().owns(pd) == alloy::Ownership::kNo));
  BOOST_TEST((b.allocator().owns(pb) == alloy::Ownership::kYes));
  BOOST_TEST((a.allocator().owns(not_engine) == alloy::Ownership::kNo));
  BOOST_TEST((def.owns(pa) == alloy::Ownership::kYes));
  BOOST_TEST((def.owns(pd) == alloy::Ownership::kYes));
  BOOST_TEST((def.owns(not_engine) == alloy::Ownership::kNo));
  alloy::Heap::free(pa);
  alloy::Heap::free(pb);
  alloy::Heap::free(pd);
}

BOOST_AUTO_TEST_CASE(alloc_zeroed_is_zero_on_both_tables) {
  alloy::Heap heap = make();
  for (alloy::Allocator a : {heap.allocator(), alloy::Heap::default_allocator()}) {
    for (std::size_t len : {std::size_t{24}, std::size_t{70000}, std::size_t{3} << 20}) {
      for (std::size_t align : {std::size_t{16}, std::size_t{4096}}) {
        const auto al = *alloy::Alignment::from_bytes(align);
        auto dirty = a.alloc_bytes(len, al);
        BOOST_REQUIRE(dirty.ok());
        std::memset(dirty->data(), 0xFF, len);
        a.free_bytes(*dirty, al);
        auto z = a.alloc_bytes_zeroed(len, al);
        BOOST_REQUIRE(z.ok());
        BOOST_TEST(al.check(z->data()));
        BOOST_TEST(std::all_of(z->begin(), z->end(), [](std::byte x) { return x == std::byte{0}; }));
        a.free_bytes(*z, al);
      }
    }
  }
}
