#define BOOST_TEST_MODULE chunk_list
#include <boost/test/unit_test.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "alloy/allocators/internal/chunk_list.h"
#include "tests/support/recording_allocator.h"

// The chunk list under Arena, Scratch and NodePool
// (allocators/internal/chunk_list.h), on its own.

using alloy::Alignment;
using alloy::internal::Chunk;
using alloy::internal::ChunkList;
using alloy::internal::kChunkHeader;
using Rec = alloy::testing::RecordingAllocator;

namespace {
constexpr Alignment k16 = Alignment::from_log2(4);

std::vector<Chunk*> order(const ChunkList& list) {
  std::vector<Chunk*> out;
  Chunk* prev = nullptr;
  for (Chunk* c = list.first(); c != nullptr; c = c->next) {
    BOOST_TEST(c->prev == prev);  // the back links agree with the forward ones
    out.push_back(c);
    prev = c;
  }
  BOOST_TEST(list.last() == prev);
  return out;
}
}  // namespace

BOOST_AUTO_TEST_CASE(append_keeps_oldest_first_and_counts_bytes) {
  Rec rec;
  ChunkList list(rec.allocator());
  BOOST_TEST(list.empty());
  BOOST_TEST(list.count() == 0u);
  Chunk* a = list.append(256, k16, 11);
  Chunk* b = list.append(512, Alignment::from_log2(6), 12);
  Chunk* c = list.append(1024, k16, 13);
  BOOST_REQUIRE(a != nullptr);
  BOOST_REQUIRE(b != nullptr);
  BOOST_REQUIRE(c != nullptr);
  BOOST_TEST((order(list) == std::vector<Chunk*>{a, b, c}));
  BOOST_TEST(list.count() == 3u);
  BOOST_TEST(list.bytes() == 256u + 512 + 1024);
  BOOST_TEST(list.bytes() == rec.live_bytes);
  BOOST_TEST(list.usable_bytes() == 256u + 512 + 1024 - 3 * kChunkHeader);
  BOOST_TEST((b->alignment == Alignment::from_log2(6)));
  BOOST_TEST(Alignment::from_log2(6).check(b));
  BOOST_TEST(b->begin() == b->address() + kChunkHeader);
  BOOST_TEST(b->end() == b->address() + 512);
  BOOST_TEST(rec.calls[1].ret_addr == 12u);  // the owner's return address reaches the child
  list.free_all(99);
  BOOST_TEST(list.empty());
  BOOST_TEST(list.bytes() == 0u);
  BOOST_TEST(rec.live_bytes == 0u);
  BOOST_TEST(rec.frees == 3u);
  for (const auto& call : rec.calls) {
    if (call.op == Rec::Op::kFree) BOOST_TEST(call.ret_addr == 99u);
  }
}

BOOST_AUTO_TEST_CASE(a_refused_chunk_changes_nothing) {
  Rec rec;
  ChunkList list(rec.allocator());
  Chunk* a = list.append(256, k16, 0);
  rec.refuse(true);
  BOOST_TEST(list.append(256, k16, 0) == nullptr);
  BOOST_TEST((order(list) == std::vector<Chunk*>{a}));
  BOOST_TEST(list.bytes() == 256u);
  rec.refuse(false);
  list.free_all(0);
}

BOOST_AUTO_TEST_CASE(free_after_and_free_before_give_back_one_side) {
  Rec rec;
  ChunkList list(rec.allocator());
  std::vector<Chunk*> c;
  for (std::size_t i = 0; i < 5; ++i) c.push_back(list.append(128 << i, k16, 0));
  list.free_after(c[2], 0);  // the newer two go
  BOOST_TEST((order(list) == std::vector<Chunk*>{c[0], c[1], c[2]}));
  BOOST_TEST(list.bytes() == 128u + 256 + 512);
  list.free_before(c[2], 0);  // the older two go
  BOOST_TEST((order(list) == std::vector<Chunk*>{c[2]}));
  BOOST_TEST(list.bytes() == 512u);
  BOOST_TEST(rec.live_bytes == 512u);
  Chunk* d = list.append(64, k16, 0);  // appending after a trim links correctly
  BOOST_TEST((order(list) == std::vector<Chunk*>{c[2], d}));
  list.free_after(nullptr, 0);
  BOOST_TEST(list.empty());
  BOOST_TEST(rec.live_bytes == 0u);
}

BOOST_AUTO_TEST_CASE(find_looks_in_bodies_only) {
  Rec rec;
  ChunkList list(rec.allocator());
  Chunk* a = list.append(256, k16, 0);
  Chunk* b = list.append(256, k16, 0);
  BOOST_TEST(list.find(reinterpret_cast<void*>(a->begin())) == a);
  BOOST_TEST(list.find(reinterpret_cast<void*>(b->end() - 1)) == b);
  BOOST_TEST(list.find(a) == nullptr);  // the header is not the body
  BOOST_TEST(list.find(reinterpret_cast<void*>(b->end())) == nullptr);
  int elsewhere = 0;
  BOOST_TEST(list.find(&elsewhere) == nullptr);
  list.free_all(0);
}

BOOST_AUTO_TEST_CASE(resize_goes_through_the_child_and_keeps_counts) {
  Rec rec;
  ChunkList list(rec.allocator());
  Chunk* a = list.append(4096, k16, 0);
  BOOST_TEST(list.resize(a, 4096, 0));  // same size: no child call
  BOOST_TEST(rec.calls.size() == 1u);
  BOOST_TEST(list.resize(a, 1024, 0));
  BOOST_TEST(a->size == 1024u);
  BOOST_TEST(list.bytes() == 1024u);
  BOOST_TEST(rec.live_bytes == 1024u);
  rec.allow_resize = false;
  BOOST_TEST(!list.resize(a, 512, 0));  // refused: unchanged
  BOOST_TEST(a->size == 1024u);
  BOOST_TEST(list.bytes() == 1024u);
  list.free_all(0);
  BOOST_TEST(rec.live_bytes == 0u);
}

BOOST_AUTO_TEST_CASE(user_word_is_the_owners) {
  Rec rec;
  ChunkList list(rec.allocator());
  Chunk* a = list.append(256, k16, 0);
  BOOST_TEST(a->user == 0u);
  a->user = 42;
  list.append(256, k16, 0);
  BOOST_TEST(list.first()->user == 42u);
  list.free_all(0);
}
