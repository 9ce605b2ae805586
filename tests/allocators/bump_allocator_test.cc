#define BOOST_TEST_MODULE bump_allocator
#include <boost/test/unit_test.hpp>

#include <cstring>
#include <memory>

#include "alloy/allocators/bump_allocator.h"
#include "tests/allocators/family_test_util.h"

using alloy::Alignment;
using alloy::BumpAllocator;
namespace t = alloy::testing;

namespace {
struct Buffer {
  explicit Buffer(std::size_t n) : storage(new std::byte[n + 65536]) {
    // 64 KiB aligned start so 64 KiB alignments are servable.
    auto a = reinterpret_cast<std::uintptr_t>(storage.get());
    data = reinterpret_cast<std::byte*>((a + 65535) & ~std::uintptr_t{65535});
    size = n;
  }
  alloy::Bytes bytes() { return {data, size}; }
  std::unique_ptr<std::byte[]> storage;
  std::byte* data;
  std::size_t size;
};
}  // namespace

BOOST_AUTO_TEST_CASE(alignment_one_byte_to_64k) {
  Buffer buf(1 << 20);
  BumpAllocator bump(buf.bytes());
  t::check_alignments(bump.allocator(), 64 * 1024);
  for (std::size_t align = 1; align <= 4096; align *= 2) {
    void* p = bump.alloc_inline(3, align);
    BOOST_REQUIRE(p != nullptr);
    BOOST_CHECK_EQUAL(reinterpret_cast<std::uintptr_t>(p) % align, 0u);
  }
}

BOOST_AUTO_TEST_CASE(no_overlap_and_used_accounting) {
  Buffer buf(1 << 20);
  BumpAllocator bump(buf.bytes());
  BOOST_CHECK_EQUAL(bump.capacity(), 1u << 20);
  BOOST_CHECK_EQUAL(bump.used(), 0u);
  auto blocks = t::check_no_overlap(bump.allocator(), 2000, 200);
  BOOST_CHECK_EQUAL(blocks.size(), 2000u);
  std::size_t sum = 0;
  for (auto b : blocks) {
    sum += b.size();
    BOOST_CHECK(bump.owns(b.data()));
  }
  BOOST_CHECK_GE(bump.used(), sum);
  BOOST_CHECK_LE(bump.used(), sum + 8 * blocks.size());
  int local;
  BOOST_CHECK(!bump.owns(&local));
}

BOOST_AUTO_TEST_CASE(last_allocation_resize_and_free) {
  Buffer buf(4096);
  BumpAllocator bump(buf.bytes());
  alloy::Allocator a = bump.allocator();
  auto older = a.alloc<char>(16);
  auto last = a.alloc<char>(16);
  BOOST_REQUIRE(older && last);
  std::memset(last->data(), 'L', 16);
  std::memset(older->data(), 'O', 16);
  const std::size_t used = bump.used();
  BOOST_CHECK(a.resize(*last, 1000));  // grow in place
  BOOST_CHECK_EQUAL(bump.used(), used + 984);
  BOOST_CHECK(a.resize(std::span<char>(last->data(), 1000), 8));  // shrink in place
  BOOST_CHECK_EQUAL(bump.used(), used - 8);
  BOOST_CHECK(!a.resize(std::span<char>(last->data(), 8), 5000));  // past the end
  auto r = a.realloc(std::span<char>(last->data(), 8), 64);  // in place, keeps bytes
  BOOST_REQUIRE(r);
  BOOST_CHECK_EQUAL(static_cast<void*>(r->data()), static_cast<void*>(last->data()));
  BOOST_CHECK_EQUAL((*r)[7], 'L');
  // Older block: no-ops.
  BOOST_CHECK(!a.resize(*older, 32));
  BOOST_CHECK(a.resize(*older, 8));
  a.free(*older);
  BOOST_CHECK_EQUAL((*older)[0], 'O');
  const std::size_t before = bump.used();
  a.free(*r);  // last: rewinds
  BOOST_CHECK_EQUAL(bump.used(), before - 64);
}

BOOST_AUTO_TEST_CASE(out_of_space_returns_null_and_stays_usable) {
  Buffer buf(1024);
  BumpAllocator bump(buf.bytes());
  BOOST_CHECK(bump.alloc_inline(1000, 8) != nullptr);
  BOOST_CHECK(bump.alloc_inline(100, 8) == nullptr);
  BOOST_CHECK(!bump.allocator().alloc<char>(100));
  BOOST_CHECK(bump.alloc_inline(SIZE_MAX, 1) == nullptr);
  BOOST_CHECK(bump.alloc_inline(16, 8) != nullptr);  // what's left is still served
  BOOST_CHECK_EQUAL(bump.remaining(), 8u);
  bump.reset();
  BOOST_CHECK_EQUAL(bump.used(), 0u);
  BOOST_CHECK(bump.alloc_inline(1024, 1) != nullptr);
  BOOST_CHECK(bump.alloc_inline(1, 1) == nullptr);
}

BOOST_AUTO_TEST_CASE(realloc_moves_when_not_last_and_keeps_contents) {
  Buffer buf(8192);
  BumpAllocator bump(buf.bytes());
  alloy::Allocator a = bump.allocator();
  auto first = a.alloc<std::uint32_t>(10);
  BOOST_REQUIRE(first);
  for (std::uint32_t i = 0; i < 10; ++i) (*first)[i] = i * 3;
  auto blocker = a.alloc<char>(1);
  BOOST_REQUIRE(blocker);
  auto grown = a.realloc(*first, 100);
  BOOST_REQUIRE(grown);
  BOOST_CHECK(grown->data() != first->data());
  for (std::uint32_t i = 0; i < 10; ++i) BOOST_CHECK_EQUAL((*grown)[i], i * 3);
}

// Issue 10 (wrong frees across the family): refused, counted and reported.
BOOST_AUTO_TEST_CASE(wrong_frees_are_refused_and_reported) {
  Buffer buf(4096);
  BumpAllocator bump(buf.bytes());
  t::check_bump_wrong_frees(bump, "alloy::BumpAllocator", [&] { bump.reset(); }, true);
  BOOST_CHECK_LE(bump.used(), bump.capacity());
}
