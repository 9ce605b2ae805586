// alloy::LeakCheckFixture and ALLOY_CHECK_ALL_ALLOCATION_FAILURES — Boost.Test glue.
//
// The fixture gives each test case a TestingAllocator (`alloc` is its handle);
// its teardown runs deinit() and fails the test case if anything leaked or was
// misused, with every report (size, address, symbolized allocation trace) in
// the failure message. The macro runs check_all_allocation_failures and fails
// the test with its report if any run leaked, misused memory or swallowed an
// allocation failure.
//
// Cost: that of TestingAllocator (full traces on every block): tests only.
// Thread safety: as TestingAllocator (the handle may be shared between
// threads; the fixture itself lives on the test's thread).
//
// Example:
//   BOOST_FIXTURE_TEST_CASE(parses_config, alloy::LeakCheckFixture) {
//     auto cfg = parse(alloc, "a=1");          // alloc: the fixture's handle
//     BOOST_TEST(cfg.ok());
//     ALLOY_CHECK_ALL_ALLOCATION_FAILURES(parse, std::string_view("a=1"));
//   }                                          // teardown: leaks fail the test
#pragma once

#include <boost/test/unit_test.hpp>

#include "alloy/debug/testing_allocator.h"

namespace alloy {

struct LeakCheckFixture {
  TestingAllocator testing;
  Allocator alloc = testing.allocator();

  // Called by Boost.Test after the test body (and after its own locals died).
  void teardown() {
    const std::size_t leaks = testing.deinit();
    const std::size_t errors = testing.error_count();
    BOOST_CHECK_MESSAGE(leaks == 0 && errors == 0,
                        "alloy: the test leaked " << leaks << " block(s) and misused the "
                        "allocator " << errors << " time(s):\n" << testing.reports_text());
  }
};

}  // namespace alloy

#define ALLOY_CHECK_ALL_ALLOCATION_FAILURES(...)                                 \
  do {                                                                           \
    auto alloy_check_result_ = ::alloy::check_all_allocation_failures(__VA_ARGS__); \
    BOOST_CHECK_MESSAGE(alloy_check_result_.ok(), alloy_check_result_.report());    \
  } while (0)
