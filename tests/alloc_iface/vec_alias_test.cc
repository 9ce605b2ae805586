// Vec members whose value or arguments refer to the Vec's own elements keep
// working when the Vec has to move, as std::vector's do. The child poisons
// and quarantines every freed block, so a read of the old storage shows up as
// 0xDB garbage with or without ASan.
#define BOOST_TEST_MODULE vec_alias
#include <boost/test/unit_test.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>
#include <string>
#include <utility>

#include "alloy/alloc_iface/vec.h"
#include "tests/alloc_iface/quarantine_allocator.h"

using alloy::Vec;
using alloy::testing::QuarantineAllocator;

namespace {

struct Point {
  int x, y;
  Point(int a, int b) : x(a), y(b) {}  // clang < 16 has no T(args) for aggregates
};
// Constructed from parts of other elements (not a T, so no copy is made first).
struct Sum {
  int total;
  Sum(const int& a, const int& b) : total(a + b) {}
};
struct Named {  // not trivially copyable
  std::string name;
  int n;
  Named(std::string s, int k) : name(std::move(s)), n(k) {}
  Named(const Named& o, int k) : name(o.name), n(o.n + k) {}
};

// Fill to exactly full capacity so the next addition must move.
template <class T, class F>
void fill_to_capacity(Vec<T>& v, F make) {
  int i = 0;
  do {
    BOOST_REQUIRE(v.try_push(make(i++)).ok());
  } while (v.size() < v.capacity());
}

}  // namespace

// Both growth paths: alloc + copy + free, and remap.
#define FOR_EACH_PATH(q)                  \
  for (bool remap : {false, true})        \
    if (QuarantineAllocator q; (q.allow_remap = remap), true)

BOOST_AUTO_TEST_CASE(push_of_an_own_element) {
  FOR_EACH_PATH(q) {
    Vec<std::uint64_t> v(q.allocator());
    fill_to_capacity(v, [](int i) { return std::uint64_t(1000 + i); });
    const std::size_t n = v.size();
    BOOST_REQUIRE(v.try_push(v[0]).ok());
    BOOST_TEST(q.moves > 0u);
    BOOST_TEST(v[n] == 1000u);
    fill_to_capacity(v, [](int i) { return std::uint64_t(i); });
    BOOST_REQUIRE(v.try_push(std::move(v[1])).ok());
    BOOST_TEST(v.back() == 1001u);
  }
}

BOOST_AUTO_TEST_CASE(emplace_from_parts_of_own_elements) {
  FOR_EACH_PATH(q) {
    Vec<Point> pts(q.allocator());
    fill_to_capacity(pts, [](int i) { return Point{i, 10 * i}; });
    const std::size_t n = pts.size();
    BOOST_REQUIRE(pts.try_emplace(pts[n - 1].y, pts[1].x).ok());
    BOOST_TEST(q.moves > 0u);
    BOOST_TEST(pts[n].x == 10 * int(n - 1));
    BOOST_TEST(pts[n].y == 1);
  }
  QuarantineAllocator q;
  Vec<int> ints(q.allocator());
  fill_to_capacity(ints, [](int i) { return 7 + i; });
  Vec<Sum> sums(q.allocator());
  fill_to_capacity(sums, [](int i) { return Sum(i, i); });
  // Sum is trivially copyable: the remap-less path and the tmp path both.
  const std::size_t n = sums.size();
  BOOST_REQUIRE(sums.try_emplace(sums[0].total, sums[1].total).ok());
  BOOST_TEST(sums[n].total == 0 + 2);
}

BOOST_AUTO_TEST_CASE(emplace_of_non_trivial_from_own_element) {
  QuarantineAllocator q;
  Vec<Named> v(q.allocator());
  fill_to_capacity(v, [](int i) { return Named(std::string(40, char('a' + i)), i); });
  const std::size_t n = v.size();
  BOOST_REQUIRE(v.try_emplace(v[2], 100).ok());  // Named(const Named&, int)
  BOOST_TEST(q.moves > 0u);
  BOOST_TEST(v[n].name == std::string(40, 'c'));
  BOOST_TEST(v[n].n == 102);
  fill_to_capacity(v, [](int i) { return Named("x", i); });
  BOOST_REQUIRE(v.try_push(v[0]).ok());
  BOOST_TEST(v.back().name == std::string(40, 'a'));
  fill_to_capacity(v, [](int i) { return Named("y", i); });
  BOOST_REQUIRE(v.try_emplace(v[1].name, v[1].n).ok());
  BOOST_TEST(v.back().name == std::string(40, 'b'));
  BOOST_TEST(v.back().n == 1);
}

BOOST_AUTO_TEST_CASE(resize_with_an_own_element) {
  FOR_EACH_PATH(q) {
    Vec<std::uint32_t> v(q.allocator());
    fill_to_capacity(v, [](int i) { return std::uint32_t(50 + i); });
    const std::size_t n = v.size();
    BOOST_REQUIRE(v.try_resize(n * 5, v[3]).ok());
    BOOST_TEST(q.moves > 0u);
    for (std::size_t i = n; i < n * 5; ++i) BOOST_TEST_REQUIRE(v[i] == 53u);
  }
  QuarantineAllocator q;
  Vec<std::string> s(q.allocator());
  fill_to_capacity(s, [](int i) { return std::string(30, char('k' + i)); });
  const std::size_t n = s.size();
  BOOST_REQUIRE(s.try_resize(n + 20, s[1]).ok());
  for (std::size_t i = n; i < n + 20; ++i) BOOST_TEST_REQUIRE(s[i] == std::string(30, 'l'));
}

BOOST_AUTO_TEST_CASE(append_of_own_elements) {
  FOR_EACH_PATH(q) {
    Vec<int> v(q.allocator());
    fill_to_capacity(v, [](int i) { return i; });
    const std::size_t n = v.size();
    BOOST_REQUIRE(v.try_append(v.span()).ok());
    BOOST_TEST(q.moves > 0u);
    for (std::size_t i = 0; i < n; ++i) BOOST_TEST_REQUIRE(v[n + i] == int(i));
    fill_to_capacity(v, [](int i) { return i; });
    const std::size_t m = v.size();
    BOOST_REQUIRE(v.try_append(v.span().subspan(1, 3)).ok());
    BOOST_TEST(v[m] == 1);
    BOOST_TEST(v[m + 2] == 3);
  }
  QuarantineAllocator q;
  Vec<std::string> s(q.allocator());
  fill_to_capacity(s, [](int i) { return std::string(25, char('a' + i)); });
  const std::size_t n = s.size();
  BOOST_REQUIRE(s.try_append(s.span()).ok());
  for (std::size_t i = 0; i < n; ++i) BOOST_TEST_REQUIRE(s[n + i] == std::string(25, char('a' + i)));
}

BOOST_AUTO_TEST_CASE(insert_of_an_own_element) {
  FOR_EACH_PATH(q) {
    Vec<long> v(q.allocator());
    fill_to_capacity(v, [](int i) { return long(i * 3); });
    const std::size_t n = v.size();
    BOOST_REQUIRE(v.try_insert(0, v[n - 1]).ok());
    BOOST_TEST(q.moves > 0u);
    BOOST_TEST(v[0] == long((n - 1) * 3));
    BOOST_TEST(v[1] == 0);
  }
  QuarantineAllocator q;
  Vec<std::string> s(q.allocator());
  fill_to_capacity(s, [](int i) { return std::string(20, char('p' + i)); });
  BOOST_REQUIRE(s.try_insert(1, s[0]).ok());
  BOOST_TEST(s[1] == std::string(20, 'p'));
  BOOST_TEST(s[2] == std::string(20, 'q'));
}

BOOST_AUTO_TEST_CASE(aliasing_without_a_move_still_works) {
  QuarantineAllocator q;
  Vec<int> v(q.allocator());
  BOOST_REQUIRE(v.try_reserve(64).ok());
  BOOST_REQUIRE(v.try_push(5).ok());
  BOOST_REQUIRE(v.try_push(v[0]).ok());
  BOOST_REQUIRE(v.try_resize(10, v[1]).ok());
  BOOST_REQUIRE(v.try_append(v.span().first(2)).ok());
  BOOST_TEST(v.size() == 12u);
  for (int x : v) BOOST_TEST(x == 5);
}

BOOST_AUTO_TEST_CASE(assign_from_own_elements_and_others) {
  QuarantineAllocator q;
  Vec<int> v(q.allocator());
  for (int i = 0; i < 10; ++i) BOOST_REQUIRE(v.try_push(i).ok());
  BOOST_REQUIRE(v.try_assign(v.span().subspan(3, 4)).ok());  // a run of our own
  BOOST_TEST(v.size() == 4u);
  for (int i = 0; i < 4; ++i) BOOST_TEST(v[i] == 3 + i);
  BOOST_REQUIRE(v.try_assign(v.span()).ok());  // all of it: unchanged
  BOOST_TEST(v.size() == 4u);
  BOOST_TEST(v[3] == 6);
  fill_to_capacity(v, [](int i) { return 40 + i; });
  const std::size_t cap = v.capacity();
  BOOST_REQUIRE(v.try_assign(cap * 3, v[1]).ok());  // grows: value copied first
  BOOST_TEST(q.moves > 0u);
  BOOST_TEST(v.size() == cap * 3);
  for (int x : v) BOOST_TEST_REQUIRE(x == 4);
  BOOST_REQUIRE(v.try_assign(2, v[5]).ok());  // shrinks: value outlives clear()
  BOOST_TEST(v.size() == 2u);
  BOOST_TEST(v[0] == 4);
  std::vector<int> other(500, 9);
  BOOST_REQUIRE(v.try_assign(std::span<const int>(other)).ok());
  BOOST_TEST(v.size() == 500u);
  BOOST_TEST(v[499] == 9);

  Vec<std::string> s(q.allocator());
  fill_to_capacity(s, [](int i) { return std::string(30, char('a' + i)); });
  BOOST_REQUIRE(s.try_assign(s.capacity() * 2, s[2]).ok());
  for (const auto& x : s) BOOST_TEST_REQUIRE(x == std::string(30, 'c'));
  for (int i = 0; i < 3; ++i) BOOST_REQUIRE(s.try_push(std::string(30, char('x' + i))).ok());
  BOOST_REQUIRE(s.try_assign(std::span<const std::string>(s.span().last(3))).ok());
  BOOST_TEST(s.size() == 3u);
  BOOST_TEST(s[0] == std::string(30, 'x'));
  BOOST_TEST(s[2] == std::string(30, 'z'));
}

BOOST_AUTO_TEST_CASE(assign_failure_leaves_the_vec_as_it_was) {
  QuarantineAllocator q;
  Vec<int> v(q.allocator());
  for (int i = 0; i < 8; ++i) BOOST_REQUIRE(v.try_push(i).ok());
  BOOST_TEST(!v.try_assign(std::size_t{PTRDIFF_MAX}, 1).ok());  // size overflow
  BOOST_TEST(v.size() == 8u);
  BOOST_TEST(v[7] == 7);
}
