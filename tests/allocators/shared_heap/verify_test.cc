// SharedHeap::verify(): the header and chain check the other suites call
// after each batch. A healthy heap verifies after batches of alloc, resize and
// free; each kind of damage it looks for (a scribbled header, an intent left
// set, a cap above the heap, a bad root, a looping free list) is reported
// instead of followed. The damage is written through internal/layout.h.
#define BOOST_TEST_MODULE shared_heap_verify
#include <boost/test/unit_test.hpp>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "alloy/allocators/shared_heap/internal/layout.h"
#include "alloy/allocators/shared_heap/shared_heap.h"
#include "tests/allocators/shared_heap/test_util.h"

namespace sh = alloy::shared_heap_internal;
using alloy::SharedHeap;
using alloy::SharedHeapErrc;
using shared_heap_test::UniqueName;

namespace {

SharedHeap make_heap(const UniqueName& name) {
  auto r = SharedHeap::create(name.get(), 1 << 20);
  BOOST_REQUIRE_MESSAGE(r.ok(), r.error().what());
  return std::move(*r);
}

sh::Header* header_of(const SharedHeap& heap) {
  return reinterpret_cast<sh::Header*>(heap.base());
}

void require_verified(const SharedHeap& heap) {
  auto v = heap.verify();
  BOOST_REQUIRE_MESSAGE(v.ok(), v.error().what());
}

// verify() fails with `code` and a message that contains `what`.
void require_reported(const SharedHeap& heap, SharedHeapErrc code, const char* what) {
  auto v = heap.verify();
  BOOST_REQUIRE(!v.ok());
  BOOST_TEST(static_cast<int>(v.error().code) == static_cast<int>(code));
  BOOST_TEST_MESSAGE(v.error().what());
  BOOST_TEST(std::string(v.error().what()).find(what) != std::string::npos,
             v.error().what());
}

}  // namespace

BOOST_AUTO_TEST_CASE(healthy_heap_verifies_after_every_batch) {
  UniqueName name("verify_batches");
  SharedHeap heap = make_heap(name);
  alloy::Allocator a = heap.allocator();
  std::mt19937 rng(7);
  std::vector<std::span<std::byte>> live;
  require_verified(heap);
  for (int batch = 0; batch < 20; ++batch) {
    for (int i = 0; i < 50; ++i) {
      std::size_t len = 1 + rng() % (rng() % 4 == 0 ? 20000 : 500);
      auto b = a.alloc<std::byte>(len);
      if (b.ok()) live.push_back(*b);
    }
    for (std::size_t i = 0; i < live.size(); i += 3) {
      std::size_t n = live[i].size() / 2 + 1;
      if (a.resize(live[i], n)) live[i] = live[i].first(n);
    }
    for (std::size_t i = 0; i < live.size() / 2; ++i) {
      std::size_t k = rng() % live.size();
      a.free(live[k]);
      live[k] = live.back();
      live.pop_back();
    }
    require_verified(heap);
  }
  BOOST_REQUIRE(heap.set_root("first", 64).ok());
  require_verified(heap);
  for (auto b : live) a.free(b);
  require_verified(heap);
  BOOST_TEST(heap.stats()->live_blocks == 0u);
}

BOOST_AUTO_TEST_CASE(scribbled_header_is_reported) {
  UniqueName name("verify_header");
  SharedHeap heap = make_heap(name);
  sh::Header* h = header_of(heap);
  const sh::u64 saved = h->heap_end;
  h->heap_end += sh::kGranule;  // inside the checksummed prefix
  require_reported(heap, SharedHeapErrc::kCorruptHeader, "checksum");
  h->heap_end = saved;
  require_verified(heap);
  h->version = sh::kVersion + 1;
  require_reported(heap, SharedHeapErrc::kBadVersion, "version");
  h->version = sh::kVersion;
  require_verified(heap);
}

BOOST_AUTO_TEST_CASE(intent_left_set_and_cap_above_heap_are_reported) {
  UniqueName name("verify_intent");
  SharedHeap heap = make_heap(name);
  sh::Header* h = header_of(heap);
  h->intent.op = sh::kOpAlloc;
  require_reported(heap, SharedHeapErrc::kHeapCorrupt, "intent");
  h->intent.op = sh::kOpNone;
  require_verified(heap);
  h->cap = h->heap_end - h->heap_begin + 1;
  require_reported(heap, SharedHeapErrc::kHeapCorrupt, "cap");
  BOOST_REQUIRE(heap.set_ceiling(1 << 30).ok());  // clamps to the heap size
  require_verified(heap);
}

BOOST_AUTO_TEST_CASE(bad_root_is_reported) {
  UniqueName name("verify_root");
  SharedHeap heap = make_heap(name);
  BOOST_REQUIRE(heap.set_root("r", 128).ok());
  sh::Header* h = header_of(heap);
  sh::RootSlot* slot = nullptr;
  for (auto& r : h->roots) {
    if (r.used != 0) slot = &r;
  }
  BOOST_REQUIRE(slot != nullptr);
  slot->offset = h->mapping_bytes;
  require_reported(heap, SharedHeapErrc::kHeapCorrupt, "root offset");
  slot->offset = 128;
  std::memset(slot->name, 'x', sizeof slot->name);  // no terminator left
  require_reported(heap, SharedHeapErrc::kHeapCorrupt, "root name");
  slot->used = 0;
  require_verified(heap);
}

BOOST_AUTO_TEST_CASE(looping_free_list_is_reported_not_followed_forever) {
  UniqueName name("verify_loop");
  SharedHeap heap = make_heap(name);
  alloy::Allocator a = heap.allocator();
  std::vector<std::span<std::byte>> blocks;
  for (int i = 0; i < 6; ++i) blocks.push_back(*a.alloc<std::byte>(200));
  a.free(blocks[1]);
  a.free(blocks[3]);  // same exact class as blocks[1]: one list of two
  require_verified(heap);
  // blocks[3] heads the list; point its successor back at itself: the walk
  // stops at the disagreeing back link (and is bounded by the free-block count).
  auto* links = reinterpret_cast<sh::FreeLinks*>(blocks[3].data());
  const sh::u64 self = static_cast<sh::u64>(blocks[3].data() - heap.base()) - sh::kBlockHeader;
  const sh::FreeLinks saved = *links;
  links->next = self;
  links->prev = 0;
  auto v = heap.verify();
  BOOST_REQUIRE(!v.ok());
  BOOST_TEST(static_cast<int>(v.error().code) == static_cast<int>(SharedHeapErrc::kHeapCorrupt));
  BOOST_TEST_MESSAGE(v.error().what());
  *links = saved;
  require_verified(heap);
}
