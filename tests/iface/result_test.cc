#define BOOST_TEST_MODULE result
#include <boost/test/unit_test.hpp>

#include <string>

#include "alloy/alloc_iface/result.h"

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
