#define BOOST_TEST_MODULE stack_allocator
#include <boost/test/unit_test.hpp>

#include <cstring>
#include <string>

#include "alloy/allocators/stack_allocator.h"
#include "tests/allocators/family_test_util.h"
#include "tests/support/capture_stderr.h"

using alloy::Alignment;
using alloy::StackAllocator;
namespace t = alloy::testing;
using Kind = StackAllocator::ErrorKind;

namespace {
alignas(65536) std::byte g_storage[1 << 20];
alloy::Bytes storage(std::size_t n = sizeof(g_storage)) { return {g_storage, n}; }
}  // namespace

BOOST_AUTO_TEST_CASE(alignment_one_byte_to_64k_and_lifo_rewind) {
  StackAllocator stack(storage());
  t::check_alignments(stack.allocator(), 64 * 1024);  // frees in reverse
  BOOST_CHECK_EQUAL(stack.used(), 0u);  // padding and headers all given back
  BOOST_CHECK_EQUAL(stack.refused_count(), 0u);
}

BOOST_AUTO_TEST_CASE(no_overlap_then_lifo_free_to_empty) {
  StackAllocator stack(storage());
  auto blocks = t::check_no_overlap(stack.allocator(), 2000, 200, 7,
                                    Alignment::from_log2(4));
  BOOST_CHECK_EQUAL(blocks.size(), 2000u);
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) {
    stack.allocator().free_bytes(*it, Alignment::from_log2(4));
  }
  BOOST_CHECK_EQUAL(stack.used(), 0u);
  BOOST_CHECK_EQUAL(stack.refused_count(), 0u);
}

BOOST_AUTO_TEST_CASE(markers_unwind_everything_after) {
  StackAllocator stack(storage());
  alloy::Allocator a = stack.allocator();
  auto keep = a.alloc<int>(10);
  BOOST_REQUIRE(keep);
  for (int i = 0; i < 10; ++i) (*keep)[i] = i;
  const auto m = stack.mark();
  const std::size_t used_at_mark = stack.used();
  for (int i = 0; i < 100; ++i) BOOST_REQUIRE(a.alloc<double>(7));
  BOOST_CHECK_GT(stack.used(), used_at_mark);
  BOOST_CHECK(stack.unwind(m));
  BOOST_CHECK_EQUAL(stack.used(), used_at_mark);
  for (int i = 0; i < 10; ++i) BOOST_CHECK_EQUAL((*keep)[i], i);
  // Nested markers.
  const auto outer = stack.mark();
  BOOST_REQUIRE(a.alloc<char>(5));
  const auto inner = stack.mark();
  BOOST_REQUIRE(a.alloc<char>(5));
  BOOST_CHECK(stack.unwind(inner));
  BOOST_CHECK(stack.unwind(outer));
  BOOST_CHECK_EQUAL(stack.used(), used_at_mark);
  // A marker above the top is refused and reported.
  stack.set_report_to_stderr(false);
  BOOST_CHECK(!stack.unwind(inner));
  BOOST_CHECK(stack.last_error().kind == Kind::kBadMarker);
  BOOST_CHECK_EQUAL(stack.used(), used_at_mark);
}

BOOST_AUTO_TEST_CASE(out_of_order_free_is_refused_and_reported) {
  StackAllocator stack(storage(4096));
  alloy::Allocator a = stack.allocator();
  auto first = a.alloc<char>(32);
  auto second = a.alloc<char>(32);
  BOOST_REQUIRE(first && second);
  std::memset(second->data(), 'S', 32);
  const std::size_t used = stack.used();
  // This one prints the report to stderr (with the return address).
  a.free(*first);
  BOOST_CHECK_EQUAL(stack.refused_count(), 1u);
  BOOST_CHECK(stack.last_error().kind == Kind::kOutOfOrderFree);
  BOOST_CHECK_EQUAL(stack.last_error().pointer, static_cast<const void*>(first->data()));
  BOOST_CHECK_EQUAL(stack.last_error().length, 32u);
  BOOST_CHECK_NE(stack.last_error().ret_addr, 0u);
  BOOST_CHECK_EQUAL(stack.used(), used);  // nothing moved
  BOOST_CHECK_EQUAL((*second)[31], 'S');
  stack.set_report_to_stderr(false);
  // Correct order works afterwards.
  a.free(*second);
  a.free(*first);
  BOOST_CHECK_EQUAL(stack.used(), 0u);
  // Double free: above the top now.
  a.free(*second);
  BOOST_CHECK(stack.last_error().kind == Kind::kStaleFree);
  // Foreign memory.
  char local[8];
  a.free(std::span<char>(local, 8));
  BOOST_CHECK(stack.last_error().kind == Kind::kForeignFree);
  BOOST_CHECK_EQUAL(stack.refused_count(), 3u);
  BOOST_CHECK_EQUAL(stack.used(), 0u);
}

BOOST_AUTO_TEST_CASE(top_block_grows_in_place_and_keeps_contents) {
  StackAllocator stack(storage(4096));
  alloy::Allocator a = stack.allocator();
  auto older = a.alloc<char>(8);
  auto top = a.alloc<char>(8);
  BOOST_REQUIRE(older && top);
  std::memcpy(top->data(), "abcdefgh", 8);
  auto grown = a.realloc(*top, 1000);
  BOOST_REQUIRE(grown);
  BOOST_CHECK_EQUAL(static_cast<void*>(grown->data()), static_cast<void*>(top->data()));
  BOOST_CHECK_EQUAL(std::memcmp(grown->data(), "abcdefgh", 8), 0);
  BOOST_CHECK(!a.resize(*older, 100));
  a.free(*grown);  // the top, with its new length
  a.free(*older);
  BOOST_CHECK_EQUAL(stack.used(), 0u);
  BOOST_CHECK_EQUAL(stack.refused_count(), 0u);
}

BOOST_AUTO_TEST_CASE(out_of_space_returns_null_and_stays_usable) {
  StackAllocator stack(storage(1024));
  alloy::Allocator a = stack.allocator();
  auto big = a.alloc<char>(900);
  BOOST_REQUIRE(big);
  BOOST_CHECK(!a.alloc<char>(200));
  BOOST_CHECK(!a.realloc(*big, 2000));
  BOOST_CHECK(a.alloc<char>(50));
  stack.reset();
  BOOST_CHECK(a.alloc<char>(1000));
}

// Found by tests/fuzz:arena_fuzz. A shrink of an older block succeeds as a
// no-op; once the blocks above it are popped, freeing it with the shorter
// length it now has must rewind the stack, not be refused as out of order.
BOOST_AUTO_TEST_CASE(older_block_shrunk_then_freed_with_its_new_length) {
  StackAllocator stack(storage(1024));
  stack.set_report_to_stderr(false);
  alloy::Allocator a = stack.allocator();
  auto lower = a.alloc<char>(100);
  auto top = a.alloc<char>(50);
  BOOST_REQUIRE(lower && top);
  BOOST_CHECK(a.resize(*lower, 40));  // older block: in place, keeps its bytes
  auto mark = stack.mark();
  a.free(*top);
  BOOST_CHECK(stack.free(std::as_writable_bytes(lower->first(40)), 0));
  BOOST_CHECK_EQUAL(stack.used(), 0u);
  BOOST_CHECK_EQUAL(stack.refused_count(), 0u);
  // Freeing it again is stale, and unwinding to a marker above the top is refused.
  BOOST_CHECK(!stack.free(std::as_writable_bytes(lower->first(40)), 0));
  BOOST_CHECK(stack.last_error().kind == Kind::kStaleFree);
  BOOST_CHECK(!stack.unwind(mark));
  // The stack is fully usable afterwards and markers restore the top block.
  auto again = a.alloc<char>(10);
  BOOST_REQUIRE(again);
  auto m2 = stack.mark();
  auto above = a.alloc<char>(20);
  BOOST_REQUIRE(above);
  BOOST_CHECK(stack.unwind(m2));
  a.free(*again);
  BOOST_CHECK_EQUAL(stack.used(), 0u);
}

// Issue 10: a marker made stale by frees below it was accepted, and the block
// it named could then be freed a second time.
BOOST_AUTO_TEST_CASE(stale_marker_is_refused_and_reported) {
  StackAllocator stack(storage(4096));
  alloy::Allocator a = stack.allocator();
  auto lower = a.alloc<char>(16);
  BOOST_REQUIRE(lower);
  const auto m = stack.mark();  // top block: lower
  a.free(*lower);               // the marker's block is gone ...
  auto bigger = a.alloc<char>(64);  // ... and its start is handed out again
  BOOST_REQUIRE(bigger);
  BOOST_REQUIRE_EQUAL(static_cast<void*>(bigger->data()), static_cast<void*>(lower->data()));
  const std::size_t used = stack.used();
  {
    t::CaptureStderr err;
    BOOST_CHECK(!stack.unwind(m, 0x1234abcd));
    const std::string text = err.text();
    BOOST_CHECK_MESSAGE(text.find("alloy::StackAllocator: refused unwind to a stale marker") !=
                            std::string::npos,
                        text);
    BOOST_CHECK_MESSAGE(text.find("called from 0x1234abcd") != std::string::npos, text);
  }
  BOOST_CHECK(stack.last_error().kind == Kind::kStaleMarker);
  BOOST_CHECK_EQUAL(stack.last_error().ret_addr, 0x1234abcdu);
  BOOST_CHECK_EQUAL(stack.refused_count(), 1u);
  BOOST_CHECK_EQUAL(stack.used(), used);  // nothing moved
  // The stale block cannot be freed a second time through the new one ...
  stack.set_report_to_stderr(false);
  BOOST_CHECK(stack.free(std::as_writable_bytes(*bigger), 0));
  BOOST_CHECK(!stack.free(std::as_writable_bytes(*lower), 0));
  BOOST_CHECK(stack.last_error().kind == Kind::kStaleFree);
  BOOST_CHECK_EQUAL(stack.used(), 0u);
  // ... and the stack is fully usable and consistent afterwards.
  auto x = a.alloc<char>(8);
  BOOST_REQUIRE(x);
  const auto mx = stack.mark();
  BOOST_REQUIRE(a.alloc<char>(100));
  BOOST_CHECK(stack.unwind(mx));
  BOOST_CHECK(stack.free(std::as_writable_bytes(*x), 0));
  BOOST_CHECK_EQUAL(stack.used(), 0u);
  BOOST_CHECK_EQUAL(stack.refused_count(), 2u);
}

BOOST_AUTO_TEST_CASE(marker_below_freed_blocks_stays_valid_other_stale_kinds_refused) {
  StackAllocator stack(storage(4096));
  stack.set_report_to_stderr(false);
  alloy::Allocator a = stack.allocator();
  auto base = a.alloc<char>(10);
  BOOST_REQUIRE(base);
  const auto m_base = stack.mark();
  auto one = a.alloc<char>(20);
  const auto m_one = stack.mark();
  auto two = a.alloc<char>(30);
  BOOST_REQUIRE(one && two);
  // Freeing blocks above a marker keeps it valid; its own block, not.
  a.free(*two);
  a.free(*one);
  // m_one named `one`, now freed; a new block with another alignment starts
  // higher, so the old top sits below the new one.
  auto other = a.alloc_aligned<char>(200, 256);
  BOOST_REQUIRE(other);
  BOOST_CHECK(!stack.unwind(m_one));
  BOOST_CHECK(stack.last_error().kind == Kind::kStaleMarker);
  BOOST_CHECK(stack.unwind(m_base));  // still on the stack
  BOOST_CHECK_EQUAL(stack.used(), m_base.offset);
  // After reset every older marker is stale, even at the same offsets.
  stack.reset();
  auto again = a.alloc<char>(10);
  BOOST_REQUIRE(again);
  auto again2 = a.alloc<char>(40);
  BOOST_REQUIRE(again2);
  BOOST_CHECK(!stack.unwind(m_base));
  BOOST_CHECK(stack.last_error().kind == Kind::kStaleMarker);
  BOOST_CHECK_EQUAL(stack.refused_count(), 2u);
  // An empty-stack marker is always valid.
  BOOST_CHECK(stack.unwind(StackAllocator::Marker{}));
  BOOST_CHECK_EQUAL(stack.used(), 0u);
}

BOOST_AUTO_TEST_CASE(wrong_frees_report_kind_and_return_address) {
  StackAllocator stack(storage(4096));
  alloy::Allocator a = stack.allocator();
  auto lower = a.alloc<char>(32);
  auto top = a.alloc<char>(32);
  BOOST_REQUIRE(lower && top);
  const std::size_t used = stack.used();
  t::CaptureStderr err;
  BOOST_CHECK(!stack.free(std::as_writable_bytes(top->subspan(8)), 0xfeed));  // interior
  BOOST_CHECK(stack.last_error().kind == Kind::kInteriorFree);
  BOOST_CHECK(!stack.free(alloy::Bytes(reinterpret_cast<std::byte*>(top->data()), 64), 0xfeed));
  BOOST_CHECK(stack.last_error().kind == Kind::kStaleFree);  // ends past the top
  char local[8];
  BOOST_CHECK(!stack.free(alloy::Bytes(reinterpret_cast<std::byte*>(local), 8), 0xfeed));
  BOOST_CHECK(stack.last_error().kind == Kind::kForeignFree);
  BOOST_CHECK_EQUAL(stack.used(), used);
  const std::string text = err.text();
  BOOST_CHECK_MESSAGE(text.find("interior pointer") != std::string::npos, text);
  BOOST_CHECK_MESSAGE(text.find("does not own") != std::string::npos, text);
  BOOST_CHECK_MESSAGE(text.find("called from 0xfeed") != std::string::npos, text);
  BOOST_CHECK_EQUAL(stack.refused_count(), 3u);
}
