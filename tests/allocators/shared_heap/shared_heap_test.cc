// Single-process behaviour of alloy::SharedHeap: allocation contract, wrong
// frees, roots, ceiling, resize, and the bad-input errors of create/attach.
#define BOOST_TEST_MODULE shared_heap
#include <boost/test/unit_test.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "alloy/allocators/shared_heap/shared_heap.h"
#include "tests/allocators/shared_heap/test_util.h"
#include "tests/support/capture_stderr.h"

using alloy::Alignment;
using alloy::SharedFreeStatus;
using alloy::SharedHeap;
using alloy::SharedHeapErrc;
using shared_heap_test::UniqueName;

namespace {

SharedHeap make_heap(const UniqueName& name, std::size_t capacity = 1 << 20) {
  auto r = SharedHeap::create(name.get(), capacity);
  BOOST_REQUIRE_MESSAGE(r.ok(), r.error().what());
  return std::move(*r);
}

void require_verified(const SharedHeap& heap) {
  auto v = heap.verify();
  BOOST_REQUIRE_MESSAGE(v.ok(), v.error().what());
}

}  // namespace

BOOST_AUTO_TEST_CASE(alloc_free_contents_alignment_no_overlap) {
  UniqueName name("basic");
  SharedHeap heap = make_heap(name);
  alloy::Allocator a = heap.allocator();
  std::mt19937 rng(7);
  struct Live { std::byte* p; std::size_t len; unsigned char fill; };
  std::vector<Live> live;
  for (int i = 0; i < 2000; ++i) {
    if (!live.empty() && rng() % 3 == 0) {
      std::size_t k = rng() % live.size();
      Live l = live[k];
      for (std::size_t j = 0; j < l.len; ++j) BOOST_REQUIRE(l.p[j] == std::byte{l.fill});
      a.free(std::span<std::byte>(l.p, l.len));
      live.erase(live.begin() + static_cast<long>(k));
      continue;
    }
    std::size_t len = 1 + rng() % (rng() % 8 == 0 ? 4000 : 200);
    auto r = a.alloc<std::byte>(len);
    if (!r) continue;  // full is allowed; the heap must stay usable
    BOOST_REQUIRE(Alignment::from_log2(4).check(r->data()));
    auto fill = static_cast<unsigned char>(i);
    std::memset(r->data(), fill, len);
    live.push_back({r->data(), len, fill});
  }
  std::sort(live.begin(), live.end(), [](const Live& x, const Live& y) { return x.p < y.p; });
  for (std::size_t i = 1; i < live.size(); ++i) {
    BOOST_REQUIRE(live[i - 1].p + live[i - 1].len <= live[i].p);
  }
  for (const Live& l : live) {
    for (std::size_t j = 0; j < l.len; ++j) BOOST_REQUIRE(l.p[j] == std::byte{l.fill});
  }
  require_verified(heap);
  auto s = heap.stats();
  BOOST_REQUIRE(s.ok());
  BOOST_TEST(s->live_blocks == live.size());
  for (const Live& l : live) a.free(std::span<std::byte>(l.p, l.len));
  require_verified(heap);
  s = heap.stats();
  BOOST_TEST(s->live_blocks == 0u);
  BOOST_TEST(s->bytes_in_use == 0u);
  BOOST_TEST(s->free_blocks == 1u);  // everything coalesced back
  BOOST_TEST(s->largest_free_block == s->heap_bytes);
}

BOOST_AUTO_TEST_CASE(large_alignments_are_honoured) {
  UniqueName name("align");
  SharedHeap heap = make_heap(name);
  alloy::Allocator a = heap.allocator();
  std::vector<std::span<std::byte>> blocks;
  for (std::size_t align : {32u, 64u, 256u, 4096u}) {
    for (std::size_t len : {1u, 100u, 5000u}) {
      auto r = a.alloc_aligned<std::byte>(len, align);
      BOOST_REQUIRE(r.ok());
      BOOST_TEST(reinterpret_cast<std::uintptr_t>(r->data()) % align == 0u);
      std::memset(r->data(), 0xab, len);
      blocks.push_back(*r);
      require_verified(heap);
    }
  }
  // Beyond the supported maximum: an error, not a crash.
  auto too_big = a.alloc_aligned<std::byte>(16, 8192);
  BOOST_TEST(!too_big.ok());
  std::size_t i = 0;
  for (std::size_t align : {32u, 64u, 256u, 4096u}) {
    for (int k = 0; k < 3; ++k) {
      a.free_aligned(blocks[i++], *Alignment::from_bytes(align));
    }
  }
  require_verified(heap);
  BOOST_TEST(heap.stats()->free_blocks == 1u);
}

BOOST_AUTO_TEST_CASE(wrong_frees_are_refused_and_the_heap_stays_usable) {
  UniqueName name("wrongfree");
  SharedHeap heap = make_heap(name);
  auto b = heap.allocator().alloc<std::byte>(100);
  BOOST_REQUIRE(b.ok());
  std::byte outside[64];
  const Alignment a1 = Alignment::of<std::byte>();
  BOOST_TEST((heap.free_checked(outside, 64, a1) == SharedFreeStatus::kNotInHeap));
  BOOST_TEST((heap.free_checked(b->data() + 16, 16, a1) == SharedFreeStatus::kNotABlock));
  BOOST_TEST((heap.free_checked(b->data() + 3, 16, a1) == SharedFreeStatus::kNotABlock));
  BOOST_TEST((heap.free_checked(b->data(), 99, a1) == SharedFreeStatus::kWrongSize));
  BOOST_TEST((heap.free_checked(b->data(), 100, Alignment::from_log2(3)) ==
              SharedFreeStatus::kWrongSize));
  BOOST_TEST((heap.free_checked(heap.base(), 16, a1) == SharedFreeStatus::kNotInHeap));
  BOOST_TEST((heap.free_checked(b->data(), 100, a1) == SharedFreeStatus::kFreed));
  BOOST_TEST((heap.free_checked(b->data(), 100, a1) == SharedFreeStatus::kNotABlock));
  // Through the handle: reported on stderr, counted, no crash.
  heap.allocator().free(std::span<std::byte>(b->data(), 100));
  require_verified(heap);
  auto s = heap.stats();
  BOOST_TEST(s->rejected_frees == 8u);
  BOOST_TEST(s->live_blocks == 0u);
  auto again = heap.allocator().alloc<std::byte>(100);
  BOOST_TEST(again.ok());
  heap.allocator().free(*again);
  require_verified(heap);
}

BOOST_AUTO_TEST_CASE(ceiling_and_capacity_are_honoured) {
  UniqueName name("cap");
  SharedHeap heap = make_heap(name, 256 * 1024);
  alloy::Allocator a = heap.allocator();
  std::vector<std::span<std::byte>> blocks;
  // Until full: nothing aborts, the total never exceeds the heap.
  for (;;) {
    auto r = a.alloc<std::byte>(1000);
    if (!r) break;
    blocks.push_back(*r);
  }
  auto s = heap.stats();
  BOOST_TEST(s->bytes_in_use <= s->heap_bytes);
  BOOST_TEST(s->failed_allocs == 1u);
  BOOST_TEST(blocks.size() > 200u);
  for (auto b : blocks) a.free(b);
  blocks.clear();
  // A lower cap.
  BOOST_REQUIRE(heap.set_ceiling(32 * 1024).ok());
  for (;;) {
    auto r = a.alloc<std::byte>(1000);
    if (!r) break;
    blocks.push_back(*r);
  }
  s = heap.stats();
  BOOST_TEST(s->ceiling_bytes == 32u * 1024);
  BOOST_TEST(s->bytes_in_use <= 32u * 1024);
  BOOST_TEST(s->bytes_in_use + 1040 > 32u * 1024);  // it really filled up to the cap
  BOOST_TEST(!a.alloc<std::byte>(1000).ok());
  // Raising it lets allocations through again.
  BOOST_REQUIRE(heap.set_ceiling(1u << 30).ok());
  BOOST_TEST(heap.stats()->ceiling_bytes == heap.stats()->heap_bytes);
  BOOST_REQUIRE(heap.set_ceiling(alloy::kNoCeiling).ok());  // "none": the whole heap
  BOOST_TEST(heap.stats()->ceiling_bytes == heap.stats()->heap_bytes);
  // Issue 11: the old spellings (set_cap, cap_bytes) forward for one release.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  BOOST_REQUIRE(heap.set_cap(64 * 1024).ok());
  BOOST_TEST(heap.stats()->cap_bytes == 64u * 1024);
#pragma GCC diagnostic pop
  BOOST_TEST(heap.stats()->ceiling_bytes == 64u * 1024);
  BOOST_REQUIRE(heap.set_ceiling(alloy::kNoCeiling).ok());
  auto more = a.alloc<std::byte>(1000);
  BOOST_TEST(more.ok());
  if (more) a.free(*more);
  for (auto b : blocks) a.free(b);
  // Requests larger than the heap fail cleanly.
  BOOST_TEST(!a.alloc<std::byte>(std::size_t{1} << 40).ok());
  BOOST_TEST(!a.alloc<std::byte>(~std::size_t{0} / 2).ok());
  require_verified(heap);
}

BOOST_AUTO_TEST_CASE(resize_in_place_and_realloc_keep_contents) {
  UniqueName name("resize");
  SharedHeap heap = make_heap(name);
  alloy::Allocator a = heap.allocator();
  auto x = a.alloc<char>(100);
  auto y = a.alloc<char>(500);
  auto z = a.alloc<char>(10);
  BOOST_REQUIRE(x.ok() && y.ok() && z.ok());
  std::memset(x->data(), 'x', 100);
  a.free(*y);
  // Grows into the freed neighbour without moving.
  BOOST_TEST(a.resize(*x, 400));
  std::span<char> xs(x->data(), 400);
  BOOST_TEST(std::count(xs.begin(), xs.begin() + 100, 'x') == 100);
  require_verified(heap);
  // Cannot grow past the live z, nor to absurd sizes.
  BOOST_TEST(!a.resize(xs, 5000));
  BOOST_TEST(!a.resize(xs, ~std::size_t{0} - 8));
  BOOST_TEST(!a.realloc(xs, ~std::size_t{0} / 2).ok());
  BOOST_TEST(std::count(xs.begin(), xs.begin() + 100, 'x') == 100);
  // Shrinks in place, giving the tail back.
  BOOST_TEST(a.resize(xs, 50));
  xs = std::span<char>(x->data(), 50);
  require_verified(heap);
  auto moved = a.realloc(xs, 5000);  // must move: z is in the way
  BOOST_REQUIRE(moved.ok());
  BOOST_TEST(std::count(moved->begin(), moved->begin() + 50, 'x') == 50);
  a.free(*moved);
  a.free(*z);
  require_verified(heap);
  BOOST_TEST(heap.stats()->live_blocks == 0u);
}

BOOST_AUTO_TEST_CASE(roots_name_objects) {
  UniqueName name("roots");
  SharedHeap heap = make_heap(name);
  auto v = heap.allocator().create<std::uint64_t>(42u);
  BOOST_REQUIRE(v.ok());
  BOOST_REQUIRE(heap.set_root("answer", heap.offset_of(*v)).ok());
  auto off = heap.root<std::uint64_t>("answer");
  BOOST_REQUIRE(off.ok());
  BOOST_TEST(*heap.get(*off) == 42u);
  BOOST_TEST(heap.get(*off) == *v);
  BOOST_TEST((heap.root_offset("missing").error().code == SharedHeapErrc::kRootNotFound));
  BOOST_TEST((heap.set_root("", 8).error().code == SharedHeapErrc::kInvalidName));
  BOOST_TEST((heap.set_root(std::string(40, 'r'), 8).error().code == SharedHeapErrc::kInvalidName));
  BOOST_TEST((heap.set_root("far", std::uint64_t{1} << 50).error().code ==
              SharedHeapErrc::kInvalidArgument));
  for (std::size_t i = 1; i < SharedHeap::kRootSlots; ++i) {
    BOOST_REQUIRE(heap.set_root("r" + std::to_string(i), i).ok());
  }
  BOOST_TEST((heap.set_root("one-too-many", 8).error().code == SharedHeapErrc::kRootTableFull));
  BOOST_REQUIRE(heap.set_root("answer", 16).ok());  // update in place
  BOOST_TEST(*heap.root_offset("answer") == 16u);
  BOOST_REQUIRE(heap.remove_root("r3").ok());
  BOOST_TEST((heap.remove_root("r3").error().code == SharedHeapErrc::kRootNotFound));
  BOOST_TEST(heap.set_root("one-too-many", 8).ok());
  heap.allocator().destroy(*v);
  // Offsets outside the mapping convert to null, never to a wild pointer.
  BOOST_TEST(heap.get(alloy::SharedOffset<int>{heap.mapping_bytes()}) == nullptr);
  BOOST_TEST(heap.get(alloy::SharedOffset<int>{}) == nullptr);
  int local = 0;
  BOOST_TEST(heap.offset_of(&local).is_null());
}

BOOST_AUTO_TEST_CASE(visit_sees_live_blocks_and_cannot_deadlock) {
  UniqueName name("visit");
  SharedHeap heap = make_heap(name);
  alloy::Allocator a = heap.allocator();
  std::set<std::uint64_t> expected;
  std::vector<std::span<std::byte>> blocks;
  for (std::size_t i = 1; i <= 50; ++i) {
    auto r = a.alloc<std::byte>(i * 7);
    BOOST_REQUIRE(r.ok());
    blocks.push_back(*r);
  }
  for (std::size_t i = 0; i < blocks.size(); i += 2) a.free(blocks[i]);
  for (std::size_t i = 1; i < blocks.size(); i += 2) {
    expected.insert(heap.offset_of(blocks[i].data()).offset);
  }
  std::set<std::uint64_t> seen;
  bool nested_alloc_failed = true;
  auto n = heap.visit([&](const alloy::SharedBlockInfo& b) {
    seen.insert(b.offset);
    BOOST_CHECK(b.owner == ::getpid());
    BOOST_CHECK(b.length % 7 == 0u);
    // Allocating from inside visit() fails instead of deadlocking.
    if (a.alloc<std::byte>(8).ok()) nested_alloc_failed = false;
  });
  BOOST_REQUIRE(n.ok());
  BOOST_TEST(*n == expected.size());
  BOOST_TEST((seen == expected));
  BOOST_TEST(nested_alloc_failed);
  for (std::size_t i = 1; i < blocks.size(); i += 2) a.free(blocks[i]);
  require_verified(heap);
}

BOOST_AUTO_TEST_CASE(bad_names_and_missing_heaps) {
  BOOST_TEST((SharedHeap::attach("/alloy_no_such_heap_xyz").error().code ==
              SharedHeapErrc::kNotFound));
  BOOST_TEST((SharedHeap::create("", 1 << 20).error().code == SharedHeapErrc::kInvalidName));
  BOOST_TEST((SharedHeap::create("/", 1 << 20).error().code == SharedHeapErrc::kInvalidName));
  BOOST_TEST((SharedHeap::attach("a/b").error().code == SharedHeapErrc::kInvalidName));
  BOOST_TEST((SharedHeap::attach(std::string(300, 'n')).error().code ==
              SharedHeapErrc::kInvalidName));
  UniqueName name("dup");
  BOOST_TEST((SharedHeap::create(name.get(), 100).error().code ==
              SharedHeapErrc::kInvalidArgument));
  SharedHeap heap = make_heap(name);
  auto dup = SharedHeap::create(name.get(), 1 << 20);
  BOOST_TEST((dup.error().code == SharedHeapErrc::kExists));
  BOOST_TEST(!dup.error().what().empty());
  BOOST_TEST((SharedHeap::attach_fd(-1).error().code == SharedHeapErrc::kInvalidArgument));
  BOOST_TEST((SharedHeap::destroy("/alloy_no_such_heap_xyz").error().code ==
              SharedHeapErrc::kNotFound));
  SharedHeap detached;
  BOOST_TEST((detached.stats().error().code == SharedHeapErrc::kDetached));
}

namespace {
// Writes raw bytes into a fresh shm object and returns its name holder.
void write_object(const UniqueName& name, const void* data, std::size_t len, std::size_t size) {
  int fd = ::shm_open(name.get().c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  BOOST_REQUIRE(fd >= 0);
  BOOST_REQUIRE(::ftruncate(fd, static_cast<off_t>(size)) == 0);
  if (len != 0) BOOST_REQUIRE(::pwrite(fd, data, len, 0) == static_cast<ssize_t>(len));
  ::close(fd);
}

// Pokes `len` bytes at `offset` of a heap's header through a raw mapping.
void poke(const UniqueName& name, std::size_t offset, const void* data, std::size_t len) {
  int fd = ::shm_open(name.get().c_str(), O_RDWR, 0);
  BOOST_REQUIRE(fd >= 0);
  BOOST_REQUIRE(::pwrite(fd, data, len, static_cast<off_t>(offset)) ==
                static_cast<ssize_t>(len));
  ::close(fd);
}

SharedHeapErrc attach_error(const UniqueName& name) {
  auto r = SharedHeap::attach(name.get());
  BOOST_REQUIRE(!r.ok());
  BOOST_TEST_MESSAGE("attach error: " << r.error().what());
  BOOST_TEST(!r.error().what().empty());
  return r.error().code;
}
}  // namespace

BOOST_AUTO_TEST_CASE(foreign_and_damaged_objects_give_clear_errors) {
  {
    UniqueName name("text");
    const char text[] = "this is certainly not an alloy shared heap, just some text....";
    write_object(name, text, sizeof text, 64 * 1024);
    BOOST_TEST((attach_error(name) == SharedHeapErrc::kBadMagic));
    // destroy() of something that is not a heap still removes the name.
    BOOST_TEST(SharedHeap::destroy(name.get()).ok());
    BOOST_TEST((attach_error(name) == SharedHeapErrc::kNotFound));
  }
  {
    UniqueName name("tiny");
    write_object(name, "x", 1, 100);
    BOOST_TEST((attach_error(name) == SharedHeapErrc::kTooSmall));
  }
  {
    UniqueName name("empty");  // a create() in progress looks like this
    write_object(name, nullptr, 0, 0);
    BOOST_TEST((attach_error(name) == SharedHeapErrc::kNotReady));
  }
  {
    UniqueName name("zeros");  // what a creator that died early leaves behind
    write_object(name, nullptr, 0, 64 * 1024);
    BOOST_TEST((attach_error(name) == SharedHeapErrc::kNotReady));
  }
  // Header fields (see struct Header): magic@0 u64, version@8 u32,
  // header_bytes@12 u32, layout@16 u32, granule@20 u32, mapping_bytes@24 u64.
  struct Case { std::size_t offset; std::uint32_t value; SharedHeapErrc want; };
  for (Case c : {Case{8, 99, SharedHeapErrc::kBadVersion},
                 Case{12, 4, SharedHeapErrc::kBadLayout},
                 Case{16, 0x1234, SharedHeapErrc::kBadLayout},
                 Case{24, 4096, SharedHeapErrc::kCorruptHeader},
                 Case{40, 7, SharedHeapErrc::kCorruptHeader}}) {
    UniqueName name("poke");
    SharedHeap heap = make_heap(name);
    poke(name, c.offset, &c.value, sizeof c.value);
    BOOST_TEST((attach_error(name) == c.want), "offset " << c.offset);
  }
  {
    // A truncated object: the header describes more bytes than exist.
    UniqueName name("trunc");
    SharedHeap heap = make_heap(name);
    int fd = ::shm_open(name.get().c_str(), O_RDWR, 0);
    BOOST_REQUIRE(::ftruncate(fd, 128 * 1024) == 0);
    ::close(fd);
    BOOST_TEST((attach_error(name) == SharedHeapErrc::kCorruptHeader));
  }
}

BOOST_AUTO_TEST_CASE(scribbled_block_header_is_detected_not_crashed_on) {
  UniqueName name("scribble");
  SharedHeap heap = make_heap(name);
  alloy::Allocator a = heap.allocator();
  auto x = a.alloc<std::byte>(64);
  auto y = a.alloc<std::byte>(64);
  BOOST_REQUIRE(x.ok() && y.ok());
  // A buffer overrun from x into y's header.
  std::memset(x->data(), 0xff, 64 + 16);
  auto v = heap.verify();
  BOOST_TEST(!v.ok());
  BOOST_TEST_MESSAGE("verify: " << v.error().what());
  // The bad block is refused as a block; nothing crashes.
  BOOST_TEST((heap.free_checked(y->data(), 64, Alignment{}) != SharedFreeStatus::kFreed));
}

BOOST_AUTO_TEST_CASE(destroy_waits_for_the_last_detach) {
  UniqueName name("destroy");
  SharedHeap creator = make_heap(name);
  auto second = SharedHeap::attach(name.get());
  BOOST_REQUIRE(second.ok());
  BOOST_TEST(second->stats()->attached_processes == 2u);
  BOOST_REQUIRE(SharedHeap::destroy(name.get()).ok());
  // Still mapped and usable by those attached, closed to newcomers.
  BOOST_TEST((attach_error(name) == SharedHeapErrc::kDestroyed));
  auto b = second->allocator().alloc<int>(4);
  BOOST_TEST(b.ok());
  if (b) second->allocator().free(*b);
  second->detach();
  BOOST_TEST((attach_error(name) == SharedHeapErrc::kDestroyed));  // creator remains
  creator.detach();
  BOOST_TEST((attach_error(name) == SharedHeapErrc::kNotFound));  // unlinked
}

BOOST_AUTO_TEST_CASE(anonymous_heap_by_fd) {
  auto heap = SharedHeap::create_anonymous(1 << 20);
  BOOST_REQUIRE_MESSAGE(heap.ok(), heap.error().what());
  auto msg = heap->allocator().dupe(std::string_view("through a memfd"));
  BOOST_REQUIRE(msg.ok());
  BOOST_REQUIRE(heap->set_root("msg", heap->offset_of(msg->data())).ok());
  auto other = SharedHeap::attach_fd(heap->fd());
  BOOST_REQUIRE_MESSAGE(other.ok(), other.error().what());
  BOOST_TEST(other->base() != heap->base());
  char* text = other->get(*other->root<char>("msg"));
  BOOST_TEST(std::string_view(text, msg->size()) == "through a memfd");
  // Freed by the other attachment: the block is the same one.
  other->allocator().free(std::span<char>(text, msg->size()));
  BOOST_TEST(heap->stats()->live_blocks == 0u);
}

BOOST_AUTO_TEST_CASE(damaged_free_lists_are_repaired_from_the_chain) {
  UniqueName name("lists");
  SharedHeap heap = make_heap(name);
  alloy::Allocator a = heap.allocator();
  std::vector<std::span<std::byte>> blocks;
  for (int i = 0; i < 8; ++i) blocks.push_back(*a.alloc<std::byte>(2000));
  a.free(blocks[2]);
  a.free(blocks[5]);
  // A stray write (a use after free) over the list links in blocks[5]'s
  // payload: the first 16 bytes of a free payload are its links.
  std::memset(blocks[5].data(), 0x41, 16);
  BOOST_TEST(!heap.verify().ok());
  // Allocating walks the damaged list, notices, rebuilds it and succeeds.
  auto x = a.alloc<std::byte>(1900);
  auto y = a.alloc<std::byte>(1900);
  BOOST_TEST(x.ok());
  BOOST_TEST(y.ok());
  require_verified(heap);
  BOOST_TEST(heap.stats()->list_repairs >= 1u);
  a.free(*x);
  a.free(*y);
  // Garbage over the links of the free block next to one being freed.
  std::memset(blocks[2].data(), 0x7f, 16);
  a.free(blocks[1]);  // merges with blocks[2]: repair instead of a wild write
  require_verified(heap);
  for (int i : {0, 3, 4, 6, 7}) a.free(blocks[static_cast<std::size_t>(i)]);
  require_verified(heap);
  BOOST_TEST(heap.stats()->free_blocks == 1u);
}

BOOST_AUTO_TEST_CASE(overwritten_free_block_header_stops_the_heap_cleanly) {
  UniqueName name("hdr");
  SharedHeap heap = make_heap(name);
  alloy::Allocator a = heap.allocator();
  auto x = a.alloc<std::byte>(64);
  BOOST_REQUIRE(x.ok());
  // Overrun from x into the header of the big free block after it.
  std::memset(x->data(), 0x33, 64 + 32);
  BOOST_TEST(!a.alloc<std::byte>(100).ok());  // no wild write, no crash
  auto s = heap.stats();
  BOOST_TEST(!s.ok());
  BOOST_TEST((s.error().code == SharedHeapErrc::kHeapCorrupt));
  BOOST_TEST((SharedHeap::attach(name.get()).error().code == SharedHeapErrc::kHeapCorrupt));
}

// Issue 10 (wrong-free audit): through the handle every wrong-free kind is
// refused and reported on stderr with the caller's address in hex, and no
// block is handed out twice afterwards.
BOOST_AUTO_TEST_CASE(handle_wrong_frees_are_reported_with_the_callers_address) {
  UniqueName name("wrongfree_report");
  SharedHeap heap = make_heap(name);
  alloy::Allocator a = heap.allocator();
  const Alignment a1 = Alignment::of<std::byte>();
  auto* x = static_cast<std::byte*>(a.raw_alloc(100, a1, 0));
  auto* y = static_cast<std::byte*>(a.raw_alloc(100, a1, 0));
  BOOST_REQUIRE(x && y);
  std::byte outside[64];
  alloy::testing::CaptureStderr err;
  a.raw_free(alloy::Bytes(outside, 64), a1, 0x54a7e01);  // foreign
  a.raw_free(alloy::Bytes(x + 16, 16), a1, 0x54a7e02);   // interior
  a.raw_free(alloy::Bytes(x, 99), a1, 0x54a7e03);        // wrong size
  a.raw_free(alloy::Bytes(y, 100), a1, 0x54a7e04);
  a.raw_free(alloy::Bytes(y, 100), a1, 0x54a7e05);       // double
  const std::string text = err.text();
  for (const char* needle :
       {"alloy::SharedHeap: refused free of", "called from 0x54a7e01", "called from 0x54a7e02",
        "called from 0x54a7e03", "called from 0x54a7e05"}) {
    BOOST_TEST(text.find(needle) != std::string::npos, needle << " in " << text);
  }
  BOOST_TEST(text.find("0x54a7e04") == std::string::npos);
  BOOST_TEST(heap.stats()->rejected_frees == 4u);
  require_verified(heap);
  std::set<void*> live{x};
  for (int i = 0; i < 50; ++i) {
    void* p = a.raw_alloc(100, a1, 0);
    BOOST_REQUIRE(p != nullptr);
    BOOST_REQUIRE(live.insert(p).second);
  }
  for (void* p : live) a.raw_free(alloy::Bytes(static_cast<std::byte*>(p), 100), a1, 0);
  require_verified(heap);
}
