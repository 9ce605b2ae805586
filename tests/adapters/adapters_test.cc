#define BOOST_TEST_MODULE adapters
#include <boost/test/unit_test.hpp>

#include <map>
#include <memory_resource>
#include <string>
#include <unordered_map>
#include <vector>

#include "alloy/adapters/pmr.h"
#include "alloy/adapters/std_allocator.h"
#include "alloy/allocators/c_allocator.h"
#include "tests/support/recording_allocator.h"

using alloy::StdAllocator;
using alloy::testing::RecordingAllocator;

namespace {
template <class T>
using AVector = std::vector<T, StdAllocator<T>>;
using AString = std::basic_string<char, std::char_traits<char>, StdAllocator<char>>;
}  // namespace

BOOST_AUTO_TEST_CASE(stl_containers_run_on_a_handle) {
  RecordingAllocator rec;
  {
    StdAllocator<int> stl(rec.allocator());
    AVector<int> v(stl);
    for (int i = 0; i < 1000; ++i) v.push_back(i);
    BOOST_TEST(v[999] == 999);

    std::map<int, AString, std::less<>, StdAllocator<std::pair<const int, AString>>> m(stl);
    for (int i = 0; i < 100; ++i) {
      m.emplace(i, AString(50, 'm', StdAllocator<char>(rec.allocator())));
    }
    BOOST_TEST(m.at(42).size() == 50u);

    std::unordered_map<int, int, std::hash<int>, std::equal_to<>,
                       StdAllocator<std::pair<const int, int>>>
        u(16, std::hash<int>(), std::equal_to<>(), stl);
    for (int i = 0; i < 500; ++i) u[i] = i * 2;
    BOOST_TEST(u.at(250) == 500);
    BOOST_TEST(rec.live_bytes > 0u);
  }
  BOOST_TEST(rec.live_bytes == 0u);  // every container gave everything back, sized
}

BOOST_AUTO_TEST_CASE(stl_failure_throws_bad_alloc_and_leaks_nothing) {
  RecordingAllocator rec;
  StdAllocator<int> stl(rec.allocator());
  AVector<int> v(stl);
  v.assign(10, 1);
  rec.fail_allocs = true;
  BOOST_CHECK_THROW(v.resize(1000), std::bad_alloc);
  BOOST_TEST(v.size() == 10u);  // strong guarantee from std::vector
  rec.fail_allocs = false;
  v.clear();
  v.shrink_to_fit();
  BOOST_TEST(rec.live_bytes == 0u);
}

BOOST_AUTO_TEST_CASE(std_allocator_equality_and_rebind) {
  RecordingAllocator rec1, rec2;
  StdAllocator<int> a(rec1.allocator());
  StdAllocator<double> b(a);
  BOOST_TEST((a == b));
  BOOST_TEST(!(a == StdAllocator<int>(rec2.allocator())));
}

BOOST_AUTO_TEST_CASE(pmr_containers_over_a_handle) {
  RecordingAllocator rec;
  {
    alloy::MemoryResource res(rec.allocator());
    std::pmr::vector<std::pmr::string> v(&res);
    for (int i = 0; i < 200; ++i) v.emplace_back(std::string(40, 'x'));
    BOOST_TEST(v[199].size() == 40u);
    BOOST_TEST(v[0].get_allocator().resource() == &res);
    alloy::MemoryResource same(rec.allocator());
    BOOST_TEST(res.is_equal(same));
  }
  BOOST_TEST(rec.live_bytes == 0u);
}

BOOST_AUTO_TEST_CASE(pmr_resource_failure_throws) {
  RecordingAllocator rec;
  rec.fail_allocs = true;
  alloy::MemoryResource res(rec.allocator());
  BOOST_CHECK_THROW((void)res.allocate(64, 8), std::bad_alloc);
}

BOOST_AUTO_TEST_CASE(handle_over_a_pmr_resource) {
  std::byte buffer[4096];
  std::pmr::monotonic_buffer_resource mono(buffer, sizeof buffer,
                                           std::pmr::null_memory_resource());
  alloy::Allocator a = alloy::resource_allocator(&mono);
  auto s = a.alloc<int>(100);
  BOOST_REQUIRE(s.ok());
  BOOST_TEST(reinterpret_cast<std::byte*>(s->data()) >= buffer);
  BOOST_TEST(reinterpret_cast<std::byte*>(s->data()) < buffer + sizeof buffer);
  (*s)[99] = 5;
  // The upstream null resource throws; through the handle that is just null.
  auto big = a.alloc<int>(100000);
  BOOST_TEST(!big.ok());
  BOOST_TEST((big.error() == alloy::AllocError::kOutOfMemory));
  auto aligned = a.alloc_aligned<char>(10, std::size_t{256});
  BOOST_REQUIRE(aligned.ok());
  BOOST_TEST(alloy::Alignment::from_bytes(256)->check(aligned->data()));
  // realloc works through alloc + copy + free (pmr has no resize).
  auto g = a.realloc(*s, 200);
  BOOST_REQUIRE(g.ok());
  BOOST_TEST((*g)[99] == 5);
}

BOOST_AUTO_TEST_CASE(pool_resource_round_trip) {
  std::pmr::unsynchronized_pool_resource pool;
  alloy::Allocator a = alloy::resource_allocator(&pool);
  alloy::MemoryResource back(a);  // pmr over a handle over pmr
  std::pmr::vector<int> v(&back);
  for (int i = 0; i < 1000; ++i) v.push_back(i);
  BOOST_TEST(v[500] == 500);
}

// The size rule reaches through the adapters: nothing over PTRDIFF_MAX
// (rounded to the alignment) gets to the handle's allocator.
BOOST_AUTO_TEST_CASE(adapters_refuse_sizes_over_the_limit) {
  RecordingAllocator rec;
  StdAllocator<std::uint64_t> stl(rec.allocator());
  // volatile: the compiler would refuse these sizes at compile time.
  volatile std::size_t limit = static_cast<std::size_t>(PTRDIFF_MAX);
  volatile std::size_t all = SIZE_MAX;
  BOOST_CHECK_THROW((void)stl.allocate(limit / 8 + 1), std::bad_array_new_length);
  BOOST_CHECK_THROW((void)stl.allocate(all / 4), std::bad_array_new_length);
  alloy::MemoryResource res(rec.allocator());
  BOOST_CHECK_THROW((void)res.allocate(all, 8), std::bad_alloc);
  BOOST_CHECK_THROW((void)res.allocate(limit, 4096), std::bad_alloc);
  BOOST_TEST(rec.calls.empty());
}
