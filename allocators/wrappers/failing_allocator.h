// alloy::FailingAllocator — makes the Nth alloc (and, separately, the Nth
// resize/remap) of any child fail, to test out-of-memory paths.
//
// Every call reaching the handle is numbered from 0. The alloc whose number is
// `fail_alloc_index` returns null without calling the child (alloc_at_least
// and alloc_zeroed are allocs: same numbers, same failures); the same for
// resize/remap (they share one counter, as a remap is a resize that may move)
// and `fail_resize_index`. The return address of the failed call is kept, so a
// test can name the line of code whose failure was not handled. With
// `keep_failing` every call from the index on fails (Zig's behaviour); by
// default only that one call does. Frees always reach the child. Built for
// `check_all_allocation_failures`: run once to count allocs, then once per
// index with that index failing. Wrong frees are counted and passed to the
// child unchanged; it checks nothing itself.
//
// Cost: one relaxed fetch_add and a compare on top of the child's call (two
// more for the byte totals). Thread safety: as the child; the counters are
// atomic, so with concurrent callers each call still gets a unique number.
//
// Example:
//   alloy::FailingAllocator failing(alloy::c_allocator(), {.fail_alloc_index = 2});
//   alloy::Allocator a = failing.allocator();
//   auto x = a.alloc<int>(4), y = a.alloc<int>(4), z = a.alloc<int>(4);
//   assert(x && y && !z && failing.has_induced_failure());
//   report_line(failing.failed_ret_addr());   // where z was asked for
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/alloc_iface/make_vtable.h"

namespace alloy {

class FailingAllocator {
 public:
  static constexpr std::size_t kNever = SIZE_MAX;

  struct Options {
    // 0-based number of the alloc call to fail; kNever = none.
    std::size_t fail_alloc_index = kNever;
    // 0-based number of the resize-or-remap call to fail; kNever = none.
    std::size_t fail_resize_index = kNever;
    // false: only the numbered call fails. true: it and every later one do.
    bool keep_failing = false;
  };

  explicit FailingAllocator(Allocator child) : FailingAllocator(child, Options{}) {}
  FailingAllocator(Allocator child, Options options);
  FailingAllocator(const FailingAllocator&) = delete;
  FailingAllocator& operator=(const FailingAllocator&) = delete;

  // The handle; valid while this object lives (it points at it).
  Allocator allocator() { return Allocator{this, &vtable_for<FailingAllocator>}; }
  Allocator child() const { return child_; }

  // Calls seen so far, including failed ones (induced or from the child).
  std::size_t alloc_count() const { return alloc_count_.load(std::memory_order_relaxed); }
  std::size_t resize_count() const { return resize_count_.load(std::memory_order_relaxed); }
  std::size_t free_count() const { return free_count_.load(std::memory_order_relaxed); }
  // Bytes handed out / given back through successful calls (resize and remap
  // add their growth or their shrinkage).
  std::size_t allocated_bytes() const { return allocated_bytes_.load(std::memory_order_relaxed); }
  std::size_t freed_bytes() const { return freed_bytes_.load(std::memory_order_relaxed); }

  // Whether an alloc (resp. a resize/remap) was made to fail.
  bool has_induced_failure() const { return failed_ret_addr() != 0; }
  bool has_induced_resize_failure() const { return failed_resize_ret_addr() != 0; }
  // Return address passed with the first alloc (resp. resize/remap) this
  // wrapper made fail; 0 if none (1 if that call passed 0 as its address).
  std::uintptr_t failed_ret_addr() const {
    return failed_ret_addr_.load(std::memory_order_relaxed);
  }
  std::uintptr_t failed_resize_ret_addr() const {
    return failed_resize_ret_addr_.load(std::memory_order_relaxed);
  }

  const Options& options() const { return options_; }

  // Zeroes every count and forgets induced failures; keeps (or replaces) the
  // options. Not to be called while other threads use the handle.
  void reset();
  void reset(Options options);

 private:
  ALLOY_VTABLE_ENTRIES;  // the handle's entries (make_vtable.h)
  static void* vt_alloc(void* ctx, std::size_t len, Alignment alignment,
                        std::uintptr_t ret_addr);
  static bool vt_resize(void* ctx, Bytes memory, Alignment alignment,
                        std::size_t new_len, std::uintptr_t ret_addr);
  static void* vt_remap(void* ctx, Bytes memory, Alignment alignment,
                        std::size_t new_len, std::uintptr_t ret_addr);
  static void vt_free(void* ctx, Bytes memory, Alignment alignment,
                      std::uintptr_t ret_addr);
  static Bytes vt_alloc_at_least(void* ctx, std::size_t len, Alignment alignment,
                                 std::uintptr_t ret_addr);
  static void* vt_alloc_zeroed(void* ctx, std::size_t len, Alignment alignment,
                               std::uintptr_t ret_addr);
  static Ownership vt_owns(void* ctx, const void* ptr);

  // Takes the next alloc number (alloc, alloc_at_least and alloc_zeroed share
  // them); true if that call must fail.
  bool alloc_must_fail(std::uintptr_t ret_addr);
  // Takes the next resize/remap number; true if that call must fail.
  bool resize_must_fail(std::uintptr_t ret_addr);
  void count_resize(std::size_t old_len, std::size_t new_len);

  Allocator child_;
  Options options_;
  std::atomic<std::size_t> alloc_count_{0};
  std::atomic<std::size_t> resize_count_{0};
  std::atomic<std::size_t> free_count_{0};
  std::atomic<std::size_t> allocated_bytes_{0};
  std::atomic<std::size_t> freed_bytes_{0};
  std::atomic<std::uintptr_t> failed_ret_addr_{0};
  std::atomic<std::uintptr_t> failed_resize_ret_addr_{0};
};

}  // namespace alloy
