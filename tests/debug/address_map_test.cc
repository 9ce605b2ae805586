// AddressMap: the table DebugAllocator keeps live blocks in. Checked against
// std::unordered_map under random inserts and erases, including keys chosen
// to collide (same home slot) so backward-shift deletion is exercised.
#define BOOST_TEST_MODULE address_map
#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <random>
#include <unordered_map>
#include <vector>

#include "alloy/debug/internal/address_map.h"

using alloy::debug::AddressMap;

BOOST_AUTO_TEST_CASE(insert_find_erase_basics) {
  AddressMap<int> m;
  BOOST_TEST(m.find(0x1000) == nullptr);
  BOOST_TEST(!m.erase(0x1000));
  m.insert(0x1000, 1);
  m.insert(0x2000, 2);
  m.insert(0x1000, 3);  // overwrite
  BOOST_TEST(m.size() == 2u);
  BOOST_REQUIRE(m.find(0x1000) != nullptr);
  BOOST_TEST(*m.find(0x1000) == 3);
  m.erase_value(m.find(0x2000));
  BOOST_TEST(m.find(0x2000) == nullptr);
  BOOST_TEST(m.size() == 1u);
}

BOOST_AUTO_TEST_CASE(matches_unordered_map_under_random_churn) {
  std::mt19937_64 rng(42);
  AddressMap<std::uint64_t> m;
  std::unordered_map<std::uintptr_t, std::uint64_t> ref;
  std::vector<std::uintptr_t> keys;
  // Keys on a 16-byte grid in a small range: dense clusters, many collisions.
  for (int i = 0; i < 20000; ++i) {
    const std::uintptr_t key = 0x7f0000000000 + 16 * (rng() % 4096);
    const int op = static_cast<int>(rng() % 3);
    if (op < 2) {
      m.insert(key, i);
      ref[key] = i;
    } else {
      BOOST_REQUIRE_EQUAL(m.erase(key), ref.erase(key) == 1);
    }
    if (i % 997 == 0) {
      BOOST_REQUIRE_EQUAL(m.size(), ref.size());
      for (const auto& [k, v] : ref) {
        const auto* found = m.find(k);
        BOOST_REQUIRE(found != nullptr);
        BOOST_REQUIRE_EQUAL(*found, v);
      }
      std::size_t seen = 0;
      m.for_each([&](std::uintptr_t k, std::uint64_t v) {
        ++seen;
        BOOST_REQUIRE(ref.count(k) == 1);
        BOOST_REQUIRE_EQUAL(ref[k], v);
      });
      BOOST_REQUIRE_EQUAL(seen, ref.size());
    }
  }
  // Empty it completely: every erase must find its key.
  for (const auto& [k, v] : ref) BOOST_REQUIRE(m.erase(k));
  BOOST_TEST(m.empty());
}

// The DebugAllocator pattern: a steady number of live keys while addresses
// move on (quarantine), so erased slots pile up and get swept by rebuilds.
BOOST_AUTO_TEST_CASE(fifo_churn_through_many_addresses_keeps_every_live_key) {
  AddressMap<std::uint64_t> m;
  std::vector<std::uintptr_t> live;
  std::size_t oldest = 0;
  for (std::uint64_t i = 0; i < 200000; ++i) {
    const std::uintptr_t key = 0x500000000000 + 48 * i;
    m.insert_new(key, i);
    live.push_back(key);
    if (live.size() - oldest > 100) {
      std::uint64_t* v = m.find(live[oldest]);
      BOOST_REQUIRE(v != nullptr);
      BOOST_REQUIRE_EQUAL(*v, oldest);
      m.erase_value(v);
      BOOST_REQUIRE(m.find(live[oldest]) == nullptr);
      ++oldest;
    }
    if (i % 9973 == 0) {
      BOOST_REQUIRE_EQUAL(m.size(), live.size() - oldest);
      for (std::size_t j = oldest; j < live.size(); ++j) {
        BOOST_REQUIRE(m.find(live[j]) != nullptr);
        BOOST_REQUIRE_EQUAL(*m.find(live[j]), j);
      }
    }
  }
  BOOST_TEST(m.size() == 100u);
  BOOST_TEST(m.find(1) == nullptr);  // the erased-slot marker is never a key
  BOOST_TEST(m.find(0) == nullptr);
}
