// alloy::Heap's contracts (heap.h): every block a heap hands out, by alloc,
// resize, remap or realloc of any size kind, belongs to that heap (ceiling,
// stats, visit, destroy); small ceilings serve small blocks; wrong frees are
// refused (and reported in checked builds), never a block handed out twice.
#define BOOST_TEST_MODULE heap_contract
#include <boost/test/unit_test.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/allocators/engine/engine.h"
#include "alloy/allocators/engine/heap.h"
#include "alloy/allocators/engine/internal.h"
#include "tests/support/pattern.h"

namespace {

using alloy::engine::detail::kChecked;

alloy::Heap make(alloy::HeapOptions o = {}) {
  auto h = alloy::Heap::create(o);
  BOOST_REQUIRE(h.ok());
  return std::move(*h);
}

// True if the OS page holding p is mapped (mincore fails with ENOMEM on an
// unmapped range).
bool mapped(const void* p) {
  const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  unsigned char vec;
  void* a = reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(p) & ~(page - 1));
  return mincore(a, page, &vec) == 0;
}

// Every 97th byte of the pattern (tests/support/pattern.h): enough to see a
// block's contents kept, cheap for huge ones.
constexpr alloy::testing::Coverage kSparse{.stride = 97};
void fill(void* p, std::size_t n) { alloy::testing::fill(p, n, 1, kSparse); }
bool intact(const void* p, std::size_t n) { return alloy::testing::intact(p, n, 1, kSparse); }

std::vector<void*> visited(alloy::Heap& heap) {
  std::vector<void*> v;
  heap.visit([&](void* p, std::size_t) { v.push_back(p); });
  return v;
}

// Everything fd 2 receives while f runs.
template <class F>
std::string capture_stderr(F f) {
  std::fflush(stderr);
  char path[] = "/tmp/heap_contract_XXXXXX";
  const int fd = mkstemp(path);
  BOOST_REQUIRE(fd >= 0);
  const int saved = dup(2);
  dup2(fd, 2);
  f();
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  std::string out;
  char buf[512];
  lseek(fd, 0, SEEK_SET);
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  close(fd);
  unlink(path);
  return out;
}

std::string hex(std::uintptr_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%lx", static_cast<unsigned long>(v));
  return b;
}

constexpr std::size_t kSmall = 100;
constexpr std::size_t kLarge = std::size_t{200} << 10;
constexpr std::size_t kHuge = std::size_t{4} << 20;
constexpr std::size_t kHuger = std::size_t{64} << 20;
constexpr std::size_t kSizes[] = {kSmall, kLarge, kHuge, kHuger};

enum class Op { kHandleRealloc, kHandleResize, kHandleRemap, kHeapRealloc, kHeapResize, kEngineRealloc };
constexpr Op kOps[] = {Op::kHandleRealloc, Op::kHandleResize, Op::kHandleRemap,
                       Op::kHeapRealloc,   Op::kHeapResize,   Op::kEngineRealloc};
const char* name(Op op) {
  switch (op) {
    case Op::kHandleRealloc: return "handle realloc";
    case Op::kHandleResize: return "handle resize";
    case Op::kHandleRemap: return "handle remap";
    case Op::kHeapRealloc: return "Heap::realloc";
    case Op::kHeapResize: return "Heap::resize";
    case Op::kEngineRealloc: return "engine::realloc";
  }
  return "?";
}
// Ops that must succeed when memory allows (the others may decline).
bool must_succeed(Op op) {
  return op == Op::kHandleRealloc || op == Op::kHeapRealloc || op == Op::kEngineRealloc;
}

// Applies op to block p (len bytes) for new_len bytes; the block's address
// afterwards, or null if the op declined or failed (p intact then).
void* apply(Op op, alloy::Allocator a, void* p, std::size_t len, std::size_t new_len) {
  const auto align = alloy::Alignment::from_log2(4);
  switch (op) {
    case Op::kHandleRealloc: {
      auto r = a.realloc(std::span<std::byte>(static_cast<std::byte*>(p), len), new_len);
      return r.ok() ? static_cast<void*>(r->data()) : nullptr;
    }
    case Op::kHandleResize:
      return a.raw_resize(alloy::Bytes(static_cast<std::byte*>(p), len), align, new_len, 0) ? p : nullptr;
    case Op::kHandleRemap:
      return a.raw_remap(alloy::Bytes(static_cast<std::byte*>(p), len), align, new_len, 0);
    case Op::kHeapRealloc: return alloy::Heap::realloc(p, new_len);
    case Op::kHeapResize: return alloy::Heap::resize(p, new_len) ? p : nullptr;
    case Op::kEngineRealloc: return alloy::engine::realloc(p, new_len);
  }
  return nullptr;
}

}  // namespace

// Runs body(op, heap, p, from, to) for every op and every pair of distinct
// sizes, each on a fresh heap holding one filled block p of `from` bytes.
template <class Body>
void for_each_transition(Body body) {
  for (Op op : kOps) {
    for (std::size_t from : kSizes) {
      for (std::size_t to : kSizes) {
        if (from == to) continue;
        BOOST_TEST_CONTEXT(name(op) << " " << from << " -> " << to) {
          alloy::Heap heap = make();
          void* p = heap.alloc(from);
          BOOST_REQUIRE(p != nullptr);
          fill(p, from);
          body(op, heap, p, from, to);
        }
      }
    }
  }
}

// Every size-kind transition, by every op: the result belongs to the heap
// (visit and stats see exactly it, usable size holds it) and dies with
// destroy (its memory is unmapped).
BOOST_AUTO_TEST_CASE(every_transition_stays_in_its_heap) {
  for_each_transition([](Op op, alloy::Heap& heap, void* p, std::size_t from, std::size_t to) {
    void* q = apply(op, heap.allocator(), p, from, to);
    if (must_succeed(op)) BOOST_REQUIRE(q != nullptr);
    void* live = q != nullptr ? q : p;
    const std::size_t len = q != nullptr ? to : from;
    BOOST_CHECK(intact(live, std::min(from, to)));
    BOOST_CHECK_GE(alloy::engine::usable_size(live), len);
    const std::vector<void*> seen = visited(heap);
    BOOST_REQUIRE_EQUAL(seen.size(), 1u);
    BOOST_CHECK(seen[0] == live);
    const alloy::HeapStats s = heap.stats();
    BOOST_CHECK_EQUAL(s.live_blocks, 1u);
    BOOST_CHECK_GE(s.live_bytes, len);
    BOOST_CHECK_GE(heap.committed(), len);
    BOOST_CHECK(mapped(live));
    heap.destroy();
    BOOST_CHECK(!mapped(live));
    BOOST_CHECK(!alloy::engine::owns(live));
  });
}

// Under a ceiling that holds the first block and nothing more, every growth
// to another kind is refused with the block intact; a shrink never fails and
// the ceiling holds.
BOOST_AUTO_TEST_CASE(every_transition_obeys_the_ceiling) {
  for_each_transition([](Op op, alloy::Heap& heap, void* p, std::size_t from, std::size_t to) {
    heap.set_ceiling(heap.committed());
    void* q = apply(op, heap.allocator(), p, from, to);
    BOOST_CHECK_LE(heap.committed(), heap.ceiling());
    if (to > alloy::engine::usable_size(p)) {
      BOOST_CHECK(q == nullptr);
      BOOST_CHECK(intact(p, from));
    } else if (must_succeed(op)) {
      BOOST_CHECK(q != nullptr);
    }
    void* live = q != nullptr ? q : p;
    BOOST_CHECK(intact(live, std::min(from, to)));
    const std::vector<void*> seen = visited(heap);
    BOOST_REQUIRE_EQUAL(seen.size(), 1u);
    BOOST_CHECK(seen[0] == live);
    BOOST_CHECK_EQUAL(heap.stats().live_blocks, 1u);
    alloy::Heap::free(live);
    BOOST_CHECK_EQUAL(heap.stats().live_blocks, 0u);
  });
}

// The case: 4 MiB grown to 64 MiB under a 16 MiB ceiling.
BOOST_AUTO_TEST_CASE(huge_realloc_past_the_ceiling_is_refused) {
  alloy::Heap heap = make({.ceiling = std::size_t{16} << 20});
  alloy::Allocator a = heap.allocator();
  auto r = a.alloc<std::byte>(kHuge);
  BOOST_REQUIRE(r.ok());
  fill(r->data(), kHuge);
  auto g = a.realloc(*r, kHuger);
  BOOST_CHECK(!g.ok());
  BOOST_CHECK(alloy::Heap::realloc(r->data(), kHuger) == nullptr);
  BOOST_CHECK(alloy::engine::realloc(r->data(), kHuger) == nullptr);
  BOOST_CHECK(intact(r->data(), kHuge));
  BOOST_CHECK_LE(heap.committed(), std::size_t{16} << 20);
  BOOST_CHECK_EQUAL(heap.stats().huge_blocks, 1u);
  heap.set_ceiling(SIZE_MAX);
  auto ok = a.realloc(*r, kHuger);
  BOOST_REQUIRE(ok.ok());
  BOOST_CHECK(intact(ok->data(), kHuge));
  BOOST_CHECK_GE(heap.stats().huge_bytes, kHuger);
  void* big = ok->data();
  heap.destroy();
  BOOST_CHECK(!mapped(big));
}

// The default heap's handle and Heap::realloc of default-heap blocks keep
// working across every kind, and never land in a user heap.
BOOST_AUTO_TEST_CASE(default_heap_transitions) {
  alloy::Heap bystander = make();
  alloy::Allocator a = alloy::Heap::default_allocator();
  for (std::size_t from : kSizes) {
    for (std::size_t to : kSizes) {
      if (from == to) continue;
      BOOST_TEST_CONTEXT(from << " -> " << to) {
        auto r = a.alloc<std::byte>(from);
        BOOST_REQUIRE(r.ok());
        fill(r->data(), from);
        auto g = a.realloc(*r, to);
        BOOST_REQUIRE(g.ok());
        BOOST_CHECK(intact(g->data(), std::min(from, to)));
        void* q = alloy::Heap::realloc(g->data(), from);
        BOOST_REQUIRE(q != nullptr);
        BOOST_CHECK(intact(q, std::min(from, to)));
        void* e = alloy::engine::realloc(q, to);
        BOOST_REQUIRE(e != nullptr);
        BOOST_CHECK(intact(e, std::min(from, to)));
        BOOST_CHECK(visited(bystander).empty());
        alloy::engine::free(e);
      }
    }
  }
}

// A ceiling far below a segment serves about that many bytes of small blocks:
// 8 KiB of segment header, then blocks charged per 4 KiB page.
BOOST_AUTO_TEST_CASE(small_ceilings_serve_small_blocks) {
  for (std::size_t cap : {std::size_t{12} << 10, std::size_t{16} << 10, std::size_t{64} << 10,
                          std::size_t{100} << 10}) {
    BOOST_TEST_CONTEXT("ceiling " << cap) {
      alloy::Heap heap = make({.ceiling = cap});
      std::vector<void*> v;
      for (void* p; (p = heap.alloc(16)) != nullptr;) {
        std::memset(p, 1, 16);
        v.push_back(p);
      }
      BOOST_CHECK_LE(heap.committed(), cap);
      BOOST_CHECK_EQUAL(v.size() * 16, cap - (8u << 10));
      // A second size class takes a page of its own: what is left of the
      // ceiling, and nothing when nothing is.
      BOOST_CHECK(heap.alloc(200) == nullptr);
      for (void* p : v) alloy::Heap::free(p);
      heap.collect();
      BOOST_CHECK_EQUAL(heap.committed(), 0u);
      // And the heap is usable again, for any size that fits.
      void* a = heap.alloc(2000);
      BOOST_REQUIRE(a != nullptr);
      BOOST_CHECK_LE(heap.committed(), cap);
      alloy::Heap::free(a);
    }
  }
  // Below the 8 KiB header plus one 4 KiB page nothing fits.
  alloy::Heap tiny = make({.ceiling = std::size_t{8} << 10});
  BOOST_CHECK(tiny.alloc(8) == nullptr);
  BOOST_CHECK_EQUAL(tiny.committed(), 0u);
}

BOOST_AUTO_TEST_CASE(small_ceiling_mixed_sizes_stay_under_it) {
  constexpr std::size_t kCap = std::size_t{64} << 10;
  alloy::Heap heap = make({.ceiling = kCap});
  std::vector<void*> v;
  std::size_t bytes = 0;
  for (int round = 0; round < 4; ++round) {
    for (std::size_t n : {16u, 48u, 200u, 1000u, 5000u, 20000u}) {
      if (void* p = heap.alloc(n)) {
        std::memset(p, 2, n);
        v.push_back(p);
        bytes += n;
      }
      BOOST_REQUIRE_LE(heap.committed(), kCap);
    }
  }
  BOOST_CHECK_GE(bytes, kCap / 2);
  BOOST_CHECK_EQUAL(visited(heap).size(), v.size());
  for (void* p : v) alloy::Heap::free(p);
  BOOST_CHECK_EQUAL(heap.stats().live_blocks, 0u);
}

// ---- Wrong frees. ----

BOOST_AUTO_TEST_CASE(foreign_and_interior_pointers_are_refused) {
  alloy::Heap heap = make();
  alloy::Allocator a = heap.allocator();
  const auto align = alloy::Alignment::from_log2(4);
  void* m = std::malloc(64);
  int on_stack = 0;
  auto* small = static_cast<char*>(heap.alloc(64));
  auto* large = static_cast<char*>(heap.alloc(kLarge));
  auto* huge = static_cast<char*>(heap.alloc(std::size_t{12} << 20));
  BOOST_REQUIRE(small && large && huge);
  void* metadata = reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(small) &
                                           ~(alloy::engine::detail::kSegmentSize - 1));
  void* bad[] = {m,           &on_stack,         small + 16,       large + 4096,
                 huge + 64,   huge + (6u << 20), huge + (8u << 20), metadata};
  for (void* p : bad) {
    BOOST_TEST_CONTEXT(p) {
      const std::string err = capture_stderr([&] {
        alloy::Heap::free(p);
        a.raw_free(alloy::Bytes(static_cast<std::byte*>(p), 16), align, 0x1234);
        BOOST_CHECK(!alloy::Heap::resize(p, 1u << 20));
        BOOST_CHECK(alloy::Heap::realloc(p, 1u << 20) == nullptr);
        BOOST_CHECK(!a.raw_resize(alloy::Bytes(static_cast<std::byte*>(p), 16), align, 1u << 20, 0));
        BOOST_CHECK(a.raw_remap(alloy::Bytes(static_cast<std::byte*>(p), 16), align, 1u << 20, 0) ==
                    nullptr);
      });
      if constexpr (kChecked) {
        BOOST_CHECK_NE(err.find("alloy Heap: free of " + hex(reinterpret_cast<std::uintptr_t>(p))),
                       std::string::npos);
        BOOST_CHECK_NE(err.find("called from 0x1234"), std::string::npos);
        BOOST_CHECK_NE(err.find("realloc of"), std::string::npos);
        BOOST_CHECK_NE(err.find("resize of"), std::string::npos);
        BOOST_CHECK_NE(err.find("remap of"), std::string::npos);
      }
    }
  }
  // The heap's own blocks were not touched.
  BOOST_CHECK_EQUAL(heap.stats().live_blocks, 3u);
  std::free(m);
  alloy::Heap::free(small);
  alloy::Heap::free(large);
  alloy::Heap::free(huge);
  BOOST_CHECK_EQUAL(heap.stats().live_blocks, 0u);
}

namespace {
[[gnu::noinline]] void free_here(void* p) {
  alloy::Heap::free(p);
  __asm__ volatile("" ::: "memory");
}
}  // namespace

BOOST_AUTO_TEST_CASE(report_names_the_callers_return_address) {
  if constexpr (!kChecked) return;
  void* m = std::malloc(32);
  const std::string err = capture_stderr([&] { free_here(m); });
  std::free(m);
  const std::size_t at = err.find("called from 0x");
  BOOST_REQUIRE_NE(at, std::string::npos);
  const std::uintptr_t ret = std::strtoull(err.c_str() + at + 12, nullptr, 16);
  const auto fn = reinterpret_cast<std::uintptr_t>(&free_here);
  BOOST_CHECK_GT(ret, fn);
  BOOST_CHECK_LT(ret, fn + 256);
}

// An immediate double free is caught in every build; no block is then
// handed out twice.
BOOST_AUTO_TEST_CASE(immediate_double_free_never_hands_a_block_out_twice) {
  for (std::size_t n : {32u, 3000u, 200000u, 5u << 20}) {
    BOOST_TEST_CONTEXT(n) {
      alloy::Heap heap = make();
      void* keep = heap.alloc(n);  // keeps the page alive
      void* p = heap.alloc(n);
      BOOST_REQUIRE(p != nullptr);
      alloy::Heap::free(p);
      const std::string err = capture_stderr([&] { alloy::Heap::free(p); });
      if constexpr (kChecked) BOOST_CHECK_NE(err.find("double free"), std::string::npos);
      std::set<void*> out;
      for (int i = 0; i < 8; ++i) {
        void* q = heap.alloc(n);
        BOOST_REQUIRE(q != nullptr);
        BOOST_CHECK(out.insert(q).second);
      }
      BOOST_CHECK_EQUAL(heap.stats().live_blocks, 9u);
      for (void* q : out) alloy::Heap::free(q);
      alloy::Heap::free(keep);
      BOOST_CHECK_EQUAL(heap.stats().live_blocks, 0u);
    }
  }
}

// Through the handle (and the default heap's handle) as well.
BOOST_AUTO_TEST_CASE(handle_double_free_refused) {
  alloy::Heap heap = make();
  for (alloy::Allocator a : {heap.allocator(), alloy::Heap::default_allocator()}) {
    auto keep = a.alloc<char>(48);
    auto r = a.alloc<char>(48);
    BOOST_REQUIRE(r.ok() && keep.ok());
    a.free(*r);
    const std::string err = capture_stderr([&] { a.free(*r); });
    if constexpr (kChecked) BOOST_CHECK_NE(err.find("double free"), std::string::npos);
    auto x = a.alloc<char>(48);
    auto y = a.alloc<char>(48);
    BOOST_REQUIRE(x.ok() && y.ok());
    BOOST_CHECK(x->data() != y->data());
    a.free(*x);
    a.free(*y);
    a.free(*keep);
  }
}

// A block freed once from another thread (waiting on the page's cross-thread
// list) and then again from the owner is refused too.
BOOST_AUTO_TEST_CASE(double_free_after_a_cross_thread_free) {
  alloy::Heap heap = make();
  void* keep = heap.alloc(64);
  void* p = heap.alloc(64);
  std::thread t([&] { alloy::engine::free(p); });  // always the lock-free push
  t.join();
  const std::string err = capture_stderr([&] { alloy::Heap::free(p); });
  if constexpr (kChecked) BOOST_CHECK_NE(err.find("double free"), std::string::npos);
  std::set<void*> out;
  for (int i = 0; i < 3000; ++i) BOOST_REQUIRE(out.insert(heap.alloc(64)).second);
  BOOST_CHECK_EQUAL(heap.stats().live_blocks, 3001u);
  for (void* q : out) alloy::Heap::free(q);
  alloy::Heap::free(keep);
}

// Checked builds catch a double free that is not the last free, too.
BOOST_AUTO_TEST_CASE(checked_builds_catch_any_double_free) {
  if constexpr (!kChecked) return;
  alloy::Heap heap = make();
  std::vector<void*> v;
  for (int i = 0; i < 100; ++i) v.push_back(heap.alloc(24));
  for (int i = 0; i < 100; i += 2) alloy::Heap::free(v[static_cast<std::size_t>(i)]);
  const std::string err = capture_stderr([&] {
    for (int i = 0; i < 100; i += 10) alloy::Heap::free(v[static_cast<std::size_t>(i)]);
  });
  std::size_t reports = 0;
  for (std::size_t at = 0; (at = err.find("double free", at)) != std::string::npos; ++at) ++reports;
  BOOST_CHECK_EQUAL(reports, 10u);
  std::set<void*> out;
  for (int i = 0; i < 50; ++i) BOOST_CHECK(out.insert(heap.alloc(24)).second);
  BOOST_CHECK_EQUAL(heap.stats().live_blocks, 100u);
}

// A block of heap B freed or reallocated through heap A's handle or Heap's
// static members is routed to B, its owner: A is untouched.
BOOST_AUTO_TEST_CASE(cross_heap_free_goes_to_the_owner) {
  alloy::Heap a = make();
  alloy::Heap b = make({.ceiling = std::size_t{8} << 20});
  for (std::size_t n : {64u, 100000u, 3u << 20}) {
    BOOST_TEST_CONTEXT(n) {
      void* keep = a.alloc(64);
      auto* p = static_cast<std::byte*>(b.alloc(n));
      BOOST_REQUIRE(p != nullptr);
      const std::string err = capture_stderr([&] {
        a.allocator().raw_free(alloy::Bytes(p, n), alloy::Alignment::from_log2(4), 0);
      });
      BOOST_CHECK(err.empty());
      BOOST_CHECK_EQUAL(b.stats().live_blocks, 0u);
      BOOST_CHECK_EQUAL(a.stats().live_blocks, 1u);
      // Growth of B's block obeys B's ceiling, whichever handle asks.
      void* q = b.alloc(n);
      BOOST_CHECK(!a.allocator().raw_resize(alloy::Bytes(static_cast<std::byte*>(q), n),
                                           alloy::Alignment::from_log2(4), std::size_t{16} << 20, 0));
      BOOST_CHECK(alloy::Heap::realloc(q, std::size_t{16} << 20) == nullptr);
      BOOST_CHECK_EQUAL(b.stats().live_blocks, 1u);
      alloy::Heap::free(q);
      alloy::Heap::free(keep);
    }
  }
}

// visit's callback may free blocks (heap.h), this heap's too: checked builds,
// whose frees wait for the heap's lock, must not wait for visit's own.
BOOST_AUTO_TEST_CASE(visit_callback_frees_blocks_of_its_heap) {
  alloy::Heap heap = make();
  // Another thread's allocation makes the heap's lock a plain spin lock,
  // which nobody may take twice.
  std::thread([&] { alloy::Heap::free(heap.alloc(8)); }).join();
  std::vector<void*> v;
  for (int i = 0; i < 1000; ++i) v.push_back(heap.alloc(16 + static_cast<std::size_t>(i % 7) * 100));
  v.push_back(heap.alloc(kLarge));
  std::size_t seen = 0;
  heap.visit([&](void* p, std::size_t) {
    ++seen;
    alloy::Heap::free(p);
  });
  BOOST_CHECK_EQUAL(seen, v.size());
  BOOST_CHECK_EQUAL(heap.stats().live_blocks, 0u);
}
