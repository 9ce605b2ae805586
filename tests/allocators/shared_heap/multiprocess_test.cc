// alloy::SharedHeap across processes: forked children attach at other
// addresses, allocate and free concurrently (including each other's blocks),
// and the parent checks contents, visit() and the shared ceiling.
#define BOOST_TEST_MODULE shared_heap_multiprocess
#include <boost/test/unit_test.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "alloy/allocators/shared_heap/shared_heap.h"
#include "tests/allocators/shared_heap/test_util.h"

using alloy::SharedHeap;
using alloy::SharedOffset;
using shared_heap_test::spawn;
using shared_heap_test::UniqueName;
using shared_heap_test::wait_child;
using shared_heap_test::wait_for;

namespace {

constexpr int kChildren = 4;
constexpr int kPerChild = 150;

// Lives in the heap; found by the children through the root "control".
struct Control {
  std::atomic<int> attached{0};
  std::atomic<int> go{0};
  std::atomic<int> published{0};
  std::atomic<std::uint64_t> child_base[kChildren] = {};
  std::atomic<std::uint64_t> slots[kChildren][kPerChild] = {};
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

// The start of every message block: who made it and how long it is.
struct Record {
  std::uint32_t child;
  std::uint32_t index;
  std::uint32_t length;  // of the whole block, this record included
  std::uint32_t reserved;
};

unsigned char pattern(std::uint32_t child, std::uint32_t index, std::size_t j) {
  return static_cast<unsigned char>(child * 31 + index * 7 + j);
}

void fill(std::byte* p, std::uint32_t child, std::uint32_t index, std::uint32_t length) {
  Record r{child, index, length, 0};
  std::memcpy(p, &r, sizeof r);
  for (std::size_t j = sizeof r; j < length; ++j) p[j] = std::byte{pattern(child, index, j)};
}

// True if the block holds what fill() wrote.
bool intact(const std::byte* p, Record* out = nullptr) {
  Record r;
  std::memcpy(&r, p, sizeof r);
  if (out != nullptr) *out = r;
  for (std::size_t j = sizeof r; j < r.length; ++j) {
    if (p[j] != std::byte{pattern(r.child, r.index, j)}) return false;
  }
  return true;
}

// Moves the next mapping somewhere else in a child (see the test below).
void* displace(int child) {
  if (child % 2 == 0) return nullptr;
  std::size_t len = (std::size_t{32} << 20) * static_cast<std::size_t>(child);
  void* dummy = ::mmap(nullptr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return dummy == MAP_FAILED ? nullptr : dummy;
}

int child_main(const std::string& name, int id) {
  (void)displace(id);  // left mapped on purpose until _exit
  alloy::SharedAttachOptions options;
  if (id == 2) options.address_hint = reinterpret_cast<void*>(std::uintptr_t{0x5a0000000000});
  auto heap = SharedHeap::attach(name, options);
  CHILD_CHECK(heap.ok());
  auto control_off = heap->root<Control>("control");
  CHILD_CHECK(control_off.ok());
  Control* control = heap->get(*control_off);
  CHILD_CHECK(control != nullptr);
  control->child_base[id] = reinterpret_cast<std::uintptr_t>(heap->base());
  control->attached.fetch_add(1);
  CHILD_CHECK(wait_for(control->go, 1));

  alloy::Allocator a = heap->allocator();
  std::mt19937 rng(static_cast<unsigned>(id) + 1);
  const int peer = (id + 1) % kChildren;
  auto claim_and_free = [&](int k) -> bool {
    std::uint64_t off = control->slots[peer][k].exchange(0);
    if (off == 0) return true;  // not published yet
    auto* p = heap->get(SharedOffset<std::byte>{off});
    Record r;
    if (!intact(p, &r) || r.child != static_cast<std::uint32_t>(peer) ||
        r.index != static_cast<std::uint32_t>(k)) {
      return false;
    }
    a.free(std::span<std::byte>(p, r.length));
    return true;
  };
  for (int k = 0; k < kPerChild; ++k) {
    std::uint32_t len = static_cast<std::uint32_t>(
        sizeof(Record) + rng() % (k % 10 == 0 ? 3000 : 300));
    auto block = a.alloc<std::byte>(len);
    CHILD_CHECK(block.ok());
    fill(block->data(), static_cast<std::uint32_t>(id), static_cast<std::uint32_t>(k), len);
    control->slots[id][k].store(heap->offset_of(block->data()).offset);
    // Churn: a short-lived block of our own.
    auto temp = a.alloc<std::byte>(sizeof(Record) + rng() % 500);
    CHILD_CHECK(temp.ok());
    fill(temp->data(), 99, static_cast<std::uint32_t>(k), static_cast<std::uint32_t>(temp->size()));
    CHILD_CHECK(intact(temp->data()));
    a.free(*temp);
    // Free the peer's even-numbered blocks as they appear.
    if (k % 2 == 0) CHILD_CHECK(claim_and_free(k));
  }
  control->published.fetch_add(1);
  CHILD_CHECK(wait_for(control->published, kChildren));
  for (int k = 0; k < kPerChild; k += 2) CHILD_CHECK(claim_and_free(k));
  heap->detach();
  return 0;
}

}  // namespace

BOOST_AUTO_TEST_CASE(children_at_other_addresses_share_alloc_and_free) {
  UniqueName name("mp");
  auto heap = SharedHeap::create(name.get(), 4 << 20);
  BOOST_REQUIRE_MESSAGE(heap.ok(), heap.error().what());
  auto control = heap->allocator().create<Control>();
  BOOST_REQUIRE(control.ok());
  BOOST_REQUIRE(heap->set_root("control", heap->offset_of(*control)).ok());

  std::vector<pid_t> pids;
  for (int i = 0; i < kChildren; ++i) pids.push_back(spawn([&] { return child_main(name.get(), i); }));
  BOOST_REQUIRE(wait_for((*control)->attached, kChildren));
  BOOST_TEST(heap->stats()->attached_processes == 1u + kChildren);
  (*control)->go = 1;
  // The parent churns too while the children run.
  alloy::Allocator a = heap->allocator();
  for (int k = 0; k < 300; ++k) {
    auto b = a.alloc<std::byte>(64 + static_cast<std::size_t>(k));
    BOOST_REQUIRE(b.ok());
    fill(b->data(), 77, static_cast<std::uint32_t>(k), static_cast<std::uint32_t>(b->size()));
    BOOST_REQUIRE(intact(b->data()));
    a.free(*b);
  }
  for (pid_t pid : pids) BOOST_TEST(wait_child(pid) == 0);

  // Every child mapped the heap somewhere other than the parent.
  for (int i = 0; i < kChildren; ++i) {
    std::uint64_t base = (*control)->child_base[i];
    BOOST_TEST_MESSAGE("child " << i << " mapped at " << std::hex << base);
    BOOST_TEST(base != 0u);
    BOOST_TEST(base != reinterpret_cast<std::uintptr_t>(heap->base()));
  }
  auto v = heap->verify();
  BOOST_REQUIRE_MESSAGE(v.ok(), v.error().what());

  // What should be live: the control block and every odd-numbered record.
  std::map<std::uint64_t, std::pair<int, int>> expected;
  for (int i = 0; i < kChildren; ++i) {
    for (int k = 0; k < kPerChild; ++k) {
      std::uint64_t off = (*control)->slots[i][k];
      if (k % 2 == 0) BOOST_TEST(off == 0u);
      else expected[off] = {i, k};
    }
  }
  BOOST_TEST(expected.size() == static_cast<std::size_t>(kChildren * kPerChild / 2));
  const std::uint64_t control_off = heap->offset_of(*control).offset;
  std::set<std::uint64_t> seen;
  std::size_t bad = 0;
  std::set<pid_t> owners;
  auto visited = heap->visit([&](const alloy::SharedBlockInfo& b) {
    seen.insert(b.offset);
    if (b.offset == control_off) return;
    owners.insert(b.owner);
    Record r;
    auto it = expected.find(b.offset);
    if (it == expected.end() || !intact(static_cast<std::byte*>(b.data), &r) ||
        r.length != b.length || static_cast<int>(r.child) != it->second.first ||
        static_cast<int>(r.index) != it->second.second) {
      ++bad;
    }
  });
  BOOST_REQUIRE(visited.ok());
  BOOST_TEST(bad == 0u);
  BOOST_TEST(*visited == expected.size() + 1);
  BOOST_TEST(seen.size() == expected.size() + 1);
  BOOST_TEST(owners.size() == static_cast<std::size_t>(kChildren));  // each child's pid
  auto s = heap->stats();
  BOOST_TEST(s->live_blocks == expected.size() + 1);
  BOOST_TEST(s->attached_processes == 1u);  // the children detached
  BOOST_TEST(s->rejected_frees == 0u);

  // The parent frees blocks the children allocated.
  for (auto& [off, who] : expected) {
    auto* p = heap->get(SharedOffset<std::byte>{off});
    Record r;
    BOOST_REQUIRE(intact(p, &r));
    a.free(std::span<std::byte>(p, r.length));
  }
  a.destroy(*control);
  v = heap->verify();
  BOOST_REQUIRE_MESSAGE(v.ok(), v.error().what());
  s = heap->stats();
  BOOST_TEST(s->live_blocks == 0u);
  BOOST_TEST(s->free_blocks == 1u);
}

BOOST_AUTO_TEST_CASE(ceiling_is_shared_by_all_processes) {
  UniqueName name("mpcap");
  auto heap = SharedHeap::create(name.get(), 4 << 20);
  BOOST_REQUIRE(heap.ok());
  constexpr std::size_t kCap = 200 * 1024;
  BOOST_REQUIRE(heap->set_ceiling(kCap).ok());
  struct Sync { std::atomic<int> go{0}; std::atomic<int> got[3] = {}; std::atomic<int> over{0}; };
  auto sync = heap->allocator().create<Sync>();
  BOOST_REQUIRE(sync.ok());
  const std::uint64_t sync_off = heap->offset_of(*sync).offset;
  std::vector<pid_t> pids;
  for (int i = 0; i < 3; ++i) {
    pids.push_back(spawn([&, i] {
      auto h = SharedHeap::attach(name.get());
      CHILD_CHECK(h.ok());
      Sync* s = h->get(SharedOffset<Sync>{sync_off});
      CHILD_CHECK(wait_for(s->go, 1));
      int got = 0;
      for (;;) {
        auto b = h->allocator().alloc<std::byte>(1000);
        if (!b) break;  // the shared cap, not a crash
        ++got;
        ::usleep(20);  // let the others interleave
        auto st = h->stats();
        CHILD_CHECK(st.ok());
        if (st->bytes_in_use > kCap) s->over = 1;
      }
      s->got[i] = got;
      h->detach();
      return 0;
    }));
  }
  (*sync)->go = 1;
  for (pid_t pid : pids) BOOST_TEST(wait_child(pid) == 0);
  auto s = heap->stats();
  BOOST_TEST((*sync)->over.load() == 0);
  BOOST_TEST(s->bytes_in_use <= kCap);
  BOOST_TEST(s->bytes_in_use + 1040 > kCap);  // filled right up to it, no further
  BOOST_TEST(s->failed_allocs >= 3u);
  int total = 0;
  for (auto& g : (*sync)->got) {
    BOOST_TEST_MESSAGE("child got " << g.load() << " blocks under the cap");
    total += g.load();
  }
  BOOST_TEST(static_cast<std::size_t>(total) == s->live_blocks - 1);
  // Raising the cap in the parent lets anyone allocate again.
  BOOST_REQUIRE(heap->set_ceiling(kCap * 2).ok());
  auto more = heap->allocator().alloc<std::byte>(1000);
  BOOST_TEST(more.ok());
  auto v = heap->verify();
  BOOST_TEST(v.ok());
}

BOOST_AUTO_TEST_CASE(anonymous_heap_is_shared_through_an_inherited_fd) {
  auto heap = SharedHeap::create_anonymous(1 << 20);
  BOOST_REQUIRE(heap.ok());
  const int fd = heap->fd();
  const auto parent_base = reinterpret_cast<std::uintptr_t>(heap->base());
  pid_t pid = spawn([&] {
    auto h = SharedHeap::attach_fd(fd);
    CHILD_CHECK(h.ok());
    CHILD_CHECK(reinterpret_cast<std::uintptr_t>(h->base()) != parent_base);
    auto text = h->allocator().dupe(std::string_view("written by the child"));
    CHILD_CHECK(text.ok());
    CHILD_CHECK(h->set_root("text", h->offset_of(text->data())).ok());
    h->detach();
    return 0;
  });
  BOOST_REQUIRE(wait_child(pid) == 0);
  auto off = heap->root<char>("text");
  BOOST_REQUIRE(off.ok());
  const char* text = heap->get(*off);
  BOOST_TEST(std::string_view(text, 20) == "written by the child");
  std::size_t live = 0;
  (void)heap->visit([&](const alloy::SharedBlockInfo& b) {
    ++live;
    BOOST_TEST(b.owner == pid);
    BOOST_TEST(b.length == 20u);
  });
  BOOST_TEST(live == 1u);
  heap->allocator().free(std::span<const char>(text, 20));
  BOOST_TEST(heap->stats()->live_blocks == 0u);
}

namespace {

// Random alloc/check/free of its own blocks; false on damaged contents.
bool churn(alloy::Allocator a, unsigned seed, int rounds) {
  std::mt19937 rng(seed);
  std::vector<std::span<std::byte>> mine;
  for (int i = 0; i < rounds; ++i) {
    if (!mine.empty() && (rng() % 2 == 0 || mine.size() > 40)) {
      std::size_t k = rng() % mine.size();
      if (!intact(mine[k].data())) return false;
      a.free(mine[k]);
      mine[k] = mine.back();
      mine.pop_back();
      continue;
    }
    std::uint32_t len = static_cast<std::uint32_t>(sizeof(Record) + rng() % 700);
    auto b = a.alloc<std::byte>(len);
    if (!b) continue;
    fill(b->data(), seed, static_cast<std::uint32_t>(i), len);
    mine.push_back(*b);
  }
  for (auto b : mine) {
    if (!intact(b.data())) return false;
    a.free(b);
  }
  return true;
}

}  // namespace

BOOST_AUTO_TEST_CASE(threads_of_several_processes_together) {
  UniqueName name("threads");
  auto heap = SharedHeap::create(name.get(), 4 << 20);
  BOOST_REQUIRE(heap.ok());
  auto run_threads = [](alloy::Allocator a, unsigned base_seed) {
    std::atomic<int> bad{0};
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < 3; ++t) {
      threads.emplace_back([&, t] {
        if (!churn(a, base_seed + t, 1500)) bad.fetch_add(1);
      });
    }
    for (auto& th : threads) th.join();
    return bad.load();
  };
  std::vector<pid_t> pids;
  for (unsigned c = 0; c < 2; ++c) {
    pids.push_back(spawn([&, c] {
      auto h = SharedHeap::attach(name.get());
      CHILD_CHECK(h.ok());
      CHILD_CHECK(run_threads(h->allocator(), 100 * (c + 1)) == 0);
      h->detach();
      return 0;
    }));
  }
  BOOST_TEST(run_threads(heap->allocator(), 1000) == 0);
  for (pid_t pid : pids) BOOST_TEST(wait_child(pid) == 0);
  auto v = heap->verify();
  BOOST_REQUIRE_MESSAGE(v.ok(), v.error().what());
  auto s = heap->stats();
  BOOST_TEST(s->live_blocks == 0u);
  BOOST_TEST(s->free_blocks == 1u);
  BOOST_TEST(s->allocs == s->frees);
}

// Attaching while another process is creating: only "not found" or "not
// ready" until the heap is published, then success; never a crash or a
// half-initialised heap.
BOOST_AUTO_TEST_CASE(attach_races_with_create) {
  UniqueName name("race");
  pid_t pid = spawn([&] {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      auto h = SharedHeap::attach(name.get());
      if (h) {
        CHILD_CHECK(h->verify().ok());
        auto b = h->allocator().alloc<int>(4);
        CHILD_CHECK(b.ok());
        h->allocator().free(*b);
        h->detach();
        return 0;
      }
      auto code = h.error().code;
      CHILD_CHECK(code == alloy::SharedHeapErrc::kNotFound ||
                  code == alloy::SharedHeapErrc::kNotReady);
    }
    return 3;  // never saw it
  });
  ::usleep(2000);
  auto heap = SharedHeap::create(name.get(), 8 << 20);
  BOOST_REQUIRE(heap.ok());
  BOOST_TEST(wait_child(pid) == 0);
}
