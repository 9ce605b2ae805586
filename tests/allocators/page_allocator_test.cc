#define BOOST_TEST_MODULE page_allocator
#include <boost/test/unit_test.hpp>

#include <sys/mman.h>

#include <cstring>
#include <string>

#include "alloy/allocators/page_allocator.h"
#include "tests/allocators/family_test_util.h"
#include "tests/support/capture_stderr.h"

using alloy::Alignment;
using alloy::Bytes;
namespace t = alloy::testing;

BOOST_AUTO_TEST_CASE(alloc_grow_and_free_round_trip) {
  alloy::Allocator pages = alloy::page_allocator();
  auto b = pages.alloc<std::byte>(3 * alloy::page_size() + 5);
  BOOST_REQUIRE(b);
  BOOST_CHECK_EQUAL(reinterpret_cast<std::uintptr_t>(b->data()) % alloy::page_size(), 0u);
  std::memset(b->data(), 7, b->size());
  auto bigger = pages.realloc(*b, 64 * alloy::page_size());
  BOOST_REQUIRE(bigger);
  BOOST_CHECK((*bigger)[0] == std::byte{7});
  pages.free(*bigger);
}

// Issue 10 (wrong frees across the family): what page_allocator can ask the
// kernel about is refused and reported, and unmaps nothing.
BOOST_AUTO_TEST_CASE(wrong_frees_are_refused_and_reported) {
  alloy::Allocator pages = alloy::page_allocator();
  const std::size_t page = alloy::page_size();
  auto* p = static_cast<std::byte*>(pages.raw_alloc(2 * page, Alignment{}, 0));
  BOOST_REQUIRE(p != nullptr);
  std::memset(p, 1, 2 * page);
  t::CaptureStderr err;
  // Interior: not page-aligned; nothing may be unmapped.
  pages.raw_free(Bytes(p + 8, page), Alignment{}, 0x9a9e01);
  BOOST_CHECK(p[0] == std::byte{1});
  BOOST_CHECK(p[2 * page - 1] == std::byte{1});
  BOOST_CHECK_MESSAGE(err.contains("alloy::page_allocator: refused free of"), err.text());
  BOOST_CHECK_MESSAGE(err.contains("called from 0x9a9e01"), err.text());
  pages.raw_free(Bytes(p, 2 * page), Alignment{}, 0);
  // Double free: the pages are gone; in checked builds the kernel says so.
  pages.raw_free(Bytes(p, 2 * page), Alignment{}, 0x9a9e02);
  if (alloy::kCheckedFrees) {
    BOOST_CHECK_MESSAGE(err.contains("double free"), err.text());
    BOOST_CHECK_MESSAGE(err.contains("called from 0x9a9e02"), err.text());
  }
}
