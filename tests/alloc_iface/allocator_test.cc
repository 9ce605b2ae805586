#define BOOST_TEST_MODULE allocator
#include <boost/test/unit_test.hpp>

#include <malloc.h>

#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/allocators/c_allocator.h"
#include "alloy/allocators/page_allocator.h"
#include "tests/support/pattern.h"
#include "tests/support/recording_allocator.h"

using alloy::AllocError;
using alloy::Alignment;
using alloy::Allocator;
using alloy::testing::RecordingAllocator;
using Op = RecordingAllocator::Op;

namespace {

struct Named {
  const char* name;
  Allocator allocator;
};

std::vector<Named> base_allocators() {
  return {{"c", alloy::c_allocator()}, {"page", alloy::page_allocator()}};
}

// The shared pattern (tests/support/pattern.h) over typed spans.
void fill(std::span<std::uint8_t> s, std::uint8_t seed) {
  alloy::testing::fill(s.data(), s.size(), seed);
}
bool verify(std::span<const std::uint8_t> s, std::uint8_t seed, std::size_t n) {
  return alloy::testing::intact(s.data(), n, seed);
}

}  // namespace

BOOST_AUTO_TEST_CASE(alignment_from_1_byte_to_64_KiB) {
  for (auto [name, a] : base_allocators()) {
    for (std::size_t align = 1; align <= 64 * 1024; align <<= 1) {
      for (std::size_t n : {1u, 13u, 4096u, 70000u}) {
        auto r = a.alloc_aligned<std::uint8_t>(n, align);
        BOOST_REQUIRE_MESSAGE(r.ok(), name << " align " << align << " n " << n);
        BOOST_TEST(Alignment::from_bytes(align)->check(r->data()),
                   name << " misaligned at " << align);
        fill(*r, 3);
        BOOST_TEST(verify(*r, 3, n));
        a.free_aligned(*r, *Alignment::from_bytes(align));
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(invalid_alignment_is_an_error) {
  auto r = alloy::c_allocator().alloc_aligned<char>(10, std::size_t{48});
  BOOST_TEST(!r.ok());
  BOOST_TEST((r.error() == AllocError::kInvalidAlignment));
}

BOOST_AUTO_TEST_CASE(size_overflow_is_an_error_not_a_wrap) {
  RecordingAllocator rec;
  Allocator a = rec.allocator();
  auto r = a.alloc<std::uint64_t>(std::numeric_limits<std::size_t>::max() / 4);
  BOOST_TEST(!r.ok());
  BOOST_TEST((r.error() == AllocError::kSizeOverflow));
  BOOST_TEST(rec.calls.empty());  // never reached the vtable

  auto s = a.alloc<std::uint64_t>(4);
  BOOST_REQUIRE(s.ok());
  auto g = a.realloc(*s, std::numeric_limits<std::size_t>::max() / 2);
  BOOST_TEST((g.error() == AllocError::kSizeOverflow));
  a.free(*s);
  BOOST_TEST(rec.live_bytes == 0u);
}

BOOST_AUTO_TEST_CASE(huge_requests_fail_cleanly) {
  for (auto [name, a] : base_allocators()) {
    auto r = a.alloc<std::uint8_t>(std::numeric_limits<std::size_t>::max() - 4096);
    BOOST_TEST(!r.ok(), name);
    BOOST_TEST((r.error() == AllocError::kSizeOverflow));  // over PTRDIFF_MAX
    auto ok = a.alloc<std::uint8_t>(64);  // still usable afterwards
    BOOST_TEST(ok.ok());
    a.free(*ok);
  }
}

BOOST_AUTO_TEST_CASE(zero_length_never_reaches_the_vtable) {
  RecordingAllocator rec;
  Allocator a = rec.allocator();
  auto z = a.alloc<int>(0);
  BOOST_REQUIRE(z.ok());
  BOOST_TEST(z->empty());
  BOOST_TEST(z->data() != nullptr);
  BOOST_TEST(Alignment::of<int>().check(z->data()));
  auto zb = a.alloc_bytes(0, *Alignment::from_bytes(64));
  BOOST_TEST(zb->empty());
  a.free(*z);
  a.free_bytes(*zb, *Alignment::from_bytes(64));
  auto d = a.dupe(std::string_view());
  BOOST_TEST(d->empty());
  BOOST_TEST(rec.calls.empty());

  // realloc from and to zero become alloc and free.
  auto g = a.realloc(*z, 10);
  BOOST_REQUIRE(g.ok());
  BOOST_TEST(g->size() == 10u);
  auto back = a.realloc(*g, 0);
  BOOST_REQUIRE(back.ok());
  BOOST_TEST(back->empty());
  BOOST_REQUIRE(rec.calls.size() == 2u);
  BOOST_TEST((rec.calls[0].op == Op::kAlloc));
  BOOST_TEST((rec.calls[1].op == Op::kFree));
  BOOST_TEST(rec.calls[1].len == 10 * sizeof(int));  // sized free
}

// One rule for resize, typed and bytes alike: it never frees. Resizing a
// block to zero answers false and leaves the block as it was; an empty span
// "resizes" to zero trivially. free() and realloc(.., 0) give a block back.
BOOST_AUTO_TEST_CASE(resize_to_zero_never_frees_typed_or_bytes) {
  RecordingAllocator rec;
  Allocator a = rec.allocator();
  auto s = a.alloc<std::uint32_t>(8);
  BOOST_REQUIRE(s.ok());
  (*s)[7] = 77;
  rec.calls.clear();
  BOOST_TEST(!a.resize(*s, 0));
  BOOST_TEST(!a.resize_bytes(std::as_writable_bytes(*s), Alignment::of<std::uint32_t>(), 0));
  BOOST_TEST(rec.calls.empty());  // nothing reached the table: no free
  BOOST_TEST(rec.live_bytes == 8 * sizeof(std::uint32_t));
  BOOST_TEST((*s)[7] == 77u);
  // Empty spans: zero is trivially true, anything else false.
  BOOST_TEST(a.resize(std::span<std::uint32_t>(), 0));
  BOOST_TEST(!a.resize(std::span<std::uint32_t>(), 4));
  BOOST_TEST(a.resize_bytes(alloy::Bytes(), Alignment{}, 0));
  BOOST_TEST(!a.resize_bytes(alloy::Bytes(), Alignment{}, 4));
  BOOST_TEST(rec.calls.empty());
  a.free(*s);
  BOOST_TEST(rec.live_bytes == 0u);
}

BOOST_AUTO_TEST_CASE(contents_preserved_across_realloc_on_every_path) {
  // resize in place, remap, and alloc+copy+free.
  for (int path = 0; path < 3; ++path) {
    RecordingAllocator rec;
    rec.allow_resize = path == 0;
    rec.allow_remap = path == 1;
    Allocator a = rec.allocator();
    auto s = a.alloc<std::uint8_t>(100);
    BOOST_REQUIRE(s.ok());
    fill(*s, 9);
    std::span<std::uint8_t> cur = *s;
    for (std::size_t n : {200u, 5000u, 1u << 20, 300u, 50u}) {
      auto g = a.realloc(cur, n);
      BOOST_REQUIRE(g.ok());
      BOOST_TEST(g->size() == n);
      BOOST_TEST(verify(*g, 9, std::min<std::size_t>(n, 50)), "path " << path << " n " << n);
      cur = *g;
    }
    a.free(cur);
    BOOST_TEST(rec.live_bytes == 0u, "path " << path);
  }
}

BOOST_AUTO_TEST_CASE(realloc_failure_leaves_the_old_block_intact) {
  RecordingAllocator rec;
  rec.allow_resize = rec.allow_remap = false;
  Allocator a = rec.allocator();
  auto s = a.alloc<std::uint8_t>(64);
  BOOST_REQUIRE(s.ok());
  fill(*s, 1);
  rec.fail_allocs = true;
  auto g = a.realloc(*s, 1 << 16);
  BOOST_TEST(!g.ok());
  BOOST_TEST((g.error() == AllocError::kOutOfMemory));
  BOOST_TEST(verify(*s, 1, 64));
  a.free(*s);
  BOOST_TEST(rec.live_bytes == 0u);
}

BOOST_AUTO_TEST_CASE(page_allocator_grows_and_shrinks) {
  Allocator a = alloy::page_allocator();
  auto s = a.alloc<std::uint8_t>(3 * alloy::page_size());
  BOOST_REQUIRE(s.ok());
  fill(*s, 4);
  BOOST_TEST(a.resize(*s, alloy::page_size()));  // shrinking whole pages is in place
  auto small = s->first(alloy::page_size());
  auto g = a.realloc(small, 64 << 20);  // mremap
  BOOST_REQUIRE(g.ok());
  BOOST_TEST(verify(*g, 4, alloy::page_size()));
  (*g)[(64 << 20) - 1] = 1;
  a.free(*g);
}

BOOST_AUTO_TEST_CASE(c_allocator_resizes_within_usable_size) {
  Allocator a = alloy::c_allocator();
  auto s = a.alloc<std::uint8_t>(20);
  BOOST_REQUIRE(s.ok());
  const std::size_t usable = malloc_usable_size(s->data());
  BOOST_TEST(a.resize(*s, usable));  // growth into malloc's slack is free
  BOOST_TEST(!a.resize(*s, 1 << 20));
  a.free(s->first(usable));
}

BOOST_AUTO_TEST_CASE(create_destroy_and_sized_free) {
  RecordingAllocator rec;
  Allocator a = rec.allocator();
  struct Point { double x, y; std::string label; };
  auto p = a.create<Point>(Point{1.0, 2.0, std::string(40, 'p')});
  BOOST_REQUIRE(p.ok());
  BOOST_TEST((*p)->label.size() == 40u);
  a.destroy(*p);
  a.destroy(static_cast<Point*>(nullptr));
  BOOST_REQUIRE(rec.calls.size() == 2u);
  BOOST_TEST(rec.calls[0].len == sizeof(Point));
  BOOST_TEST(rec.calls[1].len == sizeof(Point));
  BOOST_TEST((rec.calls[1].alignment == Alignment::of<Point>()));
}

BOOST_AUTO_TEST_CASE(create_failure_is_a_result) {
  RecordingAllocator rec;
  rec.fail_allocs = true;
  auto p = rec.allocator().create<int>(3);
  BOOST_TEST(!p.ok());
  BOOST_TEST((p.error() == AllocError::kOutOfMemory));
}

BOOST_AUTO_TEST_CASE(create_frees_when_the_constructor_throws) {
  RecordingAllocator rec;
  struct Throws {
    Throws() { throw 42; }
  };
  BOOST_CHECK_THROW((void)rec.allocator().create<Throws>(), int);
  BOOST_TEST(rec.live_bytes == 0u);
}

BOOST_AUTO_TEST_CASE(dupe_and_dupe_z) {
  Allocator a = alloy::c_allocator();
  auto s = a.dupe(std::string_view("hello"));
  BOOST_REQUIRE(s.ok());
  BOOST_TEST(std::string_view(s->data(), s->size()) == "hello");
  auto z = a.dupe_z("abc");
  BOOST_REQUIRE(z.ok());
  BOOST_TEST(z->size() == 4u);
  BOOST_TEST(std::strcmp(z->data(), "abc") == 0);
  int nums[] = {1, 2, 3};
  auto n = a.dupe(std::span<const int>(nums));
  BOOST_REQUIRE(n.ok());
  BOOST_TEST((*n)[2] == 3);
  a.free(*s);
  a.free(*z);
  a.free(*n);
}

namespace {
[[gnu::noinline]] void alloc_then_free(Allocator a) {
  auto s = a.alloc<int>(1);
  a.free(*s);
}
}  // namespace

BOOST_AUTO_TEST_CASE(return_address_points_into_the_caller) {
  RecordingAllocator rec;
  alloc_then_free(rec.allocator());
  BOOST_REQUIRE(rec.calls.size() == 2u);
  // Both addresses lie inside alloc_then_free's code, the free after the alloc.
  auto fn = reinterpret_cast<std::uintptr_t>(&alloc_then_free);
  BOOST_TEST(rec.calls[0].ret_addr > fn);
  BOOST_TEST(rec.calls[0].ret_addr - fn < 1024u);
  BOOST_TEST(rec.calls[1].ret_addr > rec.calls[0].ret_addr);
  BOOST_TEST(rec.calls[1].ret_addr - fn < 1024u);
}

BOOST_AUTO_TEST_CASE(no_overlap_between_live_blocks) {
  for (auto [name, a] : base_allocators()) {
    std::vector<std::span<std::uint8_t>> live;
    for (int i = 0; i < 200; ++i) {
      auto s = a.alloc<std::uint8_t>(1 + (i * 37) % 5000);
      BOOST_REQUIRE(s.ok());
      fill(*s, static_cast<std::uint8_t>(i));
      live.push_back(*s);
    }
    for (std::size_t i = 0; i < live.size(); ++i) {
      BOOST_TEST(verify(live[i], static_cast<std::uint8_t>(i), live[i].size()), name);
      a.free(live[i]);
    }
  }
}
