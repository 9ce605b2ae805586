#define BOOST_TEST_MODULE failing_allocator
#include <boost/test/unit_test.hpp>

#include <cstring>

#include "alloy/allocators/c_allocator.h"
#include "alloy/allocators/wrappers/failing_allocator.h"

namespace {

using alloy::FailingAllocator;

// Two distinct call sites in functions whose addresses the test knows.
[[gnu::noinline]] bool alloc_site_one(alloy::Allocator a) {
  auto r = a.alloc<int>(8);
  if (!r) return false;
  a.free(*r);
  return true;
}
[[gnu::noinline]] bool alloc_site_two(alloy::Allocator a) {
  auto r = a.alloc<long>(3);
  if (!r) return false;
  a.free(*r);
  return true;
}

bool inside(std::uintptr_t addr, void* fn) {
  const auto start = reinterpret_cast<std::uintptr_t>(fn);
  // A return address lies after the function's entry and within its body;
  // these bodies are a few hundred bytes even with sanitizers.
  return addr > start && addr < start + 4096;
}

}  // namespace

BOOST_AUTO_TEST_CASE(no_failure_by_default_counts_every_call) {
  FailingAllocator failing(alloy::c_allocator());
  alloy::Allocator a = failing.allocator();
  auto x = a.alloc<int>(10);
  BOOST_REQUIRE(x);
  auto y = a.realloc(*x, 20);
  BOOST_REQUIRE(y);
  a.free(*y);
  BOOST_TEST(failing.alloc_count() >= 1u);
  BOOST_TEST(failing.free_count() >= 1u);
  BOOST_TEST(!failing.has_induced_failure());
  BOOST_TEST(failing.failed_ret_addr() == 0u);
  BOOST_TEST(failing.allocated_bytes() == failing.freed_bytes());
}

BOOST_AUTO_TEST_CASE(fails_exactly_the_nth_alloc) {
  for (std::size_t n = 0; n < 6; ++n) {
    FailingAllocator failing(alloy::c_allocator(), {.fail_alloc_index = n});
    alloy::Allocator a = failing.allocator();
    std::span<int> got[8];
    for (std::size_t i = 0; i < 8; ++i) {
      auto r = a.alloc<int>(4);
      BOOST_TEST(static_cast<bool>(r) == (i != n), "call " << i << " fail index " << n);
      got[i] = r ? *r : std::span<int>();
      BOOST_TEST(failing.alloc_count() == i + 1);
    }
    BOOST_TEST(failing.has_induced_failure());
    BOOST_TEST(failing.allocated_bytes() == 7 * 4 * sizeof(int));
    for (auto s : got) a.free(s);
    BOOST_TEST(failing.free_count() == 7u);
    BOOST_TEST(failing.freed_bytes() == failing.allocated_bytes());
  }
}

BOOST_AUTO_TEST_CASE(keep_failing_fails_every_later_alloc) {
  FailingAllocator failing(alloy::c_allocator(),
                           {.fail_alloc_index = 2, .keep_failing = true});
  alloy::Allocator a = failing.allocator();
  auto x = a.alloc<int>(1), y = a.alloc<int>(1), z = a.alloc<int>(1), w = a.alloc<int>(1);
  BOOST_TEST((x && y && !z && !w));
  BOOST_TEST(failing.alloc_count() == 4u);
  a.free(*x);
  a.free(*y);
}

BOOST_AUTO_TEST_CASE(records_return_address_of_failed_call) {
  FailingAllocator failing(alloy::c_allocator(), {.fail_alloc_index = 1});
  alloy::Allocator a = failing.allocator();
  BOOST_TEST(alloc_site_one(a));   // index 0 succeeds
  BOOST_TEST(!alloc_site_two(a));  // index 1 fails
  const std::uintptr_t addr = failing.failed_ret_addr();
  BOOST_TEST(addr != 0u);
  BOOST_TEST(inside(addr, reinterpret_cast<void*>(&alloc_site_two)));

  // Same site, same address, after reset.
  failing.reset({.fail_alloc_index = 0});
  BOOST_TEST(failing.alloc_count() == 0u);
  BOOST_TEST(!failing.has_induced_failure());
  BOOST_TEST(!alloc_site_two(a));
  BOOST_TEST(failing.failed_ret_addr() == addr);

  // A different site gives a different address.
  failing.reset();
  BOOST_TEST(!alloc_site_one(a));
  BOOST_TEST(failing.failed_ret_addr() != addr);
  BOOST_TEST(inside(failing.failed_ret_addr(), reinterpret_cast<void*>(&alloc_site_one)));
}

BOOST_AUTO_TEST_CASE(first_failure_address_is_kept) {
  FailingAllocator failing(alloy::c_allocator(),
                           {.fail_alloc_index = 0, .keep_failing = true});
  alloy::Allocator a = failing.allocator();
  BOOST_TEST(!alloc_site_one(a));
  const std::uintptr_t first = failing.failed_ret_addr();
  BOOST_TEST(!alloc_site_two(a));
  BOOST_TEST(failing.failed_ret_addr() == first);
}

BOOST_AUTO_TEST_CASE(fails_exactly_the_nth_resize_and_remap_share_the_counter) {
  FailingAllocator failing(alloy::c_allocator(), {.fail_resize_index = 1});
  alloy::Allocator a = failing.allocator();
  auto r = a.alloc<char>(64);
  BOOST_REQUIRE(r);
  std::memset(r->data(), 'x', 64);
  // resize #0: shrinking in place is always possible with malloc.
  BOOST_TEST(a.resize(*r, 32));
  BOOST_TEST(failing.resize_count() == 1u);
  // resize #1 fails and leaves the block alone.
  BOOST_TEST(!a.resize(r->first(32), 16));
  BOOST_TEST(failing.resize_count() == 2u);
  BOOST_TEST(failing.has_induced_resize_failure());
  BOOST_TEST(!failing.has_induced_failure());
  // #2 is a remap (raw), and it goes through.
  void* p = a.raw_remap(std::as_writable_bytes(r->first(32)), alloy::Alignment{}, 16,
                        ALLOY_RETURN_ADDRESS());
  BOOST_TEST(p != nullptr);
  BOOST_TEST(failing.resize_count() == 3u);
  BOOST_TEST(static_cast<char*>(p)[15] == 'x');
  a.raw_free(alloy::Bytes(static_cast<std::byte*>(p), 16), alloy::Alignment{},
             ALLOY_RETURN_ADDRESS());
  BOOST_TEST(failing.allocated_bytes() == failing.freed_bytes());
}

BOOST_AUTO_TEST_CASE(failed_remap_falls_back_to_copy_and_keeps_contents) {
  FailingAllocator failing(alloy::c_allocator(),
                           {.fail_resize_index = 0, .keep_failing = true});
  alloy::Allocator a = failing.allocator();
  auto r = a.alloc<int>(16);
  BOOST_REQUIRE(r);
  for (int i = 0; i < 16; ++i) (*r)[i] = i * 7;
  auto g = a.realloc(*r, 4096);  // resize and remap refused: alloc + copy + free
  BOOST_REQUIRE(g);
  for (int i = 0; i < 16; ++i) BOOST_TEST((*g)[i] == i * 7);
  BOOST_TEST(failing.alloc_count() == 2u);
  BOOST_TEST(failing.free_count() == 1u);
  a.free(*g);
}

BOOST_AUTO_TEST_CASE(alignment_is_preserved) {
  FailingAllocator failing(alloy::c_allocator());
  alloy::Allocator a = failing.allocator();
  for (std::size_t align = 1; align <= 65536; align *= 2) {
    auto r = a.alloc_aligned<std::byte>(24, align);
    BOOST_REQUIRE(r);
    BOOST_TEST(reinterpret_cast<std::uintptr_t>(r->data()) % align == 0u);
    a.free_aligned(*r, *alloy::Alignment::from_bytes(align));
  }
}
