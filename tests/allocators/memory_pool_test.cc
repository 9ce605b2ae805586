#define BOOST_TEST_MODULE memory_pool
#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <cstring>
#include <string>
#include <set>

#include "alloy/allocators/c_allocator.h"
#include "alloy/allocators/memory_pool.h"
#include "alloy/allocators/page_allocator.h"
#include "tests/allocators/family_test_util.h"
#include "tests/support/capture_stderr.h"
#include "tests/support/recording_allocator.h"

using alloy::Alignment;
using alloy::MemoryPool;
using alloy::NodePool;
using alloy::ResetMode;
namespace t = alloy::testing;

BOOST_AUTO_TEST_CASE(node_alignment_one_byte_to_64k) {
  for (std::size_t align = 1; align <= 64 * 1024; align *= 2) {
    NodePool pool(alloy::page_allocator(), 24, *Alignment::from_bytes(align),
                  {.first_slab_nodes = 4});
    std::vector<void*> nodes;
    for (int i = 0; i < 20; ++i) {
      void* p = pool.acquire();
      BOOST_REQUIRE(p != nullptr);
      BOOST_REQUIRE_MESSAGE(reinterpret_cast<std::uintptr_t>(p) % align == 0, "align " << align);
      std::memset(p, i, 24);
      nodes.push_back(p);
    }
    for (int i = 0; i < 20; ++i) {
      BOOST_REQUIRE_EQUAL(static_cast<unsigned char*>(nodes[i])[23], i);
    }
    // The handle serves the pool's own alignment and refuses stronger ones.
    alloy::Allocator a = pool.allocator();
    BOOST_CHECK(a.alloc_bytes(24, *Alignment::from_bytes(align)));
    const std::size_t node_align = pool.node_alignment().bytes();
    BOOST_CHECK_EQUAL(node_align, std::max<std::size_t>(align, 8));
    BOOST_CHECK(!a.alloc_bytes(8, *Alignment::from_bytes(node_align * 2)));
  }
}

BOOST_AUTO_TEST_CASE(typed_aligned_pool) {
  struct Small { char c; };
  MemoryPool<Small, 64> pool(alloy::c_allocator());
  static_assert(MemoryPool<Small, 64>::kNodeSize == 64);
  for (int i = 0; i < 100; ++i) {
    auto p = pool.create(Small{'x'});
    BOOST_REQUIRE(p);
    BOOST_CHECK_EQUAL(reinterpret_cast<std::uintptr_t>(*p) % 64, 0u);
  }
  BOOST_CHECK_EQUAL(pool.in_use(), 100u);
}

BOOST_AUTO_TEST_CASE(random_create_destroy_never_overlaps) {
  NodePool pool(alloy::c_allocator(), 40, Alignment::from_log2(3), {.first_slab_nodes = 8});
  std::mt19937 rng(1);
  std::vector<std::pair<void*, std::size_t>> live;  // node, tag
  std::size_t tag = 0;
  for (int step = 0; step < 20000; ++step) {
    if (live.empty() || rng() % 3 != 0) {
      void* p = pool.acquire();
      BOOST_REQUIRE(p != nullptr);
      t::fill(alloy::Bytes(static_cast<std::byte*>(p), 40), ++tag);
      live.push_back({p, tag});
    } else {
      const std::size_t i = rng() % live.size();
      auto [p, tg] = live[i];
      BOOST_REQUIRE(t::intact(alloy::Bytes(static_cast<std::byte*>(p), 40), tg, 40));
      pool.release(p);
      live[i] = live.back();
      live.pop_back();
    }
  }
  std::set<void*> distinct;
  for (auto [p, tg] : live) {
    BOOST_REQUIRE(t::intact(alloy::Bytes(static_cast<std::byte*>(p), 40), tg, 40));
    BOOST_REQUIRE(pool.owns(p));
    distinct.insert(p);
  }
  BOOST_CHECK_EQUAL(distinct.size(), live.size());
  BOOST_CHECK_EQUAL(pool.in_use(), live.size());
}

BOOST_AUTO_TEST_CASE(destroy_runs_destructor_and_reuses_node) {
  static int alive = 0;
  struct Tracked {
    explicit Tracked(int v) : value(v) { ++alive; }
    ~Tracked() { --alive; }
    int value;
  };
  MemoryPool<Tracked> pool(alloy::c_allocator());
  auto a = pool.create(7);
  BOOST_REQUIRE(a);
  BOOST_CHECK_EQUAL((*a)->value, 7);
  BOOST_CHECK_EQUAL(alive, 1);
  Tracked* where = *a;
  pool.destroy(*a);
  BOOST_CHECK_EQUAL(alive, 0);
  auto b = pool.create(8);
  BOOST_REQUIRE(b);
  BOOST_CHECK_EQUAL(*b, where);  // LIFO free list: O(1) reuse
  pool.destroy(*b);
  pool.destroy(nullptr);
}

BOOST_AUTO_TEST_CASE(preheat_means_no_child_calls_later) {
  t::RecordingAllocator child;
  MemoryPool<std::uint64_t> pool(child.allocator());
  BOOST_REQUIRE(pool.preheat(5000));
  const std::size_t calls = child.allocs;
  BOOST_CHECK_LE(calls, 2u);
  std::vector<std::uint64_t*> v;
  for (int i = 0; i < 5000; ++i) v.push_back(*pool.create(i));
  BOOST_CHECK_EQUAL(child.allocs, calls);
  for (auto* p : v) pool.destroy(p);
}

BOOST_AUTO_TEST_CASE(non_growable_pool_refuses_past_capacity) {
  t::RecordingAllocator child;
  MemoryPool<double> pool(child.allocator(), {.capacity = 100});
  BOOST_CHECK(!pool.nodes().growable());
  std::vector<double*> v;
  for (int i = 0; i < 100; ++i) {
    auto r = pool.create(i * 1.5);
    BOOST_REQUIRE(r);
    v.push_back(*r);
  }
  BOOST_CHECK(!pool.create(0.0));                 // refused: Result error, no abort
  BOOST_CHECK(!pool.allocator().create<double>(1.0));
  BOOST_CHECK(!pool.preheat(1));
  BOOST_CHECK_EQUAL(child.allocs, 1u);            // one slab, never more
  for (int i = 0; i < 100; ++i) BOOST_CHECK_EQUAL(*v[i], i * 1.5);
  pool.destroy(v.back());
  v.pop_back();
  BOOST_CHECK(pool.create(2.0));                  // usable again after a release
  BOOST_CHECK(!pool.create(3.0));
  BOOST_CHECK_EQUAL(pool.capacity(), 100u);
}

BOOST_AUTO_TEST_CASE(reset_modes) {
  t::RecordingAllocator child;
  NodePool pool(child.allocator(), 32, Alignment::from_log2(3), {.first_slab_nodes = 16});
  for (int i = 0; i < 1000; ++i) BOOST_REQUIRE(pool.acquire() != nullptr);
  const std::size_t slabs = pool.slab_count();
  const std::size_t bytes = pool.slab_bytes();
  BOOST_CHECK_GT(slabs, 3u);

  BOOST_CHECK(pool.reset(ResetMode::retain_capacity()));
  BOOST_CHECK_EQUAL(pool.in_use(), 0u);
  BOOST_CHECK_EQUAL(pool.slab_bytes(), bytes);
  const std::size_t calls = child.allocs;
  for (int i = 0; i < 1000; ++i) BOOST_REQUIRE(pool.acquire() != nullptr);
  BOOST_CHECK_EQUAL(child.allocs, calls);  // reused the retained slabs

  BOOST_CHECK(pool.reset(ResetMode::retain_with_limit(bytes / 2)));
  BOOST_CHECK_LE(pool.slab_bytes(), bytes / 2);
  BOOST_CHECK_GT(pool.slab_count(), 0u);
  BOOST_CHECK_EQUAL(child.live_bytes, pool.slab_bytes());

  BOOST_CHECK(pool.reset(ResetMode::free_all()));
  BOOST_CHECK_EQUAL(pool.slab_count(), 0u);
  BOOST_CHECK_EQUAL(child.live_bytes, 0u);
  BOOST_CHECK(pool.acquire() != nullptr);  // usable afterwards
}

BOOST_AUTO_TEST_CASE(child_refusal_is_null_and_pool_stays_usable) {
  t::RecordingAllocator child;
  NodePool pool(child.allocator(), 16, Alignment::from_log2(3), {.first_slab_nodes = 4});
  for (int i = 0; i < 4; ++i) BOOST_REQUIRE(pool.acquire() != nullptr);
  child.refuse(true);
  BOOST_CHECK(pool.acquire() == nullptr);
  BOOST_CHECK(!pool.preheat(10));
  child.refuse(false);
  BOOST_CHECK(pool.acquire() != nullptr);
  // Oversized requests through the handle are refused.
  BOOST_CHECK(!pool.allocator().alloc<char>(17));
  BOOST_CHECK(pool.allocator().alloc<char>(16));
}

BOOST_AUTO_TEST_CASE(untyped_pool_through_handle_resize_and_realloc) {
  NodePool pool(alloy::c_allocator(), 64, Alignment::from_log2(4));
  alloy::Allocator a = pool.allocator();
  auto v = a.alloc<char>(10);
  BOOST_REQUIRE(v);
  std::memcpy(v->data(), "0123456789", 10);
  BOOST_CHECK(a.resize(*v, 64));   // within the node
  BOOST_CHECK(!a.resize(*v, 65));  // beyond it
  auto r = a.realloc(*v, 40);
  BOOST_REQUIRE(r);
  BOOST_CHECK_EQUAL(std::memcmp(r->data(), "0123456789", 10), 0);
  BOOST_CHECK(!a.realloc(*r, 100));  // cannot serve 100 B: error, old intact
  BOOST_CHECK_EQUAL(std::memcmp(r->data(), "0123456789", 10), 0);
  a.free(*r);
  BOOST_CHECK_EQUAL(pool.in_use(), 0u);
}

// ---- Wrong frees (issue 10): refused, reported, never a node handed out twice.

namespace {
// Acquires every node a fixed pool has left and checks none is live already.
void check_distinct_to_capacity(NodePool& pool, std::set<void*> live) {
  while (void* p = pool.acquire()) {
    BOOST_REQUIRE_MESSAGE(live.insert(p).second, "node " << p << " handed out twice");
  }
  BOOST_CHECK_EQUAL(live.size(), pool.capacity());
  BOOST_CHECK_EQUAL(pool.in_use(), pool.capacity());
}
}  // namespace

BOOST_AUTO_TEST_CASE(foreign_and_interior_frees_are_refused_and_reported) {
  NodePool pool(alloy::c_allocator(), 32, Alignment::from_log2(3), {.capacity = 8});
  NodePool other(alloy::c_allocator(), 32, Alignment::from_log2(3), {.capacity = 8});
  void* a = pool.acquire();
  void* b = pool.acquire();
  void* theirs = other.acquire();
  BOOST_REQUIRE(a && b && theirs);
  alignas(16) std::byte local[64];
  void* heap = std::malloc(32);
  t::CaptureStderr err;
  BOOST_CHECK(!pool.release(local, 0xabc001));
  BOOST_CHECK(pool.last_wrong_free().kind == alloy::WrongFree::kForeign);
  BOOST_CHECK(!pool.release(heap, 0xabc002));
  BOOST_CHECK(!pool.release(theirs, 0xabc003));
  BOOST_CHECK(!pool.release(static_cast<std::byte*>(a) + 8, 0xabc004));
  BOOST_CHECK(pool.last_wrong_free().kind == alloy::WrongFree::kInterior);
  BOOST_CHECK_EQUAL(pool.last_wrong_free().ret_addr, 0xabc004u);
  // Inside the slab but never handed out: taking it would hand it out twice.
  void* uncarved = static_cast<std::byte*>(b) + pool.node_size();
  BOOST_CHECK(!pool.release(uncarved, 0xabc005));
  BOOST_CHECK(pool.last_wrong_free().kind == alloy::WrongFree::kForeign);
  // Through the handle: a length larger than the node.
  pool.allocator().free(std::span<std::byte>(static_cast<std::byte*>(a), 33));
  BOOST_CHECK(pool.last_wrong_free().kind == alloy::WrongFree::kWrongSize);
  const std::string text = err.text();
  BOOST_CHECK_MESSAGE(text.find("alloy::NodePool: refused free of") != std::string::npos, text);
  BOOST_CHECK_MESSAGE(text.find("foreign pointer") != std::string::npos, text);
  BOOST_CHECK_MESSAGE(text.find("interior") != std::string::npos, text);
  BOOST_CHECK_MESSAGE(text.find("wrong size") != std::string::npos, text);
  BOOST_CHECK_MESSAGE(text.find("called from 0xabc004") != std::string::npos, text);
  BOOST_CHECK_EQUAL(pool.refused_frees(), 6u);
  BOOST_CHECK_EQUAL(pool.in_use(), 2u);  // nothing changed
  check_distinct_to_capacity(pool, {a, b});
  BOOST_CHECK(other.release(theirs));
  std::free(heap);
}

BOOST_AUTO_TEST_CASE(double_free_is_refused_in_checked_builds) {
  NodePool pool(alloy::c_allocator(), 24, Alignment::from_log2(3), {.capacity = 16});
  void* a = pool.acquire();
  void* b = pool.acquire();
  BOOST_REQUIRE(a && b);
  BOOST_CHECK(pool.release(a));
  if (!alloy::kCheckedFrees) {
    BOOST_TEST_MESSAGE("release build: double frees are not checked");
    return;
  }
  t::CaptureStderr err;
  BOOST_CHECK(!pool.release(a, 0xd0b1e));
  BOOST_CHECK(pool.last_wrong_free().kind == alloy::WrongFree::kDouble);
  BOOST_CHECK_MESSAGE(err.contains("double free"), err.text());
  BOOST_CHECK_MESSAGE(err.contains("called from 0xd0b1e"), err.text());
  // Through the handle too.
  pool.allocator().free(std::span<std::byte>(static_cast<std::byte*>(a), 24));
  BOOST_CHECK_EQUAL(pool.refused_frees(), 2u);
  BOOST_CHECK_EQUAL(pool.in_use(), 1u);
  check_distinct_to_capacity(pool, {b});
  // Live user data equal to the free mark is not taken for a double free.
  BOOST_CHECK(pool.reset());
  void* c = pool.acquire();
  void* d = pool.acquire();
  BOOST_CHECK(pool.release(d));
  std::memcpy(c, d, 24);  // c now holds d's link and mark bytes
  std::uintptr_t* words = static_cast<std::uintptr_t*>(c);
  words[1] = reinterpret_cast<std::uintptr_t>(c) ^ std::uintptr_t{0x9e3779b97f4a7c15};
  BOOST_CHECK(pool.release(c));
  BOOST_CHECK_EQUAL(pool.in_use(), 0u);
}

BOOST_AUTO_TEST_CASE(memory_pool_destroy_refuses_before_running_the_destructor) {
  static int destroyed = 0;
  struct Tracked {
    ~Tracked() { ++destroyed; }
    long value = 1;
  };
  MemoryPool<Tracked> pool(alloy::c_allocator(), {.capacity = 4});
  pool.set_report_to_stderr(false);
  auto a = pool.create();
  BOOST_REQUIRE(a);
  Tracked outsider;
  BOOST_CHECK(!pool.destroy(&outsider));
  BOOST_CHECK_EQUAL(destroyed, 0);
  BOOST_CHECK(pool.last_wrong_free().kind == alloy::WrongFree::kForeign);
  BOOST_CHECK(pool.destroy(*a));
  BOOST_CHECK_EQUAL(destroyed, 1);
  if (alloy::kCheckedFrees) {
    BOOST_CHECK(!pool.destroy(*a));  // double: ~T not run again
    BOOST_CHECK_EQUAL(destroyed, 1);
    BOOST_CHECK(pool.last_wrong_free().kind == alloy::WrongFree::kDouble);
  }
  BOOST_CHECK(!pool.deallocate(reinterpret_cast<Tracked*>(reinterpret_cast<char*>(*a) + 4)));
  BOOST_CHECK_EQUAL(pool.in_use(), 0u);
  std::set<Tracked*> seen;
  for (int i = 0; i < 4; ++i) {
    auto p = pool.create();
    BOOST_REQUIRE(p);
    BOOST_CHECK(seen.insert(*p).second);
  }
  BOOST_CHECK(!pool.create());
  for (Tracked* p : seen) pool.destroy(p);
  destroyed = 0;
}

BOOST_AUTO_TEST_CASE(growable_pool_finds_frees_in_older_slabs) {
  NodePool pool(alloy::c_allocator(), 16, Alignment::from_log2(3),
                {.first_slab_nodes = 2, .max_slab_nodes = 4});
  std::vector<void*> nodes;
  for (int i = 0; i < 40; ++i) nodes.push_back(pool.acquire());
  BOOST_CHECK_GT(pool.slab_count(), 5u);
  for (void* p : nodes) BOOST_REQUIRE(pool.release(p));  // oldest slab first
  BOOST_CHECK_EQUAL(pool.refused_frees(), 0u);
  BOOST_CHECK_EQUAL(pool.in_use(), 0u);
}
