// alloy::SharedHeap when a process dies holding the lock: SIGKILLed from
// outside while it holds the lock, or killing itself at each step inside an
// alloc or a free. The survivors must find the heap usable and consistent.
#define BOOST_TEST_MODULE shared_heap_crash
#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "alloy/allocators/shared_heap/shared_heap.h"
#include "tests/allocators/shared_heap/test_util.h"

using alloy::SharedHeap;
using alloy::SharedOffset;
using DiePoint = alloy::SharedHeap::DiePoint;
using shared_heap_test::spawn;
using shared_heap_test::UniqueName;
using shared_heap_test::wait_child;
using shared_heap_test::wait_for;

namespace {

constexpr int kKilled = 1000 + SIGKILL;

void require_verified(const SharedHeap& heap) {
  auto v = heap.verify();
  BOOST_REQUIRE_MESSAGE(v.ok(), v.error().what());
}

// The whole free space comes back as one block once everything is freed.
void require_fully_free(SharedHeap& heap) {
  auto s = heap.stats();
  BOOST_REQUIRE(s.ok());
  BOOST_TEST(s->live_blocks == 0u);
  BOOST_TEST(s->bytes_in_use == 0u);
  BOOST_TEST(s->free_blocks == 1u);
  BOOST_TEST(s->largest_free_block == s->heap_bytes);
  // And it can all be handed out again in one piece.
  auto big = heap.allocator().alloc<std::byte>(s->heap_bytes - 64);
  BOOST_TEST(big.ok());
  if (big) heap.allocator().free(*big);
}

}  // namespace

BOOST_AUTO_TEST_CASE(child_killed_from_outside_while_holding_the_lock) {
  UniqueName name("kill");
  auto heap = SharedHeap::create(name.get(), 1 << 20);
  BOOST_REQUIRE(heap.ok());
  auto flag = heap->allocator().create<std::atomic<int>>(0);
  BOOST_REQUIRE(flag.ok());
  const std::uint64_t flag_off = heap->offset_of(*flag).offset;
  pid_t pid = spawn([&] {
    auto h = SharedHeap::attach(name.get());
    CHILD_CHECK(h.ok());
    auto* f = h->get(SharedOffset<std::atomic<int>>{flag_off});
    // Allocate a little, then hold the lock "forever".
    auto b = h->allocator().alloc<std::byte>(100);
    CHILD_CHECK(b.ok());
    std::memset(b->data(), 0x5a, 100);
    CHILD_CHECK(h->set_root("child-block", h->offset_of(b->data())).ok());
    // Holds the lock while sleeping; raises the flag once it has it.
    (void)h->lock_for_test(20000, f);
    return 2;  // never reached: the parent kills us first
  });
  BOOST_REQUIRE(wait_for(**flag, 1));  // the child now holds the lock
  ::kill(pid, SIGKILL);
  BOOST_REQUIRE(wait_child(pid) == kKilled);
  // The next call recovers the lock and goes on.
  auto b = heap->allocator().alloc<std::byte>(200);
  BOOST_REQUIRE(b.ok());
  auto s = heap->stats();
  BOOST_TEST(s->recoveries == 1u);
  BOOST_TEST(s->attached_processes == 1u);  // the dead child's slot is gone
  require_verified(*heap);
  // The block the child allocated and returned before dying is still its.
  auto child_block = heap->root<std::byte>("child-block");
  BOOST_REQUIRE(child_block.ok());
  std::byte* cb = heap->get(*child_block);
  BOOST_TEST((cb[99] == std::byte{0x5a}));
  heap->allocator().free(std::span<std::byte>(cb, 100));
  heap->allocator().free(*b);
  heap->allocator().destroy(*flag);
  require_fully_free(*heap);
}

BOOST_AUTO_TEST_CASE(child_dies_in_the_lock_by_test_hook) {
  UniqueName name("hook");
  auto heap = SharedHeap::create(name.get(), 1 << 20);
  BOOST_REQUIRE(heap.ok());
  pid_t pid = spawn([&] {
    auto h = SharedHeap::attach(name.get());
    CHILD_CHECK(h.ok());
    SharedHeap::set_die_point_for_test(DiePoint::kHoldingLock);
    (void)h->lock_for_test();
    return 2;
  });
  BOOST_REQUIRE(wait_child(pid) == kKilled);
  // Other processes (not only the creator) recover too.
  pid_t pid2 = spawn([&] {
    auto h = SharedHeap::attach(name.get());
    CHILD_CHECK(h.ok());
    auto b = h->allocator().alloc<int>(10);
    CHILD_CHECK(b.ok());
    h->allocator().free(*b);
    CHILD_CHECK(h->verify().ok());
    h->detach();
    return 0;
  });
  BOOST_TEST(wait_child(pid2) == 0);
  auto s = heap->stats();
  BOOST_TEST(s->recoveries == 1u);
  require_verified(*heap);
  require_fully_free(*heap);
}

// For each step of an allocation: the dying allocation is rolled back (its
// caller never received the pointer), nothing else changes.
BOOST_AUTO_TEST_CASE(death_at_every_step_of_an_alloc) {
  for (DiePoint point : {DiePoint::kAllocAfterIntent, DiePoint::kAllocAfterSplit,
                         DiePoint::kAllocAfterCommit}) {
    for (std::size_t alignment : {16u, 256u}) {
      BOOST_TEST_CONTEXT("die point " << static_cast<int>(point) << " alignment " << alignment) {
        UniqueName name("dieal");
        auto heap = SharedHeap::create(name.get(), 1 << 20);
        BOOST_REQUIRE(heap.ok());
        alloy::Allocator a = heap->allocator();
        // Some live and some free blocks around.
        std::vector<std::span<std::byte>> keep;
        for (int i = 0; i < 20; ++i) {
          auto b = a.alloc<std::byte>(100 + 50 * static_cast<std::size_t>(i));
          BOOST_REQUIRE(b.ok());
          std::memset(b->data(), i, b->size());
          keep.push_back(*b);
        }
        for (int i = 0; i < 20; i += 3) a.free(keep[static_cast<std::size_t>(i)]);
        auto before = heap->stats();
        pid_t pid = spawn([&] {
          auto h = SharedHeap::attach(name.get());
          CHILD_CHECK(h.ok());
          SharedHeap::set_die_point_for_test(point);
          auto b = h->allocator().alloc_aligned<std::byte>(4000, alignment);
          (void)b;
          return 2;  // the hook kills us before alloc returns
        });
        BOOST_REQUIRE(wait_child(pid) == kKilled);
        auto after = heap->stats();
        BOOST_REQUIRE(after.ok());
        BOOST_TEST(after->recoveries == 1u);
        BOOST_TEST(after->live_blocks == before->live_blocks);
        BOOST_TEST(after->bytes_in_use == before->bytes_in_use);
        BOOST_TEST(after->rolled_back_allocs == (point == DiePoint::kAllocAfterCommit ? 1u : 0u));
        require_verified(*heap);
        for (int i = 0; i < 20; ++i) {
          if (i % 3 == 0) continue;
          auto b = keep[static_cast<std::size_t>(i)];
          BOOST_TEST((b[b.size() - 1] == std::byte(i)));
          a.free(b);
        }
        require_fully_free(*heap);
      }
    }
  }
}

// For each step of a free: the free is completed (rolled forward) and the
// freed block is coalesced with its free neighbours.
BOOST_AUTO_TEST_CASE(death_at_every_step_of_a_free) {
  for (DiePoint point : {DiePoint::kFreeAfterMarkFree, DiePoint::kFreeAfterCoalesce}) {
    BOOST_TEST_CONTEXT("die point " << static_cast<int>(point)) {
      UniqueName name("diefree");
      auto heap = SharedHeap::create(name.get(), 1 << 20);
      BOOST_REQUIRE(heap.ok());
      alloy::Allocator a = heap->allocator();
      auto x = a.alloc<std::byte>(300);
      auto y = a.alloc<std::byte>(300);  // the child frees this one
      auto z = a.alloc<std::byte>(300);
      auto w = a.alloc<std::byte>(300);
      BOOST_REQUIRE(x.ok() && y.ok() && z.ok() && w.ok());
      a.free(*x);
      a.free(*z);  // y now has free neighbours on both sides
      const std::uint64_t y_off = heap->offset_of(y->data()).offset;
      pid_t pid = spawn([&] {
        auto h = SharedHeap::attach(name.get());
        CHILD_CHECK(h.ok());
        SharedHeap::set_die_point_for_test(point);
        std::byte* p = h->get(SharedOffset<std::byte>{y_off});
        h->allocator().free(std::span<std::byte>(p, 300));
        return 2;
      });
      BOOST_REQUIRE(wait_child(pid) == kKilled);
      auto s = heap->stats();
      BOOST_REQUIRE(s.ok());
      BOOST_TEST(s->recoveries == 1u);
      BOOST_TEST(s->live_blocks == 1u);  // only w
      BOOST_TEST(s->free_blocks == 2u);  // x+y+z merged, and the tail after w
      require_verified(*heap);
      // y is gone: freeing it again is refused.
      BOOST_TEST((heap->free_checked(y->data(), 300, alloy::Alignment{}) ==
                  alloy::SharedFreeStatus::kNotABlock));
      a.free(*w);
      require_fully_free(*heap);
    }
  }
}

// Many deaths in a row, interleaved with survivors working: still consistent.
BOOST_AUTO_TEST_CASE(repeated_deaths_keep_the_heap_usable) {
  UniqueName name("many");
  auto heap = SharedHeap::create(name.get(), 1 << 20);
  BOOST_REQUIRE(heap.ok());
  const DiePoint points[] = {DiePoint::kAllocAfterIntent, DiePoint::kAllocAfterSplit,
                             DiePoint::kAllocAfterCommit, DiePoint::kFreeAfterMarkFree,
                             DiePoint::kFreeAfterCoalesce, DiePoint::kHoldingLock};
  alloy::Allocator a = heap->allocator();
  std::vector<std::span<std::byte>> keep;
  for (int round = 0; round < 12; ++round) {
    DiePoint point = points[round % 6];
    auto victim = a.alloc<std::byte>(64 + 16 * static_cast<std::size_t>(round));
    BOOST_REQUIRE(victim.ok());
    const std::uint64_t off = heap->offset_of(victim->data()).offset;
    const std::size_t len = victim->size();
    pid_t pid = spawn([&] {
      auto h = SharedHeap::attach(name.get());
      CHILD_CHECK(h.ok());
      alloy::Allocator ca = h->allocator();
      for (int i = 0; i < 5; ++i) {  // leave some live blocks behind
        auto b = ca.alloc<std::byte>(32 + static_cast<std::size_t>(i) * 40);
        CHILD_CHECK(b.ok());
      }
      SharedHeap::set_die_point_for_test(point);
      if (point == DiePoint::kHoldingLock) (void)h->lock_for_test();
      else if (point >= DiePoint::kFreeAfterMarkFree)
        ca.free(std::span<std::byte>(h->get(SharedOffset<std::byte>{off}), len));
      else (void)ca.alloc<std::byte>(777);
      return 2;
    });
    BOOST_REQUIRE(wait_child(pid) == kKilled);
    require_verified(*heap);
    if (point < DiePoint::kFreeAfterMarkFree || point == DiePoint::kHoldingLock) {
      keep.push_back(*victim);
    }
    auto mine = a.alloc<std::byte>(500);
    BOOST_REQUIRE(mine.ok());
    keep.push_back(*mine);
  }
  auto s = heap->stats();
  BOOST_TEST(s->recoveries == 12u);
  // Blocks the dead children allocated and kept are still live and owned by them.
  std::size_t orphans = 0;
  (void)heap->visit([&](const alloy::SharedBlockInfo& b) {
    if (b.owner != ::getpid()) ++orphans;
  });
  BOOST_TEST(orphans == 12u * 5);
  for (auto b : keep) a.free(b);
  require_verified(*heap);
}

namespace {

constexpr int kSlots = 64;

// Shared by the workers of the random-kill test; lives in the heap.
struct Board {
  std::atomic<int> go{0};
  std::atomic<int> stop{0};
  std::atomic<std::uint64_t> slots[kSlots] = {};
  std::atomic<std::uint64_t> ops{0};
};

// Block contents: length and seed, then bytes derived from both.
void fill_block(std::byte* p, std::uint32_t len, std::uint32_t seed) {
  std::memcpy(p, &len, 4);
  std::memcpy(p + 4, &seed, 4);
  for (std::uint32_t j = 8; j < len; ++j) p[j] = std::byte(static_cast<unsigned char>(seed + j));
}
bool block_intact(const std::byte* p, std::uint32_t* len_out) {
  std::uint32_t len, seed;
  std::memcpy(&len, p, 4);
  std::memcpy(&seed, p + 4, 4);
  *len_out = len;
  for (std::uint32_t j = 8; j < len; ++j) {
    if (p[j] != std::byte(static_cast<unsigned char>(seed + j))) return false;
  }
  return true;
}

// Allocates, publishes into random slots, takes blocks out of slots, checks and
// frees them (whoever allocated them), until told to stop.
int worker(const std::string& name, std::uint64_t board_off, unsigned seed) {
  auto h = SharedHeap::attach(name);
  CHILD_CHECK(h.ok());
  Board* board = h->get(SharedOffset<Board>{board_off});
  CHILD_CHECK(wait_for(board->go, 1));
  alloy::Allocator a = h->allocator();
  std::uint32_t rng = seed * 2654435761u + 1;
  auto next = [&] { rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5; return rng; };
  while (board->stop.load() == 0) {
    std::uint64_t old;
    if (next() % 2 == 0) {
      std::uint32_t len = 8 + next() % 2000;
      auto b = a.alloc<std::byte>(len);
      if (!b) continue;
      fill_block(b->data(), len, next());
      old = board->slots[next() % kSlots].exchange(h->offset_of(b->data()).offset);
    } else {
      old = board->slots[next() % kSlots].exchange(0);
    }
    if (old != 0) {
      std::byte* p = h->get(SharedOffset<std::byte>{old});
      std::uint32_t len = 0;
      CHILD_CHECK(block_intact(p, &len));
      a.free(std::span<std::byte>(p, len));
    }
    board->ops.fetch_add(1);
  }
  h->detach();
  return 0;
}

}  // namespace

// Workers in three processes share blocks; a fourth is SIGKILLed at random
// moments, in or out of the lock. The survivors never see damage.
BOOST_AUTO_TEST_CASE(random_sigkills_during_concurrent_work) {
  UniqueName name("random");
  auto heap = SharedHeap::create(name.get(), 4 << 20);
  BOOST_REQUIRE(heap.ok());
  auto board = heap->allocator().create<Board>();
  BOOST_REQUIRE(board.ok());
  const std::uint64_t board_off = heap->offset_of(*board).offset;
  std::vector<pid_t> workers;
  for (unsigned i = 0; i < 3; ++i) {
    workers.push_back(spawn([&] { return worker(name.get(), board_off, i + 1); }));
  }
  (*board)->go = 1;
  constexpr int kKills = 10;
  std::uint32_t r = 12345;
  for (int k = 0; k < kKills; ++k) {
    pid_t victim = spawn([&] { return worker(name.get(), board_off, 100u + static_cast<unsigned>(k)); });
    r = r * 1103515245u + 12345u;
    ::usleep(1000 + (r >> 8) % 4000);
    ::kill(victim, SIGKILL);
    BOOST_REQUIRE(wait_child(victim) == kKilled);
  }
  (*board)->stop = 1;
  for (pid_t pid : workers) BOOST_TEST(wait_child(pid) == 0);
  require_verified(*heap);
  auto s = heap->stats();
  BOOST_TEST_MESSAGE("ops " << (*board)->ops.load() << ", recoveries " << s->recoveries
                            << ", rolled back " << s->rolled_back_allocs
                            << ", rolled forward " << s->rolled_forward_frees);
  BOOST_TEST(s->recoveries <= static_cast<std::uint64_t>(kKills));
  BOOST_TEST(s->rejected_frees == 0u);
  // Every published block is intact; anything else live is the board or a
  // block a victim held in its hands when it died (at most one each).
  std::set<std::uint64_t> published;
  alloy::Allocator a = heap->allocator();
  for (auto& slot : (*board)->slots) {
    std::uint64_t off = slot.load();
    if (off == 0) continue;
    published.insert(off);
    std::uint32_t len = 0;
    BOOST_TEST(block_intact(heap->get(SharedOffset<std::byte>{off}), &len));
  }
  std::size_t orphans = 0, seen_published = 0;
  (void)heap->visit([&](const alloy::SharedBlockInfo& b) {
    if (b.offset == board_off) return;
    if (published.count(b.offset) != 0) ++seen_published;
    else ++orphans;
  });
  BOOST_TEST(seen_published == published.size());
  BOOST_TEST(orphans <= static_cast<std::size_t>(kKills));
  for (std::uint64_t off : published) {
    std::byte* p = heap->get(SharedOffset<std::byte>{off});
    std::uint32_t len = 0;
    (void)block_intact(p, &len);
    a.free(std::span<std::byte>(p, len));
  }
  require_verified(*heap);
}

// The attachment count ignores processes that died without detaching, so a
// destroyed heap is still unlinked when the last *live* process detaches.
BOOST_AUTO_TEST_CASE(dead_attachers_do_not_keep_a_destroyed_heap_alive) {
  UniqueName name("deadref");
  auto heap = SharedHeap::create(name.get(), 1 << 20);
  BOOST_REQUIRE(heap.ok());
  pid_t pid = spawn([&] {
    auto h = SharedHeap::attach(name.get());
    CHILD_CHECK(h.ok());
    ::raise(SIGKILL);  // dies attached, without detach()
    return 2;
  });
  BOOST_REQUIRE(wait_child(pid) == kKilled);
  // An inherited copy detached in a forked child releases nothing of ours.
  pid_t pid2 = spawn([&] {
    heap->detach();
    return 0;
  });
  BOOST_REQUIRE(wait_child(pid2) == 0);
  BOOST_TEST(heap->stats()->attached_processes == 1u);  // the dead one is pruned
  BOOST_REQUIRE(SharedHeap::destroy(name.get()).ok());
  BOOST_TEST((SharedHeap::attach(name.get()).error().code == alloy::SharedHeapErrc::kDestroyed));
  heap->detach();
  BOOST_TEST((SharedHeap::attach(name.get()).error().code == alloy::SharedHeapErrc::kNotFound));
}
