#define BOOST_TEST_MODULE result
#include <boost/test/unit_test.hpp>

#include <string>
#include <type_traits>

#include "alloy/alloc_iface/result.h"
#include "tests/support/death.h"

using alloy::AllocError;
using alloy::Err;
using alloy::Result;

namespace {
Result<int> half(int x) {
  if (x % 2 != 0) return Err(AllocError::kSizeOverflow);
  return x / 2;
}
Result<int> quarter(int x) {
  ALLOY_TRY(int h, half(x));
  ALLOY_TRY(int q, half(h));
  return q;
}
}  // namespace

BOOST_AUTO_TEST_CASE(value_and_error) {
  Result<int> ok = 5;
  BOOST_TEST(ok.ok());
  BOOST_TEST(*ok == 5);
  Result<int> bad = Err(AllocError::kOutOfMemory);
  BOOST_TEST(!bad.ok());
  BOOST_TEST((bad.error() == AllocError::kOutOfMemory));
  BOOST_TEST(bad.value_or(7) == 7);
}

BOOST_AUTO_TEST_CASE(try_propagates_first_error) {
  BOOST_TEST(*quarter(8) == 2);
  auto r = quarter(6);  // 6/2 = 3 is odd
  BOOST_TEST(!r.ok());
  BOOST_TEST((r.error() == AllocError::kSizeOverflow));
}

BOOST_AUTO_TEST_CASE(non_trivial_values_copy_and_move) {
  Result<std::string> a = std::string(100, 'x');
  Result<std::string> b = a;
  Result<std::string> c = std::move(a);
  BOOST_TEST(b->size() == 100u);
  BOOST_TEST(*c == std::string(100, 'x'));
  c = Err(AllocError::kInvalidAlignment);
  BOOST_TEST(!c.ok());
  c = b;
  BOOST_TEST(c->size() == 100u);
}

BOOST_AUTO_TEST_CASE(void_result) {
  Result<void> ok = alloy::Ok();
  BOOST_TEST(ok.ok());
  Result<void> bad = AllocError::kOutOfMemory;
  BOOST_TEST(!bad.ok());
}

BOOST_AUTO_TEST_CASE(error_names) {
  BOOST_TEST(alloy::to_string(AllocError::kOutOfMemory) == "out of memory");
  BOOST_TEST(alloy::to_string(AllocError::kSizeOverflow) == "size overflow");
  BOOST_TEST(alloy::to_string(AllocError::kInvalidAlignment) == "invalid alignment");
}

// ---- ALLOY_TRY on Result<void>, checked error(), std::expected-style API ----

namespace {
Result<void> step(bool ok) {
  if (!ok) return Err(AllocError::kOutOfMemory);
  return alloy::Ok();
}
int g_steps = 0;
Result<void> two_steps(bool first, bool second) {
  ALLOY_TRY(step(first));
  ++g_steps;
  ALLOY_TRY(step(second));
  ++g_steps;
  return alloy::Ok();
}
// The void form inside a function returning a value Result.
Result<int> steps_then_value(bool ok) {
  ALLOY_TRY(step(ok));
  ALLOY_TRY(int h, half(8));
  return h;
}
}  // namespace

BOOST_AUTO_TEST_CASE(try_works_on_void_results) {
  g_steps = 0;
  BOOST_TEST(two_steps(true, true).ok());
  BOOST_TEST(g_steps == 2);
  g_steps = 0;
  auto r = two_steps(true, false);
  BOOST_TEST(!r.ok());
  BOOST_TEST((r.error() == AllocError::kOutOfMemory));
  BOOST_TEST(g_steps == 1);
  g_steps = 0;
  BOOST_TEST(!two_steps(false, true).ok());
  BOOST_TEST(g_steps == 0);
  BOOST_TEST(*steps_then_value(true) == 4);
  BOOST_TEST((steps_then_value(false).error() == AllocError::kOutOfMemory));
}

BOOST_AUTO_TEST_CASE(value_or_on_lvalues_and_rvalues) {
  Result<std::string> ok = std::string("kept");
  Result<std::string> bad = Err(AllocError::kSizeOverflow);
  BOOST_TEST(ok.value_or("fallback") == "kept");
  BOOST_TEST(bad.value_or("fallback") == "fallback");
  BOOST_TEST(std::move(ok).value_or("x") == "kept");
  BOOST_TEST(ok.has_value());
}

BOOST_AUTO_TEST_CASE(transform_and_map) {
  Result<int> ok = 21;
  Result<int> bad = Err(AllocError::kInvalidAlignment);
  auto doubled = ok.transform([](int x) { return x * 2; });
  static_assert(std::is_same_v<decltype(doubled), Result<int>>);
  BOOST_TEST(*doubled == 42);
  auto named = ok.map([](int x) { return std::to_string(x); });
  static_assert(std::is_same_v<decltype(named), Result<std::string>>);
  BOOST_TEST(*named == "21");
  auto b = bad.transform([](int x) { return x * 2; });
  BOOST_TEST((b.error() == AllocError::kInvalidAlignment));
  int seen = 0;
  Result<void> v = ok.transform([&](int x) { seen = x; });
  BOOST_TEST(v.ok());
  BOOST_TEST(seen == 21);
  // rvalue: the value is moved into f.
  Result<std::string> s = std::string(50, 'y');
  auto len = std::move(s).transform([](std::string&& str) { return str.size(); });
  BOOST_TEST(*len == 50u);
  // Result<void>
  Result<void> vok = alloy::Ok();
  Result<void> vbad = Err(AllocError::kOutOfMemory);
  BOOST_TEST(*vok.transform([] { return 7; }) == 7);
  BOOST_TEST((vbad.map([] { return 7; }).error() == AllocError::kOutOfMemory));
}

BOOST_AUTO_TEST_CASE(and_then_chains_fallible_steps) {
  Result<int> ok = 8;
  auto q = ok.and_then(half).and_then(half);
  BOOST_TEST(*q == 2);
  auto odd = Result<int>(6).and_then(half).and_then(half);
  BOOST_TEST((odd.error() == AllocError::kSizeOverflow));
  Result<int> bad = Err(AllocError::kOutOfMemory);
  bool called = false;
  auto r = bad.and_then([&](int) {
    called = true;
    return Result<int>(1);
  });
  BOOST_TEST(!called);
  BOOST_TEST((r.error() == AllocError::kOutOfMemory));
  Result<void> vok = alloy::Ok();
  auto v = vok.and_then([] { return Result<int>(3); });
  BOOST_TEST(*v == 3);
  auto v2 = Result<void>(Err(AllocError::kSizeOverflow)).and_then([] { return step(true); });
  BOOST_TEST((v2.error() == AllocError::kSizeOverflow));
}

BOOST_AUTO_TEST_CASE(transform_error_and_or_else) {
  Result<int> bad = Err(AllocError::kOutOfMemory);
  auto t = bad.transform_error([](AllocError) { return AllocError::kSizeOverflow; });
  BOOST_TEST((t.error() == AllocError::kSizeOverflow));
  Result<int> ok = 5;
  BOOST_TEST(*ok.transform_error([](AllocError e) { return e; }) == 5);
  auto recovered = bad.or_else([](AllocError) { return Result<int>(0); });
  BOOST_TEST(*recovered == 0);
  bool called = false;
  auto same = ok.or_else([&](AllocError) {
    called = true;
    return Result<int>(0);
  });
  BOOST_TEST(*same == 5);
  BOOST_TEST(!called);
  Result<void> vbad = Err(AllocError::kInvalidAlignment);
  BOOST_TEST((vbad.transform_error([](AllocError) { return AllocError::kOutOfMemory; }).error() ==
              AllocError::kOutOfMemory));
  BOOST_TEST(vbad.or_else([](AllocError) { return alloy::Ok(); }).ok());
}

BOOST_AUTO_TEST_CASE(error_on_a_success_aborts_with_a_message) {
  auto d = alloy::testing::run_in_child([] {
    Result<int> ok = 1;
    (void)ok.error();
  });
  BOOST_TEST(d.aborted());
  BOOST_TEST(d.err.find("alloy: Result::error() called on a success") != std::string::npos, d.err);
  auto dv = alloy::testing::run_in_child([] { (void)alloy::Ok().error(); });
  BOOST_TEST(dv.aborted());
  BOOST_TEST(dv.err.find("Result::error() called on a success") != std::string::npos, dv.err);
  auto du = alloy::testing::run_in_child([] {
    Result<int> bad = Err(AllocError::kOutOfMemory);
    (void)bad.value();
  });
  BOOST_TEST(du.aborted());
  BOOST_TEST(du.err.find("value() called on an error: out of memory") != std::string::npos);
}
