#define BOOST_TEST_MODULE alignment
#include <boost/test/unit_test.hpp>

#include "alloy/alloc_iface/alignment.h"

using alloy::Alignment;

BOOST_AUTO_TEST_CASE(of_matches_alignof) {
  BOOST_TEST(Alignment::of<char>().bytes() == 1u);
  BOOST_TEST(Alignment::of<double>().bytes() == alignof(double));
  struct alignas(64) Line { char c[64]; };
  BOOST_TEST(Alignment::of<Line>().bytes() == 64u);
  BOOST_TEST(Alignment::of<Line>().log2() == 6);
}

BOOST_AUTO_TEST_CASE(from_bytes_accepts_only_powers_of_two) {
  for (std::size_t b = 1; b <= (std::size_t{1} << 20); b <<= 1) {
    auto a = Alignment::from_bytes(b);
    BOOST_REQUIRE(a.has_value());
    BOOST_TEST(a->bytes() == b);
  }
  for (std::size_t b : {0u, 3u, 6u, 12u, 48u, 1000u, 65535u}) {
    BOOST_TEST(!Alignment::from_bytes(b).has_value(), "accepted " << b);
  }
}

BOOST_AUTO_TEST_CASE(forward_backward_check) {
  auto a = *Alignment::from_bytes(16);
  BOOST_TEST(a.forward(0) == 0u);
  BOOST_TEST(a.forward(1) == 16u);
  BOOST_TEST(a.forward(16) == 16u);
  BOOST_TEST(a.forward(17) == 32u);
  BOOST_TEST(a.backward(31) == 16u);
  BOOST_TEST(a.check(std::uintptr_t{48}));
  BOOST_TEST(!a.check(std::uintptr_t{40}));
  BOOST_TEST(Alignment().bytes() == 1u);
  BOOST_TEST(Alignment().check(std::uintptr_t{7}));
}

BOOST_AUTO_TEST_CASE(ordering_and_max) {
  auto a8 = *Alignment::from_bytes(8);
  auto a64 = *Alignment::from_bytes(64);
  BOOST_TEST((a8 < a64));
  BOOST_TEST((a8.max(a64) == a64));
  BOOST_TEST((a64.max(a8) == a64));
  BOOST_TEST(sizeof(Alignment) == 1u);
}

BOOST_AUTO_TEST_CASE(from_log2_clamps) {
  BOOST_TEST(Alignment::from_log2(200).log2() == Alignment::kMaxLog2);
}
