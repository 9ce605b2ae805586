// Checks that every call a RecordingAllocator saw carries a return address
// inside one "site": a test function that makes calls through a public API.
// dladdr names the function an address lies in, so the test binary must link
// with -rdynamic and each site must be SITE (external, never inlined, cloned
// or folded).
//
// Cost: one dladdr per recorded call. Thread safety: none (tests only).
//
// Example:
//   SITE void site_alloc(RecordingAllocator& rec) {
//     alloy::Arena arena(rec.allocator());
//     escape(arena.alloc_inline(16));
//   }
//   expect_calls_in(rec, site_alloc, "Arena::alloc_inline", 2);  // alloc + free
#pragma once

#include <dlfcn.h>

#include <boost/test/unit_test.hpp>
#include <cstddef>
#include <cstdint>

#include "tests/support/recording_allocator.h"

// A site is one user function: kept whole, never inlined, cloned or folded.
#if defined(__clang__)
#define SITE extern "C" [[gnu::noinline, gnu::used]]
#else
#define SITE extern "C" [[gnu::noipa, gnu::used]]
#endif

namespace alloy::testing {

// Called after each operation, so the operation is never a tail call.
[[gnu::noinline]] inline void escape(const void* p) { asm volatile("" : : "r"(p) : "memory"); }

inline const char* op_name(RecordingAllocator::Op op) {
  switch (op) {
    case RecordingAllocator::Op::kAlloc: return "alloc";
    case RecordingAllocator::Op::kResize: return "resize";
    case RecordingAllocator::Op::kRemap: return "remap";
    case RecordingAllocator::Op::kFree: return "free";
  }
  return "?";
}

// Whether return address `ret_addr` lies in function `fn`.
inline bool address_in(std::uintptr_t ret_addr, const void* fn) {
  Dl_info info{};
  return ret_addr != 0 && dladdr(reinterpret_cast<void*>(ret_addr - 1), &info) != 0 &&
         info.dli_saddr == fn;
}

namespace detail {
// Every call `rec` saw names a place in `site`; returns how many were allocs.
inline std::size_t check_calls_in(const RecordingAllocator& rec, const void* site,
                                  const char* name) {
  std::size_t allocs = 0;
  for (const auto& c : rec.calls) {
    if (c.op == RecordingAllocator::Op::kAlloc) ++allocs;
    Dl_info info{};
    const bool found =
        c.ret_addr != 0 && dladdr(reinterpret_cast<void*>(c.ret_addr - 1), &info) != 0;
    BOOST_TEST(found, name << ": " << op_name(c.op) << " with no known address");
    BOOST_TEST(info.dli_saddr == site,
               name << ": " << op_name(c.op) << " recorded in "
                    << (info.dli_sname != nullptr ? info.dli_sname : "?"));
  }
  return allocs;
}
}  // namespace detail

// Runs site(arg) on a cleared record; then at least `min_allocs` allocs must
// have reached `rec`, and every call that did must name a place in `site`.
template <class Arg>
void expect_calls_in(RecordingAllocator& rec, void (*site)(Arg&), Arg& arg, const char* name,
                     std::size_t min_allocs = 1) {
  rec.calls.clear();
  site(arg);
  const std::size_t allocs = detail::check_calls_in(rec, reinterpret_cast<void*>(site), name);
  BOOST_TEST(allocs >= min_allocs, name << ": " << allocs << " allocs reached the child");
}

// As expect_calls_in, but at least `min_calls` calls of any kind (alloc,
// resize, remap, free) must have reached `rec`.
template <class Arg>
void expect_any_calls_in(RecordingAllocator& rec, void (*site)(Arg&), Arg& arg,
                         const char* name, std::size_t min_calls = 1) {
  rec.calls.clear();
  site(arg);
  BOOST_TEST(rec.calls.size() >= min_calls, name << ": " << rec.calls.size() << " calls");
  detail::check_calls_in(rec, reinterpret_cast<void*>(site), name);
}

inline void expect_calls_in(RecordingAllocator& rec, void (*site)(RecordingAllocator&),
                            const char* name, std::size_t min_allocs = 1) {
  expect_calls_in<RecordingAllocator>(rec, site, rec, name, min_allocs);
}

}  // namespace alloy::testing
