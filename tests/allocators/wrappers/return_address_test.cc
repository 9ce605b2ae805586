// Wrappers pass the ret_addr they were given to their child unchanged: each
// site below makes calls through a wrapper's handle over a RecordingAllocator
// (alloc, a realloc that takes resize + remap + alloc + free, a shrink, a
// free), and every call reaching the child must carry an address inside the
// site (found with dladdr). The last sites stack an Arena and a MemoryPool on
// a chain of wrappers: the chunk the first block makes names the user's line.
// Built twice: fastbuild (return_address_test) and -O2
// (return_address_opt_test).
#define BOOST_TEST_MODULE wrappers_return_address
#include <boost/test/unit_test.hpp>

#include <cstddef>
#include <cstdint>
#include <span>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/allocators/arena.h"
#include "alloy/allocators/memory_pool.h"
#include "alloy/allocators/wrappers/counting_allocator.h"
#include "alloy/allocators/wrappers/failing_allocator.h"
#include "alloy/allocators/wrappers/fallback_allocator.h"
#include "alloy/allocators/wrappers/limit_allocator.h"
#include "alloy/allocators/wrappers/segregator.h"
#include "alloy/allocators/wrappers/thread_safe_allocator.h"
#include "tests/support/recording_allocator.h"
#include "tests/support/return_address.h"

using alloy::Allocator;
using alloy::Alignment;
using alloy::CountingAllocator;
using alloy::LimitAllocator;
using alloy::ThreadSafeAllocator;
using alloy::testing::escape;
using alloy::testing::expect_calls_in;
using alloy::testing::RecordingAllocator;

namespace {

// The same calls through any handle, all from the site that inlines this.
[[gnu::always_inline]] inline void use(Allocator a) {
  std::span<int> s = a.alloc<int>(16).value();
  escape(s.data());
  s = a.realloc(s, 4096).value();  // the recorder refuses resize and remap
  escape(s.data());
  if (a.resize(s, 100)) s = s.first(100);
  escape(s.data());
  a.free(s);
  escape(&a);
}

struct TwoRecorders {
  RecordingAllocator rec;      // checked
  RecordingAllocator primary;  // refuses everything
};

}  // namespace

SITE void site_counting_shared(RecordingAllocator& rec) {
  CountingAllocator c(rec.allocator());
  use(c.allocator());
}
SITE void site_counting_single(RecordingAllocator& rec) {
  CountingAllocator c(rec.allocator(), CountingAllocator::Threading::kSingleThread);
  use(c.allocator());
}
SITE void site_limit_shared(RecordingAllocator& rec) {
  LimitAllocator l(rec.allocator(), 1 << 20);
  use(l.allocator());
}
SITE void site_limit_single(RecordingAllocator& rec) {
  LimitAllocator l(rec.allocator(), 1 << 20, LimitAllocator::Threading::kSingleThread);
  use(l.allocator());
}
SITE void site_failing(RecordingAllocator& rec) {
  alloy::FailingAllocator f(rec.allocator());
  use(f.allocator());
}
SITE void site_thread_safe_absl(RecordingAllocator& rec) {
  ThreadSafeAllocator t(rec.allocator());
  use(t.allocator());
}
SITE void site_thread_safe_std(RecordingAllocator& rec) {
  ThreadSafeAllocator t(rec.allocator(), ThreadSafeAllocator::Lock::kStdMutex);
  use(t.allocator());
}
SITE void site_segregator(RecordingAllocator& rec) {
  alloy::Segregator s(256, rec.allocator(), rec.allocator());
  use(s.allocator());
}
SITE void site_stack_fallback(RecordingAllocator& rec) {
  alloy::StackFallback<32> s(rec.allocator());  // 64 bytes do not fit inline
  use(s.allocator());
}
SITE void site_fallback(TwoRecorders& r) {
  alloy::Owner never{[](const void*, const void*) { return false; }, nullptr};
  alloy::FallbackAllocator f(r.primary.allocator(), never, r.rec.allocator());
  use(f.allocator());
}
SITE void site_arena_over_chain(RecordingAllocator& rec) {
  ThreadSafeAllocator t(rec.allocator());
  CountingAllocator c(t.allocator());
  LimitAllocator l(c.allocator(), 1 << 20);
  alloy::FailingAllocator f(l.allocator());
  alloy::Segregator s(1 << 16, f.allocator(), f.allocator());
  alloy::Arena arena(s.allocator(),
                     {.first_chunk = 4096, .ceiling = alloy::kNoCeiling, .huge_pages = false});
  escape(arena.allocator().alloc<int>(16).value().data());  // the first chunk
  escape(arena.alloc_inline(10000));                         // a second one
}
SITE void site_pool_over_chain(RecordingAllocator& rec) {
  CountingAllocator c(rec.allocator(), CountingAllocator::Threading::kSingleThread);
  LimitAllocator l(c.allocator(), 1 << 20, LimitAllocator::Threading::kSingleThread);
  alloy::MemoryPool<std::uint64_t> pool(l.allocator(), {.first_slab_nodes = 2,
                                                        .max_slab_nodes = 64, .capacity = 0});
  escape(pool.allocator().alloc<std::uint64_t>(1).value().data());  // the first slab
  escape(pool.create(1).value());
  escape(pool.create(2).value());  // a second slab
}

BOOST_AUTO_TEST_CASE(wrappers_forward_the_users_call) {
  RecordingAllocator rec;
  rec.allow_resize = false;
  rec.allow_remap = false;
  expect_calls_in(rec, site_counting_shared, "CountingAllocator (shared)", 2);
  expect_calls_in(rec, site_counting_single, "CountingAllocator (single thread)", 2);
  expect_calls_in(rec, site_limit_shared, "LimitAllocator (shared)", 2);
  expect_calls_in(rec, site_limit_single, "LimitAllocator (single thread)", 2);
  expect_calls_in(rec, site_failing, "FailingAllocator", 2);
  expect_calls_in(rec, site_thread_safe_absl, "ThreadSafeAllocator (absl)", 2);
  expect_calls_in(rec, site_thread_safe_std, "ThreadSafeAllocator (std)", 2);
  expect_calls_in(rec, site_segregator, "Segregator", 2);
  expect_calls_in(rec, site_stack_fallback, "StackFallback", 2);
  TwoRecorders r;
  r.rec.allow_resize = r.rec.allow_remap = false;
  r.primary.refuse(true);
  expect_calls_in(r.rec, site_fallback, r, "FallbackAllocator", 2);
  BOOST_TEST(r.rec.live_bytes == 0u);
  BOOST_TEST(rec.live_bytes == 0u);
}

BOOST_AUTO_TEST_CASE(allocators_over_wrappers_name_the_users_call) {
  RecordingAllocator rec;
  expect_calls_in(rec, site_arena_over_chain, "Arena over a wrapper chain", 2);
  expect_calls_in(rec, site_pool_over_chain, "MemoryPool over a wrapper chain", 2);
  BOOST_TEST(rec.live_bytes == 0u);
}
