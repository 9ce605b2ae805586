// A consumer's test: alloy's Boost.Test fixture fails a test that leaks.
#define BOOST_TEST_MODULE consumer_test
#include <boost/test/unit_test.hpp>

#include <cstring>
#include <string_view>

#include "alloy/alloc_iface/vec.h"
#include "alloy/debug/boost_fixture.h"
#include "alloy/debug/testing_allocator.h"

namespace {

// Library code under test: fails cleanly when an allocation fails.
alloy::Result<void> split(alloy::Allocator a, std::string_view text) {
  alloy::Vec<std::string_view> words(a);
  std::size_t start = 0;
  for (std::size_t i = 0; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == ';') {
      if (auto r = words.try_push(text.substr(start, i - start)); !r) return r;
      start = i + 1;
    }
  }
  return alloy::Ok();
}

}  // namespace

BOOST_FIXTURE_TEST_CASE(fixture_handle_serves_library_code, alloy::LeakCheckFixture) {
  BOOST_TEST(split(alloc, "a=1;b=2;c=3").ok());
}

BOOST_FIXTURE_TEST_CASE(every_allocation_failure_is_handled, alloy::LeakCheckFixture) {
  ALLOY_CHECK_ALL_ALLOCATION_FAILURES(split, std::string_view("a=1;b=2;c=3;d=4;e=5"));
}

BOOST_AUTO_TEST_CASE(a_leak_is_counted_and_named) {
  alloy::TestingAllocator testing(alloy::testing_options(), /*echo=*/false);
  auto leaked = testing.allocator().alloc<char>(24);
  BOOST_REQUIRE(leaked.ok());
  BOOST_TEST(testing.deinit() == 1u);
  BOOST_TEST(testing.reports_text().find("24") != std::string::npos);
}
