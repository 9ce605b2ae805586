#define BOOST_TEST_MODULE fixed_buffer_allocator
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include "alloy/allocators/fixed_buffer_allocator.h"
#include "tests/allocators/family_test_util.h"

using alloy::Alignment;
using alloy::FixedBufferAllocator;
using alloy::ThreadSafeFixedBufferAllocator;
namespace t = alloy::testing;

namespace {
alignas(65536) std::byte g_storage[1 << 20];
alloy::Bytes storage(std::size_t n = sizeof(g_storage)) { return {g_storage, n}; }
}  // namespace

BOOST_AUTO_TEST_CASE(alignment_one_byte_to_64k_both_variants) {
  FixedBufferAllocator fba(storage());
  t::check_alignments(fba.allocator(), 64 * 1024);
  ThreadSafeFixedBufferAllocator ts(storage());
  t::check_alignments(ts.allocator(), 64 * 1024);
}

BOOST_AUTO_TEST_CASE(no_overlap_and_owns) {
  FixedBufferAllocator fba(storage());
  auto blocks = t::check_no_overlap(fba.allocator(), 3000, 200);
  BOOST_CHECK_EQUAL(blocks.size(), 3000u);
  for (auto b : blocks) BOOST_CHECK(fba.owns(b.data()));
  int local;
  BOOST_CHECK(!fba.owns(&local));
}

BOOST_AUTO_TEST_CASE(last_allocation_semantics) {
  for (int variant = 0; variant < 2; ++variant) {
    FixedBufferAllocator fba(storage(4096));
    ThreadSafeFixedBufferAllocator ts(storage(4096));
    alloy::Allocator a = variant == 0 ? fba.allocator() : ts.allocator();
    auto older = a.alloc<char>(10);
    auto last = a.alloc<char>(10);
    BOOST_REQUIRE(older && last);
    std::memcpy(last->data(), "0123456789", 10);
    auto grown = a.realloc(*last, 2000);
    BOOST_REQUIRE(grown);
    BOOST_CHECK_EQUAL(static_cast<void*>(grown->data()), static_cast<void*>(last->data()));
    BOOST_CHECK_EQUAL(std::memcmp(grown->data(), "0123456789", 10), 0);
    BOOST_CHECK(!a.resize(*grown, 5000));
    BOOST_CHECK(!a.resize(*older, 20));
    BOOST_CHECK(a.resize(*older, 5));
    a.free(*grown);
    auto again = a.alloc<char>(1);
    BOOST_REQUIRE(again);
    BOOST_CHECK_EQUAL(static_cast<void*>(again->data()), static_cast<void*>(grown->data()));
  }
}

BOOST_AUTO_TEST_CASE(out_of_space_null_then_usable) {
  FixedBufferAllocator fba(storage(256));
  alloy::Allocator a = fba.allocator();
  BOOST_CHECK(a.alloc<char>(200));
  BOOST_CHECK(!a.alloc<char>(100));
  BOOST_CHECK_EQUAL(fba.used(), 200u);
  BOOST_CHECK(a.alloc<char>(56));
  fba.reset();
  BOOST_CHECK(a.alloc<char>(256));

  ThreadSafeFixedBufferAllocator ts(storage(256));
  BOOST_CHECK(ts.allocator().alloc<char>(256));
  BOOST_CHECK(!ts.allocator().alloc<char>(1));
  ts.reset();
  BOOST_CHECK(ts.allocator().alloc<char>(1));
}

BOOST_AUTO_TEST_CASE(thread_safe_variant_hammered_from_four_threads) {
  ThreadSafeFixedBufferAllocator ts(storage());
  alloy::Allocator a = ts.allocator();
  constexpr int kThreads = 4;
  std::vector<std::vector<alloy::Bytes>> kept(kThreads);
  std::vector<std::thread> threads;
  for (int t_id = 0; t_id < kThreads; ++t_id) {
    threads.emplace_back([&, t_id] {
      std::mt19937 rng(t_id);
      for (int i = 0; i < 20000; ++i) {
        const std::size_t len = 1 + rng() % 48;
        auto r = a.alloc_bytes(len, Alignment::from_log2(static_cast<std::uint8_t>(rng() % 5)));
        if (!r) break;  // buffer full
        std::memset(r->data(), t_id + 1, r->size());
        if (rng() % 4 == 0) {
          a.free_bytes(*r, Alignment{});  // rewinds only if still last
        } else {
          kept[t_id].push_back(*r);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  // Every kept block still holds its owner's byte: no two threads got
  // overlapping ranges (a rewound block would have been overwritten only if
  // someone else's free rewound past a kept one).
  std::vector<std::pair<std::byte*, std::size_t>> all;
  for (int t_id = 0; t_id < kThreads; ++t_id) {
    for (auto b : kept[t_id]) {
      for (std::byte c : b) BOOST_REQUIRE_EQUAL(static_cast<int>(c), t_id + 1);
      all.push_back({b.data(), b.size()});
    }
  }
  std::sort(all.begin(), all.end());
  for (std::size_t i = 1; i < all.size(); ++i) {
    BOOST_REQUIRE(all[i - 1].first + all[i - 1].second <= all[i].first);
  }
  BOOST_CHECK_LE(ts.used(), ts.capacity());
  BOOST_TEST_MESSAGE("CAS retries: " << ts.cas_retries());
}

// Issue 10 (wrong frees across the family): refused, counted and reported.
BOOST_AUTO_TEST_CASE(wrong_frees_are_refused_and_reported) {
  FixedBufferAllocator fba(storage(4096));
  t::check_bump_wrong_frees(fba, "alloy::FixedBufferAllocator", [&] { fba.reset(); }, true);
  ThreadSafeFixedBufferAllocator ts(storage(4096));
  t::check_bump_wrong_frees(ts, "alloy::ThreadSafeFixedBufferAllocator", [&] { ts.reset(); },
                            true);
}
