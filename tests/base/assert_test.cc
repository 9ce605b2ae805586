// ALLOY_ASSERT (base/assert.h): on, a broken assertion prints the expression
// and file:line through write(2) and aborts; off (-DALLOY_ASSERTS=0, as in
// opt builds), it neither evaluates nor checks. The same file runs as
// assert_test (on: no NDEBUG) and assert_off_test.
#define BOOST_TEST_MODULE base_assert
#include <boost/test/unit_test.hpp>

#include <string>

#include "alloy/base/assert.h"
#include "tests/support/death.h"

using alloy::testing::run_in_child;

namespace {
int g_evaluated = 0;
bool counted(bool v) {
  ++g_evaluated;
  return v;
}
}  // namespace

BOOST_AUTO_TEST_CASE(a_kept_assertion_passes_quietly) {
  g_evaluated = 0;
  ALLOY_ASSERT(counted(true));
  ALLOY_ASSERT_MSG(counted(1 + 1 == 2), "arithmetic");
  BOOST_TEST(g_evaluated == (alloy::base::kAssertsOn ? 2 : 0));
}

#if ALLOY_ASSERTS
BOOST_AUTO_TEST_CASE(a_broken_assertion_names_expression_and_line_then_aborts) {
  const int expected_line = __LINE__ + 1;
  auto d = run_in_child([] { ALLOY_ASSERT(counted(false) && "the rule"); });
  BOOST_TEST(d.aborted());
  BOOST_TEST(d.err.find("alloy: assertion failed: counted(false) && \"the rule\"") !=
             std::string::npos, d.err);
  BOOST_TEST(d.err.find("assert_test.cc:" + std::to_string(expected_line) + ")") !=
             std::string::npos, d.err);
}

BOOST_AUTO_TEST_CASE(the_message_follows_the_location) {
  auto d = run_in_child([] { ALLOY_ASSERT_MSG(counted(false), "index past the end"); });
  BOOST_TEST(d.aborted());
  BOOST_TEST(d.err.find("): index past the end\n") != std::string::npos, d.err);
}
#else
BOOST_AUTO_TEST_CASE(off_means_not_evaluated_and_no_abort) {
  g_evaluated = 0;
  auto d = run_in_child([] { ALLOY_ASSERT(counted(false)); });
  BOOST_TEST(d.exited_ok());
  BOOST_TEST(d.err.empty());
  ALLOY_ASSERT(counted(false));
  BOOST_TEST(g_evaluated == 0);
}
#endif
