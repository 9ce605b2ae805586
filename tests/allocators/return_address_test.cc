// Every public function of the allocator family that reaches the child
// passes it the address of the user's call: each site below builds an
// allocator over a RecordingAllocator, calls one public entry (the first
// call makes a chunk/slab/object, a later one a second), lets the allocator
// go out of scope, and every child call it caused must carry an address
// inside the site (found with dladdr). Built twice: fastbuild
// (return_address_test) and -O2 (return_address_opt_test), where inlining
// used to move the recorded address into internals or the caller's caller.
// Allocators without a child (bump, fixed buffer, stack, block, virtual
// arena) have nothing to pass on.
#define BOOST_TEST_MODULE family_return_address
#include <boost/test/unit_test.hpp>

#include <cstddef>
#include <cstdlib>
#include <string>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/allocators/arena.h"
#include "alloy/allocators/block_allocator.h"
#include "alloy/allocators/c_allocator.h"
#include "alloy/allocators/memory_pool.h"
#include "alloy/allocators/object_pool.h"
#include "alloy/allocators/scratch.h"
#include "alloy/allocators/stack_allocator.h"
#include "alloy/allocators/virtual_arena.h"
#include "tests/support/capture_stderr.h"
#include "tests/support/recording_allocator.h"
#include "tests/support/return_address.h"

using alloy::Alignment;
using alloy::Arena;
using alloy::MemoryPool;
using alloy::NodePool;
using alloy::ObjectPool;
using alloy::ResetMode;
using alloy::Scratch;
using alloy::ScratchScope;
using alloy::testing::address_in;
using alloy::testing::escape;
using alloy::testing::expect_calls_in;
using alloy::testing::RecordingAllocator;

struct Node {
  int a;
  std::string s;
  explicit Node(int x = 0) : a(x), s(40, 'n') {}
};
struct Pod {  // the arena never runs destructors
  int a;
  int b;
};
struct Big {
  unsigned char bytes[10000];
};

constexpr Arena::Options kSmallChunks{
    .first_chunk = 4096, .ceiling = alloy::kNoCeiling, .huge_pages = false};
constexpr NodePool::Options kSmallSlabs{.first_slab_nodes = 2, .max_slab_nodes = 64,
                                        .capacity = 0};

// --- Arena -------------------------------------------------------------
SITE void site_arena_handle(RecordingAllocator& rec) {
  Arena arena(rec.allocator(), kSmallChunks);
  alloy::Allocator a = arena.allocator();
  escape(a.alloc<int>(16).value().data());       // the first chunk
  escape(a.alloc<char>(10000).value().data());   // a second one
  escape(a.raw_alloc(20000, Alignment::from_log2(6), 0x1));  // the handle's ret_addr wins?
}
SITE void site_arena_handle_only(RecordingAllocator& rec) {
  Arena arena(rec.allocator(), kSmallChunks);
  alloy::Allocator a = arena.allocator();
  escape(a.alloc<int>(16).value().data());
  escape(a.alloc<char>(10000).value().data());
}
SITE void site_arena_alloc_inline(RecordingAllocator& rec) {
  Arena arena(rec.allocator(), kSmallChunks);
  escape(arena.alloc_inline(16));
  escape(arena.alloc_inline(10000, 64));
}
SITE void site_arena_make(RecordingAllocator& rec) {
  Arena arena(rec.allocator(), kSmallChunks);
  escape(arena.make<Pod>(1, 2));
  escape(arena.make<Big>());
}
SITE void site_arena_reset(RecordingAllocator& rec) {
  Arena arena(rec.allocator(), kSmallChunks);
  escape(arena.alloc_inline(16));
  escape(arena.alloc_inline(10000));
  // The child refuses resizes: the arena frees and takes one 6000-byte chunk.
  escape(arena.reset(ResetMode::retain_with_limit(6000)) ? &arena : nullptr);
  escape(arena.reset(ResetMode::free_all()) ? &arena : nullptr);
}

// --- Scratch -----------------------------------------------------------
SITE void site_scratch_handle(RecordingAllocator& rec) {
  Scratch scratch(rec.allocator(), 4096);
  {
    ScratchScope scope(scratch);
    alloy::Allocator a = scope.allocator();
    escape(a.alloc<int>(16).value().data());
    escape(a.alloc<char>(10000).value().data());
  }
  scratch.release();
  escape(scratch.allocator().alloc<int>(16).value().data());
}
SITE void site_scratch_alloc_inline(RecordingAllocator& rec) {
  Scratch scratch(rec.allocator(), 4096);
  escape(scratch.alloc_inline(16));
  escape(scratch.alloc_inline(10000, 64));
  const Scratch::Checkpoint cp = scratch.checkpoint();
  escape(scratch.alloc_inline(40000));  // a third chunk, then dropped for a bigger one
  escape(scratch.restore(cp) ? &scratch : nullptr);
  escape(scratch.alloc_inline(80000));
}

// --- NodePool / MemoryPool ---------------------------------------------
SITE void site_node_pool_handle(RecordingAllocator& rec) {
  NodePool pool(rec.allocator(), 32, Alignment::from_log2(4), kSmallSlabs);
  alloy::Allocator a = pool.allocator();
  for (int i = 0; i < 5; ++i) escape(a.alloc_bytes(32, Alignment::from_log2(4)).value().data());
}
SITE void site_node_pool_acquire(RecordingAllocator& rec) {
  NodePool pool(rec.allocator(), 32, Alignment::from_log2(4), kSmallSlabs);
  for (int i = 0; i < 5; ++i) escape(pool.acquire());
}
SITE void site_node_pool_preheat(RecordingAllocator& rec) {
  NodePool pool(rec.allocator(), 32, Alignment::from_log2(4), kSmallSlabs);
  escape(pool.preheat(3) ? &pool : nullptr);
  escape(pool.preheat(100) ? &pool : nullptr);
  escape(pool.reset(ResetMode::free_all()) ? &pool : nullptr);
  escape(pool.acquire());
}
SITE void site_memory_pool_create(RecordingAllocator& rec) {
  MemoryPool<Node> pool(rec.allocator(), kSmallSlabs);
  Node* nodes[5];
  for (int i = 0; i < 5; ++i) {
    nodes[i] = pool.create(i).value();
    escape(nodes[i]);
  }
  for (Node* n : nodes) escape(pool.destroy(n) ? n : nullptr);
  escape(pool.reset(ResetMode::free_all()) ? &pool : nullptr);
}
SITE void site_memory_pool_allocate(RecordingAllocator& rec) {
  MemoryPool<Node> pool(rec.allocator(), kSmallSlabs);
  for (int i = 0; i < 5; ++i) {
    Node* n = pool.allocate();
    escape(n);
    if (i % 2 == 0) escape(pool.deallocate(n) ? n : nullptr);
  }
}
SITE void site_memory_pool_preheat(RecordingAllocator& rec) {
  MemoryPool<Node> pool(rec.allocator(), kSmallSlabs);
  escape(pool.preheat(3) ? &pool : nullptr);
  escape(pool.preheat(100) ? &pool : nullptr);
  escape(pool.reset(ResetMode::free_all()) ? &pool : nullptr);
  escape(pool.allocator().alloc_bytes(8, Alignment::from_log2(3)).value().data());
}

// --- ObjectPool --------------------------------------------------------
SITE void site_object_pool_get(RecordingAllocator& rec) {
  ObjectPool<Node> pool(rec.allocator());
  Node* a = pool.get().value();
  Node* b = pool.get().value();
  escape(pool.put(a) ? a : nullptr);
  escape(pool.put(b) ? b : nullptr);
  escape(pool.shrink(1) == 1 ? &pool : nullptr);
}
SITE void site_object_pool_preheat(RecordingAllocator& rec) {
  ObjectPool<Node> pool(rec.allocator());
  escape(pool.preheat(3) ? &pool : nullptr);
  escape(pool.shrink(1) == 2 ? &pool : nullptr);
}

BOOST_AUTO_TEST_CASE(arena_passes_the_users_call_to_its_child) {
  RecordingAllocator rec;
  expect_calls_in(rec, site_arena_handle_only, "Arena handle alloc", 2);
  expect_calls_in(rec, site_arena_alloc_inline, "Arena::alloc_inline", 2);
  expect_calls_in(rec, site_arena_make, "Arena::make", 2);
  rec.allow_resize = false;
  expect_calls_in(rec, site_arena_reset, "Arena::reset", 3);
  rec.allow_resize = true;
  BOOST_TEST(rec.live_bytes == 0u);
}

BOOST_AUTO_TEST_CASE(arena_forwards_the_handles_ret_addr_unchanged) {
  // A raw_alloc with an explicit ret_addr: the chunk it makes names that
  // address, not the site and not the arena.
  RecordingAllocator rec;
  rec.calls.clear();
  site_arena_handle(rec);
  bool saw = false;
  for (const auto& c : rec.calls) saw = saw || (c.op == RecordingAllocator::Op::kAlloc &&
                                                c.ret_addr == 0x1);
  BOOST_TEST(saw);
  BOOST_TEST(rec.live_bytes == 0u);
}

BOOST_AUTO_TEST_CASE(scratch_passes_the_users_call_to_its_child) {
  RecordingAllocator rec;
  expect_calls_in(rec, site_scratch_handle, "Scratch handle alloc", 3);
  expect_calls_in(rec, site_scratch_alloc_inline, "Scratch::alloc_inline", 4);
  BOOST_TEST(rec.live_bytes == 0u);
}

BOOST_AUTO_TEST_CASE(pools_pass_the_users_call_to_their_child) {
  RecordingAllocator rec;
  expect_calls_in(rec, site_node_pool_handle, "NodePool handle alloc", 2);
  expect_calls_in(rec, site_node_pool_acquire, "NodePool::acquire", 2);
  expect_calls_in(rec, site_node_pool_preheat, "NodePool::preheat", 3);
  expect_calls_in(rec, site_memory_pool_create, "MemoryPool::create", 2);
  expect_calls_in(rec, site_memory_pool_allocate, "MemoryPool::allocate", 2);
  expect_calls_in(rec, site_memory_pool_preheat, "MemoryPool::preheat", 3);
  BOOST_TEST(rec.live_bytes == 0u);
}

BOOST_AUTO_TEST_CASE(object_pool_passes_the_users_call_to_its_child) {
  RecordingAllocator rec;
  expect_calls_in(rec, site_object_pool_get, "ObjectPool::get", 2);
  expect_calls_in(rec, site_object_pool_preheat, "ObjectPool::preheat", 3);
  BOOST_TEST(rec.live_bytes == 0u);
}

// --- Refused frees name the user's call too ----------------------------
// (Their ret_addr used to be a default argument, ALLOY_RETURN_ADDRESS()
// evaluated in the caller: the caller's caller.)
struct Refusals {
  alignas(64) std::byte buffer[4096];
  alloy::StackAllocator::Marker marker{};
  int local = 0;
};
SITE void site_stack_unwind(Refusals& r, alloy::StackAllocator& stack) {
  escape(stack.unwind(r.marker) ? &r : nullptr);
}
SITE void site_scratch_free_last(Refusals& r, Scratch& scratch) {
  scratch.free_last(alloy::Bytes(reinterpret_cast<std::byte*>(&r.local), sizeof r.local));
  escape(&r);
}
SITE void site_virtual_arena_free_last(Refusals& r, alloy::VirtualArena& arena) {
  arena.free_last(alloy::Bytes(reinterpret_cast<std::byte*>(&r.local), sizeof r.local));
  escape(&r);
}
SITE void site_block_free_block(Refusals& r, alloy::BlockAllocator& blocks) {
  escape(blocks.free_block(&r.local) ? &r : nullptr);
}
SITE void site_block_free_index(Refusals&, alloy::BlockAllocator& blocks) {
  escape(blocks.free_index(std::size_t{1} << 20) ? &blocks : nullptr);
}

namespace {
// The address after "called from 0x" in the last report.
std::uintptr_t reported_address(const std::string& text) {
  const std::size_t at = text.rfind("called from 0x");
  if (at == std::string::npos) return 0;
  return std::strtoull(text.c_str() + at + 14, nullptr, 16);
}
}  // namespace

BOOST_AUTO_TEST_CASE(refused_frees_name_the_users_call) {
  Refusals r;
  alloy::StackAllocator stack(alloy::Bytes(r.buffer, sizeof r.buffer));
  stack.set_report_to_stderr(false);
  escape(stack.allocator().alloc<int>(4).value().data());
  r.marker = stack.mark();
  stack.reset();  // the marker is now above the top
  site_stack_unwind(r, stack);
  BOOST_TEST(stack.refused_count() == 1u);
  BOOST_TEST(address_in(stack.last_error().ret_addr, reinterpret_cast<void*>(site_stack_unwind)));

  alloy::BlockAllocator blocks(alloy::Bytes(r.buffer, sizeof r.buffer), 64);
  {
    alloy::testing::CaptureStderr err;
    site_block_free_block(r, blocks);
    BOOST_TEST(address_in(reported_address(err.text()),
                          reinterpret_cast<void*>(site_block_free_block)),
               err.text());
  }
  {
    alloy::testing::CaptureStderr err;
    site_block_free_index(r, blocks);
    BOOST_TEST(address_in(reported_address(err.text()),
                          reinterpret_cast<void*>(site_block_free_index)),
               err.text());
  }
  BOOST_TEST(blocks.invalid_frees() == 2u);

  Scratch scratch(alloy::c_allocator(), 4096);
  escape(scratch.alloc_inline(16));
  if (alloy::kCheckedFrees) {  // a foreign free is refused in checked builds
    alloy::testing::CaptureStderr err;
    site_scratch_free_last(r, scratch);
    BOOST_TEST(scratch.refused_frees() == 1u);
    BOOST_TEST(address_in(reported_address(err.text()),
                          reinterpret_cast<void*>(site_scratch_free_last)),
               err.text());
  }
  alloy::VirtualArena varena(alloy::VirtualArena::Options{.reserve = 1 << 20,
                                                          .commit_granule = 64 * 1024});
  BOOST_REQUIRE(varena.ok());
  escape(varena.allocator().alloc<int>(4).value().data());
  {  // a foreign free is refused in every build
    alloy::testing::CaptureStderr err;
    site_virtual_arena_free_last(r, varena);
    BOOST_TEST(address_in(reported_address(err.text()),
                          reinterpret_cast<void*>(site_virtual_arena_free_last)),
               err.text());
  }
}
