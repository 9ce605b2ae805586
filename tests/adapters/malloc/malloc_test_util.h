// Helpers shared by the malloc adapter's test suites.
//
// These suites link //adapters/malloc:alloy_malloc, so they replace the
// process's malloc and cannot run under ASan/TSan (which own malloc there).
// Under --config=asan/tsan the BUILD file defines ALLOY_MALLOC_TESTS_DISABLED
// and links only the engine: every ALLOY_MALLOC_CASE is then reported as
// skipped, and ALLOY_MALLOC_ALWAYS cases (which check which malloc is active)
// still run, so the binary is never an empty test tree.
//
// Cost: none at run time. Thread safety: n/a.
//
// Example:
//   ALLOY_MALLOC_CASE(malloc_is_aligned) {
//     void* p = std::malloc(24);
//     BOOST_TEST(reinterpret_cast<std::uintptr_t>(p) % 16 == 0);
//     std::free(p);
//   }
#pragma once

#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <cstring>

#include "alloy/allocators/engine/engine.h"
#include "tests/support/pattern.h"

#ifdef ALLOY_MALLOC_TESTS_DISABLED
#define ALLOY_MALLOC_CASE(name) \
  BOOST_AUTO_TEST_CASE(name, *boost::unit_test::disabled())
inline constexpr bool kAdapterLinked = false;
#else
#define ALLOY_MALLOC_CASE(name) BOOST_AUTO_TEST_CASE(name)
inline constexpr bool kAdapterLinked = true;
#endif

// A case that runs in every build: in plain builds it proves malloc and
// operator new are alloy's, under sanitizers that they are not.
#define ALLOY_MALLOC_ALWAYS_CHECK_ACTIVE_MALLOC()                         \
  BOOST_AUTO_TEST_CASE(active_malloc_is_the_expected_one) {               \
    void* p = std::malloc(40);                                            \
    int* q = new int(7);                                                  \
    BOOST_TEST(alloy::engine::owns(p) == kAdapterLinked);                 \
    BOOST_TEST(alloy::engine::owns(q) == kAdapterLinked);                 \
    std::free(p);                                                         \
    delete q;                                                             \
  }

inline bool aligned_to(const void* p, std::size_t alignment) {
  return reinterpret_cast<std::uintptr_t>(p) % alignment == 0;
}

// The fill/check byte pattern of every suite (tests/support/pattern.h).
using alloy::testing::fill;
using alloy::testing::intact;
