// Code in a folder named debug/ of the consumer's, with a debug/report.h of its
// own, using alloy's debug headers (which include alloy/debug/report.h).
#define BOOST_TEST_MODULE consumer_debug_report_test
#include <boost/test/unit_test.hpp>

#include <string>

#include "alloy/debug/boost_fixture.h"
#include "alloy/debug/report.h"
#include "alloy/debug/testing_allocator.h"
#include "debug/report.h"  // the consumer's own

static_assert(CONSUMER_OWN_DEBUG_REPORT_H == 1, "debug/report.h must be the consumer's");

BOOST_AUTO_TEST_CASE(both_report_headers_are_usable) {
  BOOST_TEST(consumer::report_title() == "consumer report");
  alloy::TestingAllocator testing(alloy::testing_options(), /*echo=*/false);
  auto leaked = testing.allocator().alloc<char>(40);
  BOOST_REQUIRE(leaked.ok());
  BOOST_TEST(testing.deinit() == 1u);
  const std::vector<alloy::debug::Report> reports = testing.reports();  // alloy's report.h
  BOOST_REQUIRE(reports.size() == 1u);
  BOOST_TEST(testing.reports_text().find("40") != std::string::npos);
}

BOOST_FIXTURE_TEST_CASE(the_fixture_passes_a_clean_test, alloy::LeakCheckFixture) {
  auto block = alloc.alloc<int>(16);
  BOOST_REQUIRE(block.ok());
  alloc.free(*block);
}
