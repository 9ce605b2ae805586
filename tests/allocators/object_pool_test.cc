#define BOOST_TEST_MODULE object_pool
#include <boost/test/unit_test.hpp>

#include <string>
#include <vector>

#include "alloy/allocators/c_allocator.h"
#include "alloy/allocators/object_pool.h"
#include "tests/allocators/family_test_util.h"
#include "tests/support/capture_stderr.h"
#include "tests/support/recording_allocator.h"

using alloy::ObjectPool;
namespace t = alloy::testing;

BOOST_AUTO_TEST_CASE(hooks_run_on_get_and_put) {
  int constructed = 0;
  int resets = 0;
  ObjectPool<std::string> pool(
      alloy::c_allocator(),
      {.construct =
           [&](void* m) {
             ++constructed;
             auto* s = new (m) std::string;
             s->reserve(1000);
             return s;
           },
       .reset = [&](std::string& s) {
         ++resets;
         s.clear();
       }});
  auto a = pool.get();
  BOOST_REQUIRE(a);
  BOOST_CHECK_EQUAL(constructed, 1);
  BOOST_CHECK_GE((*a)->capacity(), 1000u);
  (*a)->append("hello");
  std::string* where = *a;
  pool.put(*a);
  BOOST_CHECK_EQUAL(resets, 1);
  auto b = pool.get();
  BOOST_REQUIRE(b);
  BOOST_CHECK_EQUAL(*b, where);        // reused, not rebuilt
  BOOST_CHECK_EQUAL(constructed, 1);
  BOOST_CHECK((*b)->empty());           // reset hook cleared it
  BOOST_CHECK_GE((*b)->capacity(), 1000u);  // ... and kept the capacity
  pool.put(*b);
}

BOOST_AUTO_TEST_CASE(stats_track_available_in_use_and_created) {
  ObjectPool<std::vector<int>> pool(alloy::c_allocator());
  std::vector<std::vector<int>*> out;
  for (int i = 0; i < 10; ++i) out.push_back(*pool.get());
  auto s = pool.stats();
  BOOST_CHECK_EQUAL(s.in_use, 10u);
  BOOST_CHECK_EQUAL(s.available, 0u);
  BOOST_CHECK_EQUAL(s.total_created, 10u);
  for (int i = 0; i < 6; ++i) {
    pool.put(out.back());
    out.pop_back();
  }
  s = pool.stats();
  BOOST_CHECK_EQUAL(s.in_use, 4u);
  BOOST_CHECK_EQUAL(s.available, 6u);
  for (int i = 0; i < 3; ++i) out.push_back(*pool.get());
  s = pool.stats();
  BOOST_CHECK_EQUAL(s.total_created, 10u);
  BOOST_CHECK_EQUAL(s.available, 3u);
  for (auto* v : out) pool.put(v);
  BOOST_CHECK_EQUAL(pool.stats().in_use, 0u);
}

BOOST_AUTO_TEST_CASE(distinct_objects_do_not_overlap) {
  ObjectPool<std::array<std::uint32_t, 16>> pool(alloy::c_allocator());
  std::vector<std::array<std::uint32_t, 16>*> live;
  for (std::uint32_t i = 0; i < 500; ++i) {
    auto* p = *pool.get();
    p->fill(i);
    live.push_back(p);
  }
  for (std::uint32_t i = 0; i < 500; ++i) {
    for (auto v : *live[i]) BOOST_REQUIRE_EQUAL(v, i);
  }
  for (auto* p : live) pool.put(p);
}

BOOST_AUTO_TEST_CASE(shrink_destroys_down_to_target_and_frees_memory) {
  static int alive = 0;
  struct Tracked {
    Tracked() { ++alive; }
    ~Tracked() { --alive; }
    char payload[100];
  };
  t::RecordingAllocator child;
  {
    ObjectPool<Tracked> pool(child.allocator());
    BOOST_REQUIRE(pool.preheat(20));
    BOOST_CHECK_EQUAL(pool.stats().available, 20u);
    BOOST_CHECK_EQUAL(alive, 20);
    Tracked* held = *pool.get();
    BOOST_CHECK_EQUAL(pool.shrink(5), 14u);
    BOOST_CHECK_EQUAL(pool.stats().available, 5u);
    BOOST_CHECK_EQUAL(alive, 6);
    BOOST_CHECK_EQUAL(child.frees, 14u);
    BOOST_CHECK_EQUAL(pool.shrink(10), 0u);  // already below target
    pool.put(held);
  }
  BOOST_CHECK_EQUAL(alive, 0);           // destructor destroyed the rest
  BOOST_CHECK_EQUAL(child.live_bytes, 0u);
}

BOOST_AUTO_TEST_CASE(child_refusal_is_an_error_and_pool_stays_usable) {
  t::RecordingAllocator child;
  ObjectPool<int> pool(child.allocator());
  int* one = *pool.get();
  pool.put(one);
  child.refuse(true);
  auto a = pool.get();  // served from the available list: no child call
  BOOST_REQUIRE(a);
  auto b = pool.get();  // needs a new object: refused
  BOOST_CHECK(!b);
  BOOST_CHECK(b.error() == alloy::AllocError::kOutOfMemory);
  BOOST_CHECK(!pool.preheat(3));
  child.refuse(false);
  auto c = pool.get();
  BOOST_REQUIRE(c);
  pool.put(*a);
  pool.put(*c);
  BOOST_CHECK_EQUAL(pool.stats().total_created, 2u);
}

BOOST_AUTO_TEST_CASE(over_aligned_objects_keep_their_alignment) {
  struct alignas(64) Line { char bytes[64]; };
  struct alignas(4096) Page { char bytes[4096]; };
  ObjectPool<Line> lines(alloy::c_allocator());
  ObjectPool<Page> pages(alloy::c_allocator());
  std::vector<Line*> l;
  std::vector<Page*> p;
  for (int i = 0; i < 8; ++i) {
    l.push_back(*lines.get());
    p.push_back(*pages.get());
    BOOST_CHECK_EQUAL(reinterpret_cast<std::uintptr_t>(l.back()) % 64, 0u);
    BOOST_CHECK_EQUAL(reinterpret_cast<std::uintptr_t>(p.back()) % 4096, 0u);
  }
  for (auto* x : l) lines.put(x);
  for (auto* x : p) pages.put(x);
}

// Issue 10 (wrong frees across the family): a double put listed the object
// twice and get() then handed the same object to two callers.
BOOST_AUTO_TEST_CASE(double_put_and_other_pools_objects_are_refused) {
  int resets = 0;
  ObjectPool<std::string> pool(alloy::c_allocator(),
                               {.construct = nullptr,
                                .reset = [&](std::string& s) { ++resets, s.clear(); }});
  ObjectPool<std::string> other(alloy::c_allocator());
  std::string* a = *pool.get();
  std::string* b = *pool.get();
  std::string* theirs = *other.get();
  BOOST_CHECK(pool.put(a));
  t::CaptureStderr err;
  BOOST_CHECK(!pool.put(a));  // double put
  BOOST_CHECK(pool.last_wrong_free().kind == alloy::WrongFree::kDouble);
  BOOST_CHECK(!pool.put(theirs));  // another pool's object
  BOOST_CHECK(pool.last_wrong_free().kind == alloy::WrongFree::kForeign);
  BOOST_CHECK_EQUAL(pool.refused_frees(), 2u);
  BOOST_CHECK_EQUAL(resets, 1);  // the hook ran once, for the good put
  const auto s = pool.stats();
  BOOST_CHECK_EQUAL(s.available, 1u);
  BOOST_CHECK_EQUAL(s.in_use, 1u);
  const std::string text = err.text();
  BOOST_CHECK_MESSAGE(text.find("alloy::ObjectPool: refused free of") != std::string::npos, text);
  BOOST_CHECK_MESSAGE(text.find("double free") != std::string::npos, text);
  BOOST_CHECK_MESSAGE(text.find("called from 0x") != std::string::npos, text);
  // Never the same object to two callers.
  std::string* c = *pool.get();
  std::string* d = *pool.get();
  BOOST_CHECK(c != d && c != b && d != b);
  // The pool stays consistent: shrink and puts work as before.
  BOOST_CHECK(pool.put(c));
  BOOST_CHECK_EQUAL(pool.shrink(0), 1u);
  BOOST_CHECK(pool.put(b) && pool.put(d));
  BOOST_CHECK(other.put(theirs));
}
