// The optional VTable entries through the handle: make_vtable's detection
// and defaults, the fallbacks for tables without an entry (asked length,
// alloc + memset, kUnknown), and the users of size feedback (Vec,
// StdAllocator::allocate_at_least, MemoryResource::allocate_at_least).
#define BOOST_TEST_MODULE optional_entries
#include <boost/test/unit_test.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <set>
#include <vector>

#include "alloy/adapters/pmr.h"
#include "alloy/adapters/std_allocator.h"
#include "alloy/alloc_iface/allocator.h"
#include "alloy/alloc_iface/make_vtable.h"
#include "alloy/alloc_iface/vec.h"
#include "alloy/allocators/c_allocator.h"
#include "tests/support/recording_allocator.h"

using alloy::Alignment;
using alloy::Allocator;
using alloy::Bytes;
using alloy::Ownership;

namespace {

// The member form of make_vtable: vt_* members without ctx, private. Rounds
// every request up to 64 bytes and says so; remembers what it handed out.
class RoundingAllocator {
 public:
  Allocator allocator() { return Allocator{this, &alloy::vtable_for<RoundingAllocator>}; }

  std::size_t allocs = 0;
  std::size_t zeroed = 0;
  std::vector<std::size_t> freed_lengths;
  std::set<const void*> live;

  static std::size_t rounded(std::size_t len) { return (len + 63) & ~std::size_t{63}; }

 private:
  ALLOY_VTABLE_ENTRIES;
  static Allocator child() { return alloy::c_allocator(); }
  void* vt_alloc(std::size_t len, Alignment a, std::uintptr_t ret) {
    ++allocs;
    void* p = child().raw_alloc(rounded(len), a, ret);
    if (p != nullptr) live.insert(p);
    return p;
  }
  Bytes vt_alloc_at_least(std::size_t len, Alignment a, std::uintptr_t ret) {
    void* p = vt_alloc(len, a, ret);
    return p == nullptr ? Bytes() : Bytes(static_cast<std::byte*>(p), rounded(len));
  }
  void* vt_alloc_zeroed(std::size_t len, Alignment a, std::uintptr_t ret) {
    ++zeroed;
    void* p = vt_alloc(len, a, ret);
    if (p != nullptr) std::memset(p, 0, rounded(len));
    return p;
  }
  bool vt_owns(const void* p) const { return live.count(p) != 0; }
  void vt_free(Bytes m, Alignment a, std::uintptr_t ret) {
    freed_lengths.push_back(m.size());
    live.erase(m.data());
    child().raw_free(m, a, ret);
  }
  // No vt_resize, no vt_remap: the builder puts no_resize and no_remap.
};

// The static form, with only an alloc and a free.
struct Minimal {
  static void* vt_alloc(void*, std::size_t len, Alignment a, std::uintptr_t ret) {
    return alloy::c_allocator().raw_alloc(len, a, ret);
  }
  static void vt_free(void*, Bytes m, Alignment a, std::uintptr_t ret) {
    alloy::c_allocator().raw_free(m, a, ret);
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(make_vtable_finds_each_member_and_fills_the_defaults) {
  constexpr alloy::VTable member = alloy::make_vtable<RoundingAllocator>();
  static_assert(member.resize == &alloy::no_resize);
  static_assert(member.remap == &alloy::no_remap);
  BOOST_TEST((member.alloc_at_least != nullptr));
  BOOST_TEST((member.alloc_zeroed != nullptr));
  BOOST_TEST((member.owns != nullptr));
  constexpr alloy::VTable minimal = alloy::make_vtable<Minimal>();
  static_assert(minimal.alloc == &Minimal::vt_alloc);  // a static entry is used as it is
  static_assert(minimal.free == &Minimal::vt_free);
  static_assert(minimal.alloc_at_least == nullptr);
  static_assert(minimal.alloc_zeroed == nullptr);
  static_assert(minimal.owns == nullptr);
}

BOOST_AUTO_TEST_CASE(tables_without_the_entries_get_the_fallbacks) {
  static constexpr alloy::VTable kMinimal = alloy::make_vtable<Minimal>();
  Allocator a{nullptr, &kMinimal};
  auto r = a.alloc_bytes_at_least(100, Alignment{});
  BOOST_TEST_REQUIRE(r.has_value());
  BOOST_TEST(r->size() == 100u);  // the asked length
  std::memset(r->data(), 0xEE, r->size());
  a.free_bytes(*r, Alignment{});
  auto z = a.alloc_bytes_zeroed(100, Alignment{});  // alloc + memset
  BOOST_TEST_REQUIRE(z.has_value());
  bool zero = true;
  for (std::byte b : *z) zero = zero && b == std::byte{0};
  BOOST_TEST(zero);
  BOOST_TEST((a.owns(z->data()) == Ownership::kUnknown));
  a.free_bytes(*z, Alignment{});
}

BOOST_AUTO_TEST_CASE(the_entries_are_reached_through_the_handle) {
  RoundingAllocator rounding;
  Allocator a = rounding.allocator();
  auto r = a.alloc_bytes_at_least(10, Alignment{});
  BOOST_TEST_REQUIRE(r.has_value());
  BOOST_TEST(r->size() == 64u);
  BOOST_TEST((a.owns(r->data()) == Ownership::kYes));
  int local = 0;
  BOOST_TEST((a.owns(&local) == Ownership::kNo));
  auto typed = a.alloc_at_least<std::uint32_t>(3);
  BOOST_TEST_REQUIRE(typed.has_value());
  BOOST_TEST(typed->size() == 16u);  // 64 bytes of uint32_t
  a.free(*typed);
  a.free_bytes(*r, Alignment{});
  auto z = a.alloc_zeroed<int>(5);
  BOOST_TEST_REQUIRE(z.has_value());
  BOOST_TEST(rounding.zeroed == 1u);
  a.free(*z);
}

BOOST_AUTO_TEST_CASE(realloc_zeroed_keeps_the_head_and_zeroes_the_tail) {
  Allocator a = alloy::c_allocator();
  auto s = a.alloc<unsigned char>(10);
  BOOST_TEST_REQUIRE(s.has_value());
  std::memset(s->data(), 0x5A, 10);
  // Dirty bytes past the length (malloc_usable_size) must not show through.
  auto g = a.realloc_zeroed(*s, 5000);
  BOOST_TEST_REQUIRE(g.has_value());
  bool ok = true;
  for (std::size_t i = 0; i < g->size(); ++i) ok = ok && (*g)[i] == (i < 10 ? 0x5A : 0);
  BOOST_TEST(ok);
  auto shrunk = a.realloc_zeroed(*g, 3);
  BOOST_TEST_REQUIRE(shrunk.has_value());
  BOOST_TEST((*shrunk)[2] == 0x5A);
  auto none = a.realloc_zeroed(*shrunk, 0);  // frees, as realloc does
  BOOST_TEST_REQUIRE(none.has_value());
  BOOST_TEST(none->empty());
  auto from_empty = a.realloc_zeroed(std::span<int>(), 4);
  BOOST_TEST_REQUIRE(from_empty.has_value());
  BOOST_TEST(((*from_empty)[3] == 0));
  a.free(*from_empty);
}

BOOST_AUTO_TEST_CASE(vec_takes_the_reported_capacity_and_frees_with_it) {
  RoundingAllocator rounding;
  {
    alloy::Vec<std::uint8_t> v(rounding.allocator());
    BOOST_TEST_REQUIRE(v.try_push(1).has_value());
    BOOST_TEST(v.capacity() == 64u);  // 8 asked (the minimum), 64 reported
    for (int i = 0; i < 63; ++i) BOOST_TEST_REQUIRE(v.try_push(2).has_value());
    BOOST_TEST(rounding.allocs == 1u);  // 64 pushes, one block
    BOOST_TEST_REQUIRE(v.try_push(3).has_value());
    BOOST_TEST(rounding.allocs == 2u);
    BOOST_TEST(v.capacity() == 128u);
  }
  // Each block went back with its capacity: within [asked, reported].
  BOOST_TEST(rounding.freed_lengths == (std::vector<std::size_t>{64, 128}));
  BOOST_TEST(rounding.live.empty());
}

BOOST_AUTO_TEST_CASE(vec_without_feedback_grows_as_before) {
  alloy::testing::RecordingAllocator rec;  // no alloc_at_least entry
  {
    alloy::Vec<std::uint8_t> v(rec.allocator());
    BOOST_TEST_REQUIRE(v.try_push(1).has_value());
    BOOST_TEST(v.capacity() == 8u);
  }
  BOOST_TEST(rec.live_bytes == 0u);
}

BOOST_AUTO_TEST_CASE(std_allocator_allocate_at_least) {
  RoundingAllocator rounding;
  alloy::StdAllocator<std::uint16_t> stl(rounding.allocator());
  auto r = stl.allocate_at_least(5);
  BOOST_TEST(r.count == 32u);  // 10 bytes asked, 64 given
  r.ptr[31] = 7;
  stl.deallocate(r.ptr, r.count);
  auto r2 = stl.allocate_at_least(5);
  stl.deallocate(r2.ptr, 5);  // the asked count is right too
  BOOST_TEST(rounding.freed_lengths == (std::vector<std::size_t>{64, 10}));
  BOOST_TEST(rounding.live.empty());
}

BOOST_AUTO_TEST_CASE(memory_resource_allocate_at_least) {
  RoundingAllocator rounding;
  alloy::MemoryResource resource(rounding.allocator());
  auto r = resource.allocate_at_least(100, 8);
  BOOST_TEST(r.count == 128u);
  static_cast<std::byte*>(r.ptr)[127] = std::byte{1};
  resource.deallocate(r.ptr, r.count, 8);
  BOOST_TEST(rounding.live.empty());
}
