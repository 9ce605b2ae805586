#define BOOST_TEST_MODULE thread_safe_allocator
#include <boost/test/unit_test.hpp>

#include "alloy/alloc_iface/make_vtable.h"
#include "alloy/allocators/c_allocator.h"
#include "alloy/allocators/wrappers/thread_safe_allocator.h"
#include "tests/allocators/wrappers/wrapper_test_util.h"

namespace {

using alloy::Alignment;
using alloy::Bytes;

// A deliberately unsynchronised allocator: 512-byte slots on a plain free list
// with plain counters. Racing calls would corrupt the list (and TSan would
// report them); behind ThreadSafeAllocator the counts must come out exact.
class UnsyncedSlots {
 public:
  static constexpr std::size_t kSlot = 512;
  static constexpr std::size_t kSlots = 256;

  UnsyncedSlots() {
    for (std::size_t i = 0; i < kSlots; ++i) push(storage_ + i * kSlot);
  }
  alloy::Allocator allocator() { return {this, &alloy::vtable_for<UnsyncedSlots>}; }

  std::size_t allocs = 0, frees = 0, resizes = 0, live = 0;

 private:
  ALLOY_VTABLE_ENTRIES;  // no vt_remap: the builder puts no_remap
  struct Node {
    Node* next;
  };
  void push(std::byte* p) {
    auto* n = reinterpret_cast<Node*>(p);
    n->next = head_;
    head_ = n;
  }
  static void* vt_alloc(void* ctx, std::size_t len, Alignment alignment, std::uintptr_t) {
    auto* self = static_cast<UnsyncedSlots*>(ctx);
    if (len > kSlot || alignment.bytes() > kSlot || self->head_ == nullptr) return nullptr;
    Node* n = self->head_;
    self->head_ = n->next;
    ++self->allocs;
    ++self->live;
    return n;
  }
  static bool vt_resize(void* ctx, Bytes, Alignment, std::size_t new_len, std::uintptr_t) {
    auto* self = static_cast<UnsyncedSlots*>(ctx);
    ++self->resizes;
    return new_len <= kSlot;
  }
  static void vt_free(void* ctx, Bytes memory, Alignment, std::uintptr_t) {
    auto* self = static_cast<UnsyncedSlots*>(ctx);
    self->push(memory.data());
    ++self->frees;
    --self->live;
  }

  alignas(4096) std::byte storage_[kSlot * kSlots];
  Node* head_ = nullptr;
};

}  // namespace

BOOST_AUTO_TEST_CASE(passes_calls_through_unchanged) {
  UnsyncedSlots slots;
  alloy::ThreadSafeAllocator safe(slots.allocator());
  alloy::Allocator a = safe.allocator();
  auto r = a.alloc<int>(10);
  BOOST_REQUIRE(r);
  BOOST_TEST(a.resize(*r, 100));
  BOOST_TEST(!a.resize(*r, 200));  // 800 bytes > one slot
  a.free(*r);
  BOOST_TEST(slots.allocs == 1u);
  BOOST_TEST(slots.resizes == 2u);
  BOOST_TEST(slots.frees == 1u);
  BOOST_TEST(!a.alloc<char>(513));  // the child's refusal comes back as is
}

BOOST_AUTO_TEST_CASE(locked_runs_under_the_mutex_with_the_child) {
  UnsyncedSlots slots;
  alloy::ThreadSafeAllocator safe(slots.allocator());
  alloy::Allocator seen;
  const std::size_t live = safe.locked([&](alloy::Allocator child) {
    seen = child;
    return slots.live;
  });
  BOOST_TEST(live == 0u);
  BOOST_TEST((seen == slots.allocator()));
}

BOOST_AUTO_TEST_CASE(alignment_is_preserved) {
  alloy::ThreadSafeAllocator safe(alloy::c_allocator());
  BOOST_TEST(alloy::testing::misaligned_count(safe.allocator(), 65536) == 0);
  UnsyncedSlots slots;
  alloy::ThreadSafeAllocator safe_slots(slots.allocator());
  BOOST_TEST(alloy::testing::misaligned_count(safe_slots.allocator(), 512) == 0);
}

namespace {
void hammer_unsynchronised_child(alloy::ThreadSafeAllocator::Lock lock) {
  UnsyncedSlots slots;
  alloy::ThreadSafeAllocator safe(slots.allocator(), lock);
  auto r = alloy::testing::hammer(safe.allocator(), 4, 20000);
  BOOST_TEST(r.corrupted == 0u);
  BOOST_TEST(r.failures == 0u);  // 4 x 16 live blocks fit in 256 slots
  safe.locked([&](alloy::Allocator) {
    BOOST_TEST(slots.allocs == r.allocs);
    BOOST_TEST(slots.frees == r.allocs);
    BOOST_TEST(slots.live == 0u);
  });
  // Every slot made it back to the free list.
  alloy::Allocator a = safe.allocator();
  std::vector<void*> all;
  while (void* p = a.raw_alloc(1, Alignment{}, 0)) all.push_back(p);
  BOOST_TEST(all.size() == UnsyncedSlots::kSlots);
  for (void* p : all) a.raw_free(Bytes(static_cast<std::byte*>(p), 1), Alignment{}, 0);
}
}  // namespace

BOOST_AUTO_TEST_CASE(serialises_an_unsynchronised_child_under_four_threads) {
  hammer_unsynchronised_child(alloy::ThreadSafeAllocator::Lock::kAbslMutex);
}

BOOST_AUTO_TEST_CASE(std_mutex_variant_serialises_the_same) {
  hammer_unsynchronised_child(alloy::ThreadSafeAllocator::Lock::kStdMutex);
  UnsyncedSlots slots;
  alloy::ThreadSafeAllocator safe(slots.allocator(), alloy::ThreadSafeAllocator::Lock::kStdMutex);
  BOOST_TEST((safe.lock() == alloy::ThreadSafeAllocator::Lock::kStdMutex));
  const std::size_t allocs = safe.locked([&](alloy::Allocator child) {
    auto r = child.alloc<int>(4);
    if (r) child.free(*r);
    return slots.allocs;
  });
  BOOST_TEST(allocs == 1u);
  BOOST_TEST(alloy::testing::misaligned_count(safe.allocator(), 512) == 0);
}
