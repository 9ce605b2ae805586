// How to use alloy's testing helpers in your own Boost.Test suite:
//  1. alloy::LeakCheckFixture: each test gets `alloc`; a leak fails the test
//     and the failure message names the block and where it was allocated.
//  2. ALLOY_CHECK_ALL_ALLOCATION_FAILURES(fn, args...): runs fn once per
//     allocation it makes, failing that one, and checks it cleans up and
//     reports the error instead of pretending all went well.
#define BOOST_TEST_MODULE fixture_and_oom_example
#include <boost/test/unit_test.hpp>

#include <string_view>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/alloc_iface/vec.h"
#include "alloy/debug/boost_fixture.h"

namespace {

// Code under test: splits "a,b,c" into owned copies of each field.
struct Fields {
  alloy::Allocator a;
  alloy::Vec<std::span<char>> items;
  explicit Fields(alloy::Allocator alloc) : a(alloc), items(alloc) {}
  Fields(Fields&&) = default;
  ~Fields() {
    for (auto s : items) a.free(s);
  }
};

alloy::Result<Fields> split(alloy::Allocator a, std::string_view csv) {
  Fields out(a);
  while (true) {
    auto comma = csv.find(',');
    ALLOY_TRY(auto copy, a.dupe(csv.substr(0, comma)));
    if (auto r = out.items.try_push(copy); !r) {
      a.free(copy);  // without this line the OOM loop below reports a leak
      return alloy::Err(r.error());
    }
    if (comma == std::string_view::npos) break;
    csv.remove_prefix(comma + 1);
  }
  return out;
}

}  // namespace

BOOST_FIXTURE_TEST_CASE(split_keeps_every_field, alloy::LeakCheckFixture) {
  auto fields = split(alloc, "red,green,blue");
  BOOST_REQUIRE(fields.ok());
  BOOST_TEST(fields->items.size() == 3u);
  BOOST_TEST(std::string_view(fields->items[2].data(), fields->items[2].size()) == "blue");
}  // the fixture's teardown checks that `fields` gave everything back

BOOST_AUTO_TEST_CASE(split_survives_every_allocation_failure) {
  ALLOY_CHECK_ALL_ALLOCATION_FAILURES(split, std::string_view("red,green,blue,cyan"));
}

// The result object can be inspected too, e.g. to see how many runs it took.
BOOST_AUTO_TEST_CASE(oom_loop_result_can_be_inspected) {
  auto check = alloy::check_all_allocation_failures(split, std::string_view("x,y"));
  BOOST_TEST(check.ok(), check.report());
  BOOST_TEST(check.allocations >= 3u);  // two copies and the vector
  BOOST_TEST_MESSAGE(check.report());
}
