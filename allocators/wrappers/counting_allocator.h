// alloy::CountingAllocator — counts what passes through any child allocator.
//
// Live blocks, live bytes, the peak of live bytes, and the number of alloc,
// resize, remap and free calls with how many of them the child refused.
// `stats()` takes a snapshot that prints with fmt ("{}"). Bytes are the
// lengths callers asked for, not what the child rounded them up to.
//
// Cost: a handful of relaxed atomic adds (plus a compare-and-swap when a new
// peak is reached) around one indirect call to the child.
// Thread safety: as the child. The counters are atomic, so a thread-safe child
// stays thread-safe; a snapshot taken while other threads allocate may mix
// counts from before and after a call, but each field is exact once quiet.
//
// Example:
//   alloy::CountingAllocator counting(alloy::c_allocator());
//   alloy::Allocator a = counting.allocator();
//   auto v = a.alloc<int>(100);
//   fmt::print("{}\n", counting.stats());  // live 1 blocks / 400 B, peak 400 B, ...
//   if (v) a.free(*v);
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include <fmt/format.h>

#include "alloc_iface/allocator.h"

namespace alloy {

struct CountingStats {
  std::size_t live_blocks = 0;  // allocated and not yet freed
  std::size_t live_bytes = 0;
  std::size_t peak_bytes = 0;   // highest live_bytes since construction/reset
  std::size_t allocs = 0;       // alloc calls, including refused ones
  std::size_t alloc_failures = 0;
  std::size_t resizes = 0;
  std::size_t resize_failures = 0;
  std::size_t remaps = 0;
  std::size_t remap_failures = 0;
  std::size_t frees = 0;

  friend bool operator==(const CountingStats&, const CountingStats&) = default;
};

class CountingAllocator {
 public:
  explicit CountingAllocator(Allocator child) : child_(child) {}
  CountingAllocator(const CountingAllocator&) = delete;
  CountingAllocator& operator=(const CountingAllocator&) = delete;

  // The handle; valid while this object lives.
  Allocator allocator() { return Allocator{this, &kVTable}; }
  Allocator child() const { return child_; }

  CountingStats stats() const;
  std::size_t live_blocks() const { return live_blocks_.load(std::memory_order_relaxed); }
  std::size_t live_bytes() const { return live_bytes_.load(std::memory_order_relaxed); }
  std::size_t peak_bytes() const { return peak_bytes_.load(std::memory_order_relaxed); }

  // Zeroes the call totals and sets the peak to the current live bytes; live
  // counts stay (the blocks are still out there).
  void reset_totals();

 private:
  static void* do_alloc(void* ctx, std::size_t len, Alignment alignment,
                        std::uintptr_t ret_addr);
  static bool do_resize(void* ctx, Bytes memory, Alignment alignment,
                        std::size_t new_len, std::uintptr_t ret_addr);
  static void* do_remap(void* ctx, Bytes memory, Alignment alignment,
                        std::size_t new_len, std::uintptr_t ret_addr);
  static void do_free(void* ctx, Bytes memory, Alignment alignment,
                      std::uintptr_t ret_addr);
  static constexpr VTable kVTable = {do_alloc, do_resize, do_remap, do_free};

  void add_live(std::size_t bytes);
  void change_live(std::size_t old_len, std::size_t new_len);

  Allocator child_;
  std::atomic<std::size_t> live_blocks_{0};
  std::atomic<std::size_t> live_bytes_{0};
  std::atomic<std::size_t> peak_bytes_{0};
  std::atomic<std::size_t> allocs_{0};
  std::atomic<std::size_t> alloc_failures_{0};
  std::atomic<std::size_t> resizes_{0};
  std::atomic<std::size_t> resize_failures_{0};
  std::atomic<std::size_t> remaps_{0};
  std::atomic<std::size_t> remap_failures_{0};
  std::atomic<std::size_t> frees_{0};
};

}  // namespace alloy

// "{}" prints one line: live blocks/bytes, peak, then each call total with its
// failures.
template <>
struct fmt::formatter<alloy::CountingStats> {
  constexpr auto parse(format_parse_context& ctx) -> decltype(ctx.begin()) {
    return ctx.begin();  // no format spec; fmt rejects anything before '}'
  }
  template <class FormatContext>
  auto format(const alloy::CountingStats& s, FormatContext& ctx) const -> decltype(ctx.out()) {
    return fmt::format_to(ctx.out(),
                          "live {} blocks / {} B, peak {} B; alloc {} ({} failed), "
                          "resize {} ({} failed), remap {} ({} failed), free {}",
                          s.live_blocks, s.live_bytes, s.peak_bytes, s.allocs,
                          s.alloc_failures, s.resizes, s.resize_failures, s.remaps,
                          s.remap_failures, s.frees);
  }
};
