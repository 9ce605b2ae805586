// debug/internal/quarantine.h on its own: the bounded FIFO of freed blocks.
// Eviction order (oldest held first, released entries skipped, across the
// ring's growth), the byte bound (blocks above min(max_block, bytes) never
// held; over_budget() until evicted back under), the count bound on the
// history (at least `history`, at most history + 64 released entries), and
// lookup by address and of attached traces.
#define BOOST_TEST_MODULE quarantine
#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <deque>
#include <optional>
#include <set>
#include <vector>

#include "alloy/debug/internal/quarantine.h"
#include "alloy/debug/internal/trace.h"

namespace di = alloy::debug::internal;
using alloy::Alignment;

namespace {

const Alignment kAlign8 = Alignment::from_log2(3);

std::uintptr_t addr_n(std::uint64_t i) { return 0x10000 + i * 0x100; }

// Evicts like DebugAllocator does after a free; returns the evicted addresses.
std::vector<std::uintptr_t> evict_to_budget(di::Quarantine& q, di::TracePool& pool) {
  std::vector<std::uintptr_t> out;
  std::uint64_t pos;
  while (q.over_budget() && q.evict_oldest(pos)) {
    BOOST_TEST_REQUIRE(!q.at(pos).held());
    out.push_back(q.at(pos).addr);
  }
  q.trim(pool);
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(evicts_oldest_held_first_and_skips_released_entries) {
  di::TracePool pool;
  di::Quarantine q({.bytes = 1000, .max_block = 100, .history = 100});
  q.push_held(addr_n(0), 1, 2, 10, kAlign8);
  q.push_released(addr_n(1), 1, 2, 500, kAlign8);
  q.push_held(addr_n(2), 1, 2, 20, kAlign8);
  q.push_held(addr_n(3), 1, 2, 30, kAlign8);
  BOOST_TEST(q.held_bytes() == 60u);  // the released one does not count
  std::uint64_t pos = 0;
  std::vector<std::uintptr_t> order;
  std::vector<std::size_t> held_after;
  while (q.evict_oldest(pos)) {
    order.push_back(q.at(pos).addr);
    held_after.push_back(q.held_bytes());
  }
  BOOST_TEST((order == std::vector<std::uintptr_t>{addr_n(0), addr_n(2), addr_n(3)}));
  BOOST_TEST((held_after == std::vector<std::size_t>{50, 30, 0}));
  BOOST_TEST((q.evict_oldest(pos) == nullptr));
  q.trim(pool);
  BOOST_TEST(q.history_size() == 4u);
  BOOST_TEST(q.remembered() == 4u);
}

BOOST_AUTO_TEST_CASE(fifo_order_holds_across_growth_and_wraparound) {
  di::TracePool pool;
  di::Quarantine q({.bytes = ~std::size_t{0}, .max_block = 1 << 20, .history = 1 << 20});
  std::deque<std::uintptr_t> model;
  std::uint64_t next = 0, pos = 0;
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 70 + round * 13; ++i) {  // crosses 64, 128, 256, ... slots
      const std::uintptr_t a = addr_n(next++);
      if (next % 5 == 0) {
        q.push_released(a, 0, 0, 8, kAlign8);  // history only: never evicted
      } else {
        q.push_held(a, 0, 0, 8, kAlign8);
        model.push_back(a);
      }
    }
    for (int i = 0; i < 50 && !model.empty(); ++i) {
      BOOST_TEST_REQUIRE((q.evict_oldest(pos) != nullptr));
      BOOST_TEST_REQUIRE(q.at(pos).addr == model.front());
      model.pop_front();
    }
    q.trim(pool);
    BOOST_TEST_REQUIRE(q.held_bytes() == model.size() * 8);
  }
  while (q.evict_oldest(pos)) {
    BOOST_TEST_REQUIRE(q.at(pos).addr == model.front());
    model.pop_front();
  }
  BOOST_TEST(model.empty());
  BOOST_TEST(q.held_bytes() == 0u);
}

BOOST_AUTO_TEST_CASE(byte_bound_decides_what_is_held_and_when_to_evict) {
  di::TracePool pool;
  {
    di::Quarantine q({.bytes = 256, .max_block = 64, .history = 16});
    BOOST_TEST(q.would_hold(0));
    BOOST_TEST(q.would_hold(64));
    BOOST_TEST(!q.would_hold(65));  // above max_block
  }
  {
    di::Quarantine q({.bytes = 32, .max_block = 64, .history = 16});
    BOOST_TEST(q.would_hold(32));
    BOOST_TEST(!q.would_hold(33));  // above the whole budget
  }
  {
    di::Quarantine q({.bytes = 0, .max_block = 64, .history = 16});
    BOOST_TEST(!q.would_hold(1));  // quarantine off
  }
  di::Quarantine q({.bytes = 100, .max_block = 64, .history = 1000});
  std::deque<std::uintptr_t> model;
  std::size_t model_bytes = 0;
  for (std::uint64_t i = 0; i < 500; ++i) {
    const std::size_t size = 1 + (i * 37) % 64;
    BOOST_TEST_REQUIRE(q.would_hold(size));
    q.push_held(addr_n(i), 0, 0, size, kAlign8);
    model.push_back(addr_n(i));
    model_bytes += size;
    BOOST_TEST_REQUIRE(q.over_budget() == (model_bytes > 100));
    for (std::uintptr_t a : evict_to_budget(q, pool)) {
      BOOST_TEST_REQUIRE(a == model.front());  // the oldest go first
      model_bytes -= 1 + ((a - 0x10000) / 0x100 * 37) % 64;
      model.pop_front();
    }
    BOOST_TEST_REQUIRE(q.held_bytes() == model_bytes);
    BOOST_TEST_REQUIRE(q.held_bytes() <= 100u);
    BOOST_TEST_REQUIRE(!q.over_budget());
  }
}

BOOST_AUTO_TEST_CASE(history_keeps_at_least_its_count_and_at_most_64_more) {
  di::TracePool pool;
  for (std::size_t history : {std::size_t{1}, std::size_t{16}, std::size_t{100}}) {
    di::Quarantine q({.bytes = 0, .max_block = 0, .history = history});
    BOOST_TEST(q.keeps_history());
    for (std::uint64_t i = 0; i < 1000; ++i) {
      q.push_released(addr_n(i), 0, 0, 8, kAlign8);
      q.trim(pool);
      const std::size_t pushed = i + 1;
      BOOST_TEST_REQUIRE(q.history_size() == q.remembered());  // nothing held
      BOOST_TEST_REQUIRE(q.history_size() <= history + 64);
      BOOST_TEST_REQUIRE(q.history_size() >= std::min(pushed, history));
      // The newest `history` are always found, with their own entry.
      for (std::uint64_t back = 0; back < std::min<std::uint64_t>(pushed, history); ++back) {
        std::optional<std::uint64_t> pos = q.find(addr_n(i - back));
        BOOST_TEST_REQUIRE(pos.has_value());
        BOOST_TEST_REQUIRE(q.at(*pos).addr == addr_n(i - back));
      }
    }
    // The oldest were forgotten.
    BOOST_TEST(!q.find(addr_n(0)).has_value());
    BOOST_TEST(!q.find(addr_n(999 - history - 64)).has_value());
  }
  di::Quarantine none({.bytes = 0, .max_block = 0, .history = 0});
  BOOST_TEST(!none.keeps_history());
}

BOOST_AUTO_TEST_CASE(held_entries_do_not_count_against_the_history) {
  di::TracePool pool;
  di::Quarantine q({.bytes = 1 << 20, .max_block = 1 << 10, .history = 4});
  for (std::uint64_t i = 0; i < 300; ++i) q.push_held(addr_n(i), 0, 0, 8, kAlign8);
  q.trim(pool);
  BOOST_TEST(q.history_size() == 0u);
  BOOST_TEST(q.remembered() == 300u);
  BOOST_TEST(q.find(addr_n(0)).has_value());  // still held, still found
}

BOOST_AUTO_TEST_CASE(find_returns_the_newest_entry_with_its_fields) {
  di::TracePool pool;
  di::Quarantine q({.bytes = 1000, .max_block = 100, .history = 100});
  const Alignment a64 = Alignment::from_log2(6);
  const std::uint64_t first = q.push_held(0x5000, 0x11, 0x22, 48, kAlign8);
  q.push_held(0x6000, 0x33, 0x44, 16, kAlign8);
  const std::uint64_t again = q.push_released(0x5000, 0x55, 0x66, 80, a64);
  BOOST_TEST(!q.find(0x7000).has_value());
  std::optional<std::uint64_t> pos = q.find(0x5000);
  BOOST_REQUIRE(pos.has_value());
  BOOST_TEST(*pos == again);
  BOOST_TEST(*pos != first);
  const di::Freed& f = q.at(*pos);
  BOOST_TEST(f.addr == 0x5000u);
  BOOST_TEST(f.alloc_ret == 0x55u);
  BOOST_TEST(f.free_ret == 0x66u);
  BOOST_TEST(f.size() == 80u);
  BOOST_TEST((f.alignment() == a64));
  BOOST_TEST(!f.held());
  BOOST_TEST(q.at(first).held());
  BOOST_TEST(q.at(first).size() == 48u);
  BOOST_TEST(!q.at(first).traced());
  BOOST_TEST(q.trace_of(first) == nullptr);
}

BOOST_AUTO_TEST_CASE(traces_are_found_by_entry_and_go_back_to_the_pool_when_forgotten) {
  di::TracePool pool;
  di::Quarantine q({.bytes = 0, .max_block = 0, .history = 2});
  std::vector<di::StackTrace*> given;
  for (std::uint64_t i = 0; i < 200; ++i) {
    const std::uint64_t pos = q.push_released(addr_n(i), 0, 0, 8, kAlign8);
    if (i % 10 == 0 || i == 199) {
      di::StackTrace* t = pool.take();
      BOOST_TEST_REQUIRE(t->depth > 0);
      di::TracePool::capture_free(t);
      BOOST_TEST_REQUIRE(t->free_depth > 0);
      q.attach_trace(pos, t);
      given.push_back(t);
      BOOST_TEST_REQUIRE(q.at(pos).traced());
      BOOST_TEST_REQUIRE(q.trace_of(pos) == t);
    }
    q.trim(pool);
  }
  // 200 entries, history 2 (+64): forgotten entries' traces went back to
  // the pool and were taken again, so fewer distinct traces than attached.
  const std::set<di::StackTrace*> distinct(given.begin(), given.end());
  BOOST_TEST(distinct.size() < given.size());
  BOOST_TEST(pool.pooled() < distinct.size());  // the newest are still attached
  std::optional<std::uint64_t> last = q.find(addr_n(199));
  BOOST_REQUIRE(last.has_value());
  BOOST_TEST(q.trace_of(*last) == given.back());
  q.release_traces(pool);
  BOOST_TEST(pool.pooled() == distinct.size());  // every trace is back
}

BOOST_AUTO_TEST_CASE(take_oldest_then_released_is_eviction_in_two_steps) {
  di::TracePool pool;
  di::Quarantine q({.bytes = 1000, .max_block = 100, .history = 100});
  q.push_held(addr_n(0), 0, 0, 40, kAlign8);
  q.push_held(addr_n(1), 0, 0, 60, kAlign8);
  std::uint64_t pos = 99;
  di::Freed* f = q.take_oldest(pos);
  BOOST_REQUIRE(f != nullptr);
  BOOST_TEST(pos == 0u);
  BOOST_TEST(f->addr == addr_n(0));
  BOOST_TEST(f->held());               // between the steps: still held,
  BOOST_TEST(q.held_bytes() == 100u);  // its bytes still counted,
  int seen = 0;
  q.for_each_held([&](std::uint64_t, const di::Freed&) { ++seen; });
  BOOST_TEST(seen == 1);  // but past the boundary: not checked again
  q.released(*f);
  BOOST_TEST(!f->held());
  BOOST_TEST(q.held_bytes() == 60u);
  f = q.take_oldest(pos);
  BOOST_REQUIRE(f != nullptr);
  BOOST_TEST(f->addr == addr_n(1));
  q.released(*f);
  BOOST_TEST((q.take_oldest(pos) == nullptr));
  BOOST_TEST(q.held_bytes() == 0u);
}
