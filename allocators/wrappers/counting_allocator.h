// alloy::CountingAllocator — counts what passes through any child allocator.
//
// Live blocks, live bytes, the peak of live bytes, and the number of alloc,
// resize, remap and free calls with how many of them the child refused.
// `stats()` takes a snapshot that prints with fmt ("{}"). Bytes are the
// lengths callers asked for, not what the child rounded them up to, except
// for alloc_at_least: the child's usable length is reported and counted
// (free such a block with that length, as Vec and StdAllocator do, or the
// difference stays counted as live). alloc_zeroed counts as an alloc; owns
// is the child's.
//
// Wrong frees: the counter keeps no per-block record and passes frees on to
// the child, which checks ownership. The wrong free it can see, in every
// build, is one that would take live bytes or live blocks below zero (a
// foreign block, a double free once nothing is live, a wrong size longer
// than everything live): it is REFUSED — not passed on, nothing counted —
// counted in refused_frees(), kept (last_wrong_free()) and reported on stderr
// with the caller's address. No counter ever wraps (racing wrong frees stop
// live bytes at zero). Not caught: a foreign or double free that fits within
// what is live is counted as a free.
//
// Cost: two relaxed atomic adds per call (plus a compare-and-swap when a new
// peak is reached; a free is five relaxed loads for the wrong-free check, an
// add and a compare-and-swap) around one indirect call to the child. With
// Threading::kSingleThread the adds become plain load + store (several times
// cheaper; figures in bench/README.md), for children only one thread uses.
// Thread safety: as the child (kShared, the default). The counters are
// atomic, so a thread-safe child stays thread-safe; a snapshot taken while
// other threads allocate may mix counts from before and after a call, but
// each field is exact once quiet. kSingleThread: one thread at a time (races
// lose counts but are not undefined behaviour; stats() may be read anywhere).
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

#include "alloy/alloc_iface/allocator.h"
#include "alloy/allocators/wrappers/threading.h"
#include "alloy/allocators/wrong_free.h"

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
  // alloy::Threading (threading.h), also spelled CountingAllocator::Threading.
  using Threading = alloy::Threading;

  explicit CountingAllocator(Allocator child, Threading threading = Threading::kShared)
      : child_(child), threading_(threading) {}
  CountingAllocator(const CountingAllocator&) = delete;
  CountingAllocator& operator=(const CountingAllocator&) = delete;

  // The handle; valid while this object lives.
  Allocator allocator() {
    return Allocator{this, threading_ == Threading::kShared ? &kSharedVTable
                                                            : &kSingleThreadVTable};
  }
  Allocator child() const { return child_; }
  Threading threading() const { return threading_; }

  CountingStats stats() const;
  std::size_t live_blocks() const;
  std::size_t live_bytes() const { return live_bytes_.load(std::memory_order_relaxed); }
  std::size_t peak_bytes() const { return peak_bytes_.load(std::memory_order_relaxed); }
  // Wrong frees refused (more than is live), and the last one.
  std::size_t refused_frees() const { return log_.count(); }
  WrongFreeRecord last_wrong_free() const { return log_.last(); }
  // stderr reports are on by default; tests of the refusal path may mute them.
  void set_report_to_stderr(bool on) { log_.set_report(on); }

  // Zeroes the call totals and sets the peak to the current live bytes; live
  // counts stay (the blocks are still out there). Not while others allocate.
  void reset_totals();

 private:
  template <bool kShared>
  struct Ops;  // the vtable functions, one set per Threading
  static const VTable kSharedVTable;
  static const VTable kSingleThreadVTable;

  Allocator child_;
  Threading threading_;
  // live_blocks = live_at_reset + allocs - alloc_failures - frees: one
  // counter fewer to bump on every call.
  std::atomic<std::size_t> live_at_reset_{0};
  std::atomic<std::size_t> live_bytes_{0};
  std::atomic<std::size_t> peak_bytes_{0};
  std::atomic<std::size_t> allocs_{0};
  std::atomic<std::size_t> alloc_failures_{0};
  std::atomic<std::size_t> resizes_{0};
  std::atomic<std::size_t> resize_failures_{0};
  std::atomic<std::size_t> remaps_{0};
  std::atomic<std::size_t> remap_failures_{0};
  std::atomic<std::size_t> frees_{0};
  WrongFreeLog log_;
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
