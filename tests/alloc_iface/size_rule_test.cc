// The handle's size rule: a request over PTRDIFF_MAX once rounded up to its
// alignment (Rust's Layout rule) is answered kSizeOverflow by the handle,
// before any vtable sees it, whatever the allocator behind it.
#define BOOST_TEST_MODULE size_rule
#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <limits>
#include <memory_resource>
#include <string_view>
#include <vector>

#include "alloy/adapters/pmr.h"
#include "alloy/alloc_iface/allocator.h"
#include "alloy/alloc_iface/box.h"
#include "alloy/alloc_iface/vec.h"
#include "alloy/allocators/arena.h"
#include "alloy/allocators/c_allocator.h"
#include "alloy/allocators/page_allocator.h"
#include "tests/support/recording_allocator.h"

using alloy::AllocError;
using alloy::Alignment;
using alloy::Allocator;
using alloy::Bytes;
using alloy::testing::RecordingAllocator;

namespace {

constexpr std::size_t kMax = static_cast<std::size_t>(PTRDIFF_MAX);

struct Big {
  alignas(4096) unsigned char bytes[4096];
};

// Every allocator the rule must hold for; the recorder sits in front of each
// so the test can see that nothing over the limit reached a table.
struct Fixture {
  std::pmr::memory_resource* nd = std::pmr::new_delete_resource();
  alloy::Arena arena{alloy::page_allocator()};
  struct Named {
    const char* name;
    Allocator a;
  };
  std::vector<Named> all() {
    return {{"new_delete_resource", alloy::resource_allocator(nd)},
            {"c_allocator", alloy::c_allocator()},
            {"page_allocator", alloy::page_allocator()},
            {"arena", arena.allocator()}};
  }
};

bool overflow(AllocError e) { return e == AllocError::kSizeOverflow; }

}  // namespace

BOOST_AUTO_TEST_CASE(bytes_over_the_limit_are_size_overflow_everywhere) {
  Fixture f;
  for (auto [name, base] : f.all()) {
    const struct {
      std::size_t len;
      Alignment align;
    } cases[] = {
        {SIZE_MAX, Alignment{}},
        {kMax + 1, Alignment{}},
        {kMax, Alignment::from_log2(12)},             // fits alone, not rounded up
        {kMax - 4095 + 1, Alignment::from_log2(12)},  // one byte past the limit
        {1, Alignment::from_log2(63)},                // 2^63 alignment: nothing fits
    };
    for (auto c : cases) {
      auto r = base.alloc_bytes(c.len, c.align);
      BOOST_TEST(!r.ok(), name << " len " << c.len);
      if (!r) BOOST_TEST(overflow(r.error()), name << " len " << c.len);
      // raw_alloc refuses them too, with null, without calling the table.
      BOOST_TEST(base.raw_alloc(c.len, c.align, 0) == nullptr, name);
    }
    // Typed helpers.
    auto a = base.alloc<std::uint64_t>(kMax / 8 + 1);
    BOOST_TEST((!a && overflow(a.error())), name);
    auto b = base.alloc_aligned<char>(kMax, 64);
    BOOST_TEST((!b && overflow(b.error())), name);
    auto c = base.alloc<char>(SIZE_MAX);
    BOOST_TEST((!c && overflow(c.error())), name);
    auto d = base.dupe_z(std::string_view(reinterpret_cast<const char*>(1), kMax));
    BOOST_TEST((!d && overflow(d.error())), name);
    auto e = base.dupe(std::string_view(reinterpret_cast<const char*>(1), kMax + 1));
    BOOST_TEST((!e && overflow(e.error())), name);

    // Growth: realloc and resize of a live block.
    auto s = base.alloc<char>(16);
    BOOST_REQUIRE(s.ok());
    auto g = base.realloc(*s, SIZE_MAX);
    BOOST_TEST((!g && overflow(g.error())), name);
    auto g2 = base.realloc(*s, kMax + 1);
    BOOST_TEST((!g2 && overflow(g2.error())), name);
    auto g3 = base.realloc_bytes(std::as_writable_bytes(*s), Alignment::from_log2(4), kMax);
    BOOST_TEST((!g3 && overflow(g3.error())), name);
    BOOST_TEST(!base.resize(*s, kMax + 1), name);
    BOOST_TEST(!base.resize_bytes(std::as_writable_bytes(*s), Alignment{}, SIZE_MAX), name);
    BOOST_TEST(!base.raw_resize(std::as_writable_bytes(*s), Alignment{}, kMax + 1, 0), name);
    BOOST_TEST(base.raw_remap(std::as_writable_bytes(*s), Alignment{}, kMax + 1, 0) == nullptr,
               name);
    (*s)[15] = 'x';  // still owned, untouched
    BOOST_TEST((*s)[15] == 'x');
    base.free(*s);

    // Vec and Box.
    alloy::Vec<std::uint32_t> v(base);
    auto vr = v.try_reserve(kMax / 4 + 1);
    BOOST_TEST((!vr && overflow(vr.error())), name);
    auto vr2 = v.try_reserve_exact(kMax / 4 + 1);
    BOOST_TEST((!vr2 && overflow(vr2.error())), name);
    auto vr3 = v.try_resize(kMax / 4 + 1);
    BOOST_TEST((!vr3 && overflow(vr3.error())), name);
    BOOST_TEST(v.capacity() == 0u);
    BOOST_REQUIRE(v.try_push(1).ok());  // still usable
    BOOST_TEST(v[0] == 1u);

    auto ok = base.alloc<char>(64);  // the allocator is still fine
    BOOST_TEST(ok.ok(), name);
    if (ok) base.free(*ok);
  }
}

BOOST_AUTO_TEST_CASE(nothing_over_the_limit_reaches_the_table) {
  RecordingAllocator rec;
  Allocator a = rec.allocator();
  (void)a.alloc_bytes(SIZE_MAX, Alignment{});
  (void)a.alloc_bytes(kMax, Alignment::from_log2(3));
  (void)a.alloc<std::uint16_t>(kMax / 2 + 1);
  (void)a.raw_alloc(kMax + 1, Alignment{}, 0);
  alloy::Vec<Big> v(a);
  (void)v.try_reserve(kMax / sizeof(Big) + 1);
  BOOST_TEST(rec.calls.empty());
  // The limit itself is served as far as the handle is concerned.
  BOOST_TEST(alloy::detail::size_fits(kMax, Alignment{}));
  BOOST_TEST(alloy::detail::size_fits(kMax - 7, Alignment::from_log2(3)));
  BOOST_TEST(!alloy::detail::size_fits(kMax - 6, Alignment::from_log2(3)));
}

BOOST_AUTO_TEST_CASE(new_delete_resource_never_hands_out_a_tiny_block) {
  // libstdc++'s aligned new wraps SIZE_MAX + alignment and used to answer
  // with a few bytes.
  Allocator a = alloy::resource_allocator(std::pmr::new_delete_resource());
  for (std::uint8_t log2 : {0, 4, 6, 12, 20}) {
    auto r = a.alloc_bytes(SIZE_MAX - (std::size_t{1} << log2) + 1, Alignment::from_log2(log2));
    BOOST_TEST(!r.ok());
    if (!r) BOOST_TEST(overflow(r.error()));
  }
  auto box = alloy::Box<Big>::make(a);  // an ordinary request still works
  BOOST_TEST(box.ok());
}
