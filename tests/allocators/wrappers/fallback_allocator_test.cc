#define BOOST_TEST_MODULE fallback_allocator
#include <boost/test/unit_test.hpp>

#include <cstring>
#include <string>

#include "alloy/allocators/c_allocator.h"
#include "alloy/allocators/wrappers/counting_allocator.h"
#include "alloy/allocators/wrappers/fallback_allocator.h"
#include "alloy/allocators/wrappers/thread_safe_allocator.h"
#include "tests/support/capture_stderr.h"
#include "tests/allocators/wrappers/wrapper_test_util.h"

namespace {

using alloy::Alignment;
using alloy::Bytes;
using alloy::CountingAllocator;

constexpr std::uintptr_t kRet = 0;

// Primary: a 1 KiB bump behind a counter; fallback: malloc behind a counter.
struct Fixture {
  alignas(64) std::byte buffer[1024];
  alloy::detail::InlineBump bump{buffer, sizeof buffer};
  CountingAllocator primary{bump.allocator()};
  CountingAllocator secondary{alloy::c_allocator()};
  alloy::AddressRange range{buffer, buffer + sizeof buffer};
  alloy::FallbackAllocator fallback{primary.allocator(), range.owner(),
                                    secondary.allocator()};
  alloy::Allocator a = fallback.allocator();
};

}  // namespace

BOOST_AUTO_TEST_CASE(alloc_tries_primary_then_fallback) {
  Fixture f;
  auto x = f.a.alloc<char>(600);
  BOOST_REQUIRE(x);
  BOOST_TEST(f.range.owns(x->data()));
  BOOST_TEST(f.primary.stats().allocs == 1u);
  BOOST_TEST(f.secondary.stats().allocs == 0u);
  auto y = f.a.alloc<char>(600);  // does not fit in what is left
  BOOST_REQUIRE(y);
  BOOST_TEST(!f.range.owns(y->data()));
  BOOST_TEST(f.primary.stats().allocs == 2u);
  BOOST_TEST(f.primary.stats().alloc_failures == 1u);
  BOOST_TEST(f.secondary.stats().allocs == 1u);
  auto z = f.a.alloc<char>(400);  // fits again in the primary
  BOOST_REQUIRE(z);
  BOOST_TEST(f.range.owns(z->data()));
  f.a.free(*y);
  f.a.free(*z);
  f.a.free(*x);
  BOOST_TEST(f.primary.stats().frees == 2u);
  BOOST_TEST(f.secondary.stats().frees == 1u);
  BOOST_TEST(f.primary.live_blocks() == 0u);
  BOOST_TEST(f.secondary.live_blocks() == 0u);
}

BOOST_AUTO_TEST_CASE(resize_and_remap_route_by_ownership) {
  Fixture f;
  Bytes x = *f.a.alloc_bytes(100, Alignment{});
  Bytes y = *f.a.alloc_bytes(5000, Alignment{});  // fallback
  BOOST_TEST(f.a.raw_resize(x, Alignment{}, 200, kRet));  // last bump block grows
  x = Bytes(x.data(), 200);
  BOOST_TEST(f.primary.stats().resizes == 1u);
  BOOST_TEST(f.secondary.stats().resizes == 0u);
  void* moved = f.a.raw_remap(y, Alignment{}, 10000, kRet);
  BOOST_REQUIRE(moved != nullptr);
  y = Bytes(static_cast<std::byte*>(moved), 10000);
  BOOST_TEST(f.secondary.stats().remaps == 1u);
  BOOST_TEST(f.primary.stats().remaps == 0u);
  // Primary block grown past its buffer: refused in place, no migration.
  BOOST_TEST(f.a.raw_remap(x, Alignment{}, 4096, kRet) == nullptr);
  BOOST_TEST(f.primary.stats().remap_failures == 1u);
  BOOST_TEST(f.secondary.stats().allocs == 1u);
  f.a.free_bytes(y, Alignment{});
  f.a.free_bytes(x, Alignment{});
  BOOST_TEST(f.secondary.live_blocks() == 0u);
  BOOST_TEST(f.bump.used() == 0u);  // LIFO frees rewound the bump
}

BOOST_AUTO_TEST_CASE(realloc_moves_a_full_primary_block_to_the_fallback) {
  Fixture f;
  auto r = f.a.alloc<int>(64);
  BOOST_REQUIRE(r);
  for (int i = 0; i < 64; ++i) (*r)[i] = i * 3;
  auto g = f.a.realloc(*r, 1000);  // 4000 bytes: cannot stay inline
  BOOST_REQUIRE(g);
  BOOST_TEST(!f.range.owns(g->data()));
  for (int i = 0; i < 64; ++i) BOOST_TEST((*g)[i] == i * 3);
  BOOST_TEST(f.primary.live_blocks() == 0u);  // the inline copy was freed
  BOOST_TEST(f.secondary.live_blocks() == 1u);
  f.a.free(*g);
}

namespace {
struct EvenOwner {  // a custom Owner::of source: claims even pointers
  mutable int asked = 0;
  bool owns(const void* p) const {
    ++asked;
    return reinterpret_cast<std::uintptr_t>(p) % 2 == 0;
  }
};
}  // namespace

BOOST_AUTO_TEST_CASE(owner_of_any_object_is_consulted) {
  EvenOwner even;
  CountingAllocator primary(alloy::c_allocator());
  CountingAllocator secondary(alloy::c_allocator());
  alloy::FallbackAllocator fallback(primary.allocator(), alloy::Owner::of(even),
                                    secondary.allocator());
  alloy::Allocator a = fallback.allocator();
  auto r = a.alloc<int>(4);
  BOOST_REQUIRE(r);
  a.free(*r);  // malloc pointers are even: routed to the primary
  BOOST_TEST(even.asked == 1);
  BOOST_TEST(primary.stats().frees == 1u);
  BOOST_TEST(secondary.stats().frees == 0u);
}

BOOST_AUTO_TEST_CASE(stack_fallback_uses_the_inline_buffer_first) {
  alloy::StackFallback<256> sf(alloy::c_allocator());
  alloy::Allocator a = sf.allocator();
  auto x = a.alloc<char>(100);
  BOOST_REQUIRE(x);
  BOOST_TEST(sf.owns_inline(x->data()));
  BOOST_TEST(sf.inline_used() == 100u);
  auto y = a.alloc<char>(200);  // 300 > 256: malloc
  BOOST_REQUIRE(y);
  BOOST_TEST(!sf.owns_inline(y->data()));
  std::memset(x->data(), 'x', 100);
  std::memset(y->data(), 'y', 200);
  a.free(*y);  // ASan would flag a malloc free of a stack pointer
  a.free(*x);
  BOOST_TEST(sf.inline_used() == 0u);
  auto z = a.alloc<char>(256);  // the whole buffer, exactly
  BOOST_REQUIRE(z);
  BOOST_TEST(sf.owns_inline(z->data()));
  a.free(*z);
}

BOOST_AUTO_TEST_CASE(stack_fallback_last_block_grows_in_place) {
  alloy::StackFallback<512> sf(alloy::c_allocator());
  alloy::Allocator a = sf.allocator();
  auto x = a.alloc<char>(100);
  BOOST_REQUIRE(x);
  BOOST_TEST(a.resize(*x, 500));
  BOOST_TEST(!a.resize(std::span<char>(x->data(), 500), 600));
  BOOST_TEST(sf.inline_used() == 500u);
  a.free(std::span<char>(x->data(), 500));
  BOOST_TEST(sf.inline_used() == 0u);
}

BOOST_AUTO_TEST_CASE(alignment_is_preserved) {
  alloy::StackFallback<8192> sf(alloy::c_allocator());
  // Inline up to 4 KiB (the buffer is only max_align_t aligned, so the bump
  // aligns forward), then malloc for 64 KiB.
  BOOST_TEST(alloy::testing::misaligned_count(sf.allocator(), 65536) == 0);
  Fixture f;
  BOOST_TEST(alloy::testing::misaligned_count(f.a, 65536) == 0);
}

BOOST_AUTO_TEST_CASE(stack_fallback_behind_a_mutex_hammered_from_four_threads) {
  auto sf = std::make_unique<alloy::StackFallback<16384>>(alloy::c_allocator());
  alloy::ThreadSafeAllocator safe(sf->allocator());
  auto r = alloy::testing::hammer(safe.allocator(), 4, 20000);
  BOOST_TEST(r.corrupted == 0u);
  BOOST_TEST(r.failures == 0u);
}

// Issue 10 (wrong frees across the family): the inline buffer refuses a
// double free and a free after reset_inline(), and reports them; a foreign
// block goes to the fallback, which decides.
BOOST_AUTO_TEST_CASE(stack_fallback_inline_buffer_refuses_stale_frees) {
  CountingAllocator heap{alloy::c_allocator()};
  heap.set_report_to_stderr(false);
  alloy::StackFallback<256> sf(heap.allocator());
  alloy::Allocator a = sf.allocator();
  void* x = a.raw_alloc(16, Alignment{}, kRet);
  void* y = a.raw_alloc(32, Alignment{}, kRet);
  BOOST_REQUIRE(x && y && sf.owns_inline(x) && sf.owns_inline(y));
  const Bytes bx(static_cast<std::byte*>(x), 16), by(static_cast<std::byte*>(y), 32);
  alloy::testing::CaptureStderr err;
  a.raw_free(by, Alignment{}, kRet);          // last: rewinds
  a.raw_free(by, Alignment{}, 0x1dead);       // again: refused
  BOOST_TEST(sf.inline_refused_frees() == 1u);
  BOOST_TEST(sf.inline_used() <= 16u + 16u);
  a.raw_free(Bytes(bx.data(), 200), Alignment{}, 0x2dead);  // past the cursor
  BOOST_TEST(sf.inline_refused_frees() == 2u);
  sf.reset_inline();
  a.raw_free(bx, Alignment{}, 0x3dead);       // after reset
  BOOST_TEST(sf.inline_refused_frees() == 3u);
  // A foreign pointer is the fallback's: the counter refuses it (nothing live).
  alignas(16) std::byte local[16];
  a.raw_free(Bytes(local, 16), Alignment{}, 0x4dead);
  BOOST_TEST(heap.refused_frees() == 1u);
  BOOST_TEST(sf.inline_used() == 0u);
  const std::string text = err.text();
  BOOST_TEST(text.find("alloy::StackFallback (inline buffer): refused free of") !=
                 std::string::npos,
             text);
  BOOST_TEST(text.find("called from 0x1dead") != std::string::npos, text);
  BOOST_TEST(text.find("called from 0x3dead") != std::string::npos, text);
  void* z = a.raw_alloc(64, Alignment{}, kRet);
  BOOST_TEST((z != nullptr && sf.owns_inline(z)));
  a.raw_free(Bytes(static_cast<std::byte*>(z), 64), Alignment{}, kRet);
}
