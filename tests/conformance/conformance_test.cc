// Every allocator handle in the repo runs the one conformance suite
// (tests/support/conformance.h); each case states the allocator's limits in
// one Capabilities value. A new allocator is one more ALLOY_CONFORMANCE_CASE.
#define BOOST_TEST_MODULE conformance
#include <boost/test/unit_test.hpp>

#include <cstddef>
#include <memory>
#include <memory_resource>
#include <utility>
#include <vector>

#include "alloy/adapters/pmr.h"
#include "alloy/allocators/arena.h"
#include "alloy/allocators/block_allocator.h"
#include "alloy/allocators/bump_allocator.h"
#include "alloy/allocators/c_allocator.h"
#include "alloy/allocators/engine/heap.h"
#include "alloy/allocators/fixed_buffer_allocator.h"
#include "alloy/allocators/memory_pool.h"
#include "alloy/allocators/page_allocator.h"
#include "alloy/allocators/scratch.h"
#include "alloy/allocators/shared_heap/shared_heap.h"
#include "alloy/allocators/stack_allocator.h"
#include "alloy/allocators/virtual_arena.h"
#include "alloy/allocators/wrappers/counting_allocator.h"
#include "alloy/allocators/wrappers/failing_allocator.h"
#include "alloy/allocators/wrappers/fallback_allocator.h"
#include "alloy/allocators/wrappers/limit_allocator.h"
#include "alloy/allocators/wrappers/segregator.h"
#include "alloy/allocators/wrappers/thread_safe_allocator.h"
#include "alloy/debug/debug_allocator.h"
#include "alloy/debug/testing_allocator.h"
#include "tests/support/conformance.h"
#include "tests/support/recording_allocator.h"

namespace {

using alloy::Alignment;
using alloy::Allocator;
using alloy::conformance::Capabilities;
using alloy::conformance::Check;
using alloy::testing::RecordingAllocator;

// Runs `check` on the handle `make(child)` gives, the child being a
// RecordingAllocator; once the allocator is gone every block it took from
// the child must be back (nothing leaked, nothing freed twice).
template <class T, class... Args>
void over_recording(const Check& check, Args&&... args) {
  RecordingAllocator rec;
  {
    T object(rec.allocator(), std::forward<Args>(args)...);
    check(object.allocator());
  }
  BOOST_TEST(rec.live_bytes == 0u);
  BOOST_TEST(rec.allocs == rec.frees);
}

// A heap buffer for the buffer-backed allocators, 64 KiB aligned so the
// sweep's largest alignment fits without wasting half the buffer.
struct Buffer {
  static constexpr std::size_t kSize = 8 << 20;
  std::unique_ptr<std::byte[]> raw{new std::byte[kSize + 64 * 1024]};
  alloy::Bytes bytes() {
    auto p = reinterpret_cast<std::uintptr_t>(raw.get());
    p = (p + 64 * 1024 - 1) & ~std::uintptr_t{64 * 1024 - 1};
    return alloy::Bytes(reinterpret_cast<std::byte*>(p), kSize);
  }
};

constexpr Capabilities kGeneral{};  // any alignment to 64 KiB, any size
constexpr Capabilities kShared{.thread_safe = true};
// std::pmr has no in-place resize: resource_allocator's resize is no_resize.
constexpr Capabilities kPmr{.thread_safe = true, .can_resize = false};
// Regions over a buffer or chunks: exact lengths, ownership by range.
constexpr Capabilities kRegion{.owns = true};
// glibc's malloc_usable_size gives more than asked; under the sanitizers'
// malloc it is the length asked.
#if defined(ALLOY_HAVE_SANITIZER)
constexpr bool kLibcFeedback = false;
#else
constexpr bool kLibcFeedback = true;
#endif
// Wrappers: every optional entry forwarded (zeroed_entry), feedback as the
// child's, owns unknown over c_allocator.
constexpr Capabilities kWrapperOverC{.thread_safe = true, .size_feedback = kLibcFeedback,
                                     .zeroed_entry = true};
constexpr Capabilities kWrapperOverRecording{.zeroed_entry = true};
constexpr Capabilities kEngine{.thread_safe = true, .size_feedback = true, .owns = true};

}  // namespace

// ---- Kernel and libc. ----
ALLOY_CONFORMANCE_CASE(page_allocator,
                       (Capabilities{.thread_safe = true, .size_feedback = true,
                                     .zeroed_entry = true}),
                       [](const Check& check) { check(alloy::page_allocator()); })
ALLOY_CONFORMANCE_CASE(c_allocator,
                       (Capabilities{.thread_safe = true, .size_feedback = kLibcFeedback}),
                       [](const Check& check) { check(alloy::c_allocator()); })

// ---- Buffer and region allocators. ----
ALLOY_CONFORMANCE_CASE(bump_allocator, kRegion, [](const Check& check) {
  Buffer buf;
  alloy::BumpAllocator bump(buf.bytes());
  check(bump.allocator());
})
ALLOY_CONFORMANCE_CASE(fixed_buffer_allocator, kRegion, [](const Check& check) {
  Buffer buf;
  alloy::FixedBufferAllocator fixed(buf.bytes());
  check(fixed.allocator());
})
// Only the last block's bytes come back, so the hammer may run out.
ALLOY_CONFORMANCE_CASE(thread_safe_fixed_buffer_allocator,
                       (Capabilities{.thread_safe = true, .frees_reuse = false, .owns = true}),
                       [](const Check& check) {
                         Buffer buf;
                         alloy::ThreadSafeFixedBufferAllocator fixed(buf.bytes());
                         check(fixed.allocator());
                       })
ALLOY_CONFORMANCE_CASE(arena, kRegion, [](const Check& check) {
  alloy::Arena arena(alloy::page_allocator());
  check(arena.allocator());
})
ALLOY_CONFORMANCE_CASE(arena_over_c, kRegion, [](const Check& check) {
  over_recording<alloy::Arena>(check);
})
ALLOY_CONFORMANCE_CASE(stack_allocator, kRegion, [](const Check& check) {
  Buffer buf;
  alloy::StackAllocator stack(buf.bytes());
  check(stack.allocator());
})
ALLOY_CONFORMANCE_CASE(scratch, kRegion, [](const Check& check) {
  alloy::Scratch scratch;
  check(scratch.allocator());
})
ALLOY_CONFORMANCE_CASE(scratch_small_chunks, kRegion, [](const Check& check) {
  over_recording<alloy::Scratch>(check, std::size_t{4096});
})
ALLOY_CONFORMANCE_CASE(scratch_scope_local, kRegion, [](const Check& check) {
  alloy::ScratchScope scope;
  check(scope.allocator());
})
ALLOY_CONFORMANCE_CASE(virtual_arena, kRegion, [](const Check& check) {
  alloy::VirtualArena va(alloy::VirtualArena::Options{.reserve = std::size_t{1} << 30});
  check(va.allocator());
})

// ---- Pools: blocks up to the node size and alignment. ----
ALLOY_CONFORMANCE_CASE(node_pool, (Capabilities{.max_alignment = 16, .max_len = 96, .size_feedback = true,
                                     .owns = true}),
                       [](const Check& check) {
                         over_recording<alloy::NodePool>(check, std::size_t{96},
                                                         Alignment::from_log2(4));
                       })
ALLOY_CONFORMANCE_CASE(node_pool_bounded,
                       (Capabilities{.max_alignment = 64, .max_len = 256, .size_feedback = true,
                                     .owns = true}),
                       [](const Check& check) {
                         alloy::NodePool pool(alloy::page_allocator(), 256, Alignment::from_log2(6),
                                              alloy::NodePool::Options{.capacity = 512});
                         check(pool.allocator());
                       })
namespace {
struct Node {
  alignas(32) std::byte bytes[160];
};
}  // namespace
ALLOY_CONFORMANCE_CASE(memory_pool,
                       (Capabilities{.max_alignment = alignof(Node), .max_len = sizeof(Node),
                                     .size_feedback = true, .owns = true}),
                       [](const Check& check) {
                         over_recording<alloy::MemoryPool<Node>>(check);
                       })
ALLOY_CONFORMANCE_CASE(block_allocator, (Capabilities{.max_alignment = 256, .max_len = 768, .size_feedback = true,
                                     .owns = true}),
                       [](const Check& check) {
                         Buffer buf;
                         alloy::BlockAllocator blocks(buf.bytes().first(1 << 20), 768);
                         check(blocks.allocator());
                       })

// ---- Wrappers over the C allocator (and over single-threaded children). ----
ALLOY_CONFORMANCE_CASE(counting_allocator, kWrapperOverC, [](const Check& check) {
  alloy::CountingAllocator counting(alloy::c_allocator());
  check(counting.allocator());
})
ALLOY_CONFORMANCE_CASE(counting_allocator_single_thread, kWrapperOverRecording, [](const Check& check) {
  over_recording<alloy::CountingAllocator>(check, alloy::Threading::kSingleThread);
})
ALLOY_CONFORMANCE_CASE(limit_allocator, kWrapperOverC, [](const Check& check) {
  alloy::LimitAllocator capped(alloy::c_allocator(), std::size_t{1} << 30);
  check(capped.allocator());
})
ALLOY_CONFORMANCE_CASE(limit_allocator_single_thread, kWrapperOverRecording, [](const Check& check) {
  over_recording<alloy::LimitAllocator>(check, std::size_t{1} << 30,
                                        alloy::Threading::kSingleThread);
})
ALLOY_CONFORMANCE_CASE(thread_safe_allocator_over_arena,
                       (Capabilities{.thread_safe = true, .zeroed_entry = true, .owns = true}), [](const Check& check) {
  alloy::Arena arena(alloy::page_allocator());
  alloy::ThreadSafeAllocator shared(arena.allocator());
  check(shared.allocator());
})
ALLOY_CONFORMANCE_CASE(thread_safe_allocator_std_mutex, kWrapperOverC, [](const Check& check) {
  alloy::CountingAllocator counting(alloy::c_allocator(), alloy::Threading::kSingleThread);
  alloy::ThreadSafeAllocator shared(counting.allocator(), alloy::ThreadSafeAllocator::Lock::kStdMutex);
  check(shared.allocator());
})
// An Owner override; the c_allocator fallback cannot tell, so owns is mixed.
ALLOY_CONFORMANCE_CASE(fallback_allocator,
                       (Capabilities{.size_feedback = kLibcFeedback, .zeroed_entry = true}),
                       [](const Check& check) {
                         std::byte storage[4096];
                         alloy::FixedBufferAllocator primary(alloy::Bytes(storage, sizeof storage));
                         alloy::FallbackAllocator fb(primary.allocator(), alloy::Owner::of(primary),
                                                     alloy::c_allocator());
                         check(fb.allocator());
                       })
// Routed by the handles' own owns entries: both children answer.
ALLOY_CONFORMANCE_CASE(fallback_allocator_by_owns,
                       (Capabilities{.size_feedback = true, .zeroed_entry = true, .owns = true}),
                       [](const Check& check) {
                         std::byte storage[4096];
                         alloy::FixedBufferAllocator primary(alloy::Bytes(storage, sizeof storage));
                         alloy::FallbackAllocator fb(primary.allocator(),
                                                     alloy::Heap::default_allocator());
                         check(fb.allocator());
                       })
ALLOY_CONFORMANCE_CASE(stack_fallback, kWrapperOverRecording, [](const Check& check) {
  over_recording<alloy::StackFallback<4096>>(check);
})
ALLOY_CONFORMANCE_CASE(segregator,
                       (Capabilities{.size_feedback = kLibcFeedback, .zeroed_entry = true}),
                       [](const Check& check) {
                         alloy::Arena small(alloy::page_allocator());
                         alloy::Segregator seg(256, small.allocator(), alloy::c_allocator());
                         check(seg.allocator());
                       })
// A pool below the threshold (its node size capped there), the engine above.
ALLOY_CONFORMANCE_CASE(segregator_pool_and_heap,
                       (Capabilities{.max_alignment = 16, .size_feedback = true,
                                     .zeroed_entry = true, .owns = true}),
                       [](const Check& check) {
                         alloy::NodePool pool(alloy::page_allocator(), 512, Alignment::from_log2(4));
                         alloy::Segregator seg(256, pool.allocator(),
                                               alloy::Heap::default_allocator());
                         check(seg.allocator());
                       })
ALLOY_CONFORMANCE_CASE(failing_allocator_never_failing, kWrapperOverRecording, [](const Check& check) {
  over_recording<alloy::FailingAllocator>(check);
})

// ---- The engine heap and the shared heap. ----
ALLOY_CONFORMANCE_CASE(heap, kEngine, [](const Check& check) {
  auto heap = alloy::Heap::create();
  BOOST_TEST_REQUIRE(heap.has_value());
  check(heap->allocator());
})
ALLOY_CONFORMANCE_CASE(heap_default_allocator,
                       (Capabilities{.thread_safe = true, .size_feedback = true,
                                     .zeroed_entry = true, .owns = true}),
                       [](const Check& check) { check(alloy::Heap::default_allocator()); })
ALLOY_CONFORMANCE_CASE(shared_heap,
                       (Capabilities{.max_alignment = alloy::SharedHeap::kMaxAlignment,
                                     .thread_safe = true}),
                       [](const Check& check) {
                         auto heap = alloy::SharedHeap::create_anonymous(64 << 20);
                         BOOST_TEST_REQUIRE(heap.ok());
                         check(heap->allocator());
                       })

// ---- Debugging allocators. ----
ALLOY_CONFORMANCE_CASE(debug_allocator, (Capabilities{.zeroed_entry = true, .owns = true}),
                       [](const Check& check) { over_recording<alloy::DebugAllocator>(check); })
// Over the engine: its size classes less the canary are the user's.
ALLOY_CONFORMANCE_CASE(debug_allocator_over_heap,
                       (Capabilities{.thread_safe = true, .size_feedback = true,
                                     .zeroed_entry = true, .owns = true}),
                       [](const Check& check) {
                         alloy::DebugAllocator debug(alloy::Heap::default_allocator());
                         check(debug.allocator());
                         BOOST_TEST(debug.stats().errors == 0u);
                       })
ALLOY_CONFORMANCE_CASE(testing_allocator, (Capabilities{.zeroed_entry = true, .owns = true}),
                       [](const Check& check) {
  over_recording<alloy::TestingAllocator>(check);
})

// ---- std::pmr both ways. ----
ALLOY_CONFORMANCE_CASE(resource_allocator_new_delete, kPmr, [](const Check& check) {
  check(alloy::resource_allocator(std::pmr::new_delete_resource()));
})
ALLOY_CONFORMANCE_CASE(memory_resource_round_trip, kPmr, [](const Check& check) {
  alloy::MemoryResource resource(alloy::c_allocator());
  check(alloy::resource_allocator(&resource));
})
ALLOY_CONFORMANCE_CASE(memory_resource_round_trip_over_recording,
                       (Capabilities{.can_resize = false}), [](const Check& check) {
  RecordingAllocator rec;
  {
    alloy::MemoryResource resource(rec.allocator());
    check(alloy::resource_allocator(&resource));
  }
  BOOST_TEST(rec.live_bytes == 0u);
})
