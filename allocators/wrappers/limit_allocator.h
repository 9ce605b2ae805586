// alloy::LimitAllocator — a hard ceiling, in bytes, over any child allocator.
//
// Bytes in use are the lengths callers hold (what they asked for, not what
// the child rounds up to). An alloc, or a growing resize/remap, that would
// take the total above the ceiling returns null/false without calling the
// child: nothing changes, and the caller may free something and retry.
// alloy::kNoCeiling (alloc_iface/ceiling.h) is none, as for every cappable
// allocator. `set_ceiling` moves the ceiling at run time; lowering it below what is in
// use keeps existing blocks and refuses new ones until enough are freed.
//
// Optional entries are forwarded: alloc_at_least reserves the asked length,
// then the child's extra if the ceiling has room for it (else it reports the
// asked length); alloc_zeroed is an alloc; owns is the child's.
//
// Wrong frees: the limit keeps no per-block record, so it trusts the lengths
// it is given and passes frees on to the child, which checks ownership
// (whatever the child promises for a foreign or double free holds through
// the limit). The one wrong free it can see, in every build, is one longer
// than the bytes counted as in use (a foreign block, or a wrong size): it is
// REFUSED — not passed to the child, used() unchanged — counted
// (refused_frees()), kept (last_wrong_free()) and reported on stderr with the
// caller's address. The counter never wraps: should racing wrong frees still
// outrun it, it stops at zero and that is reported too. Not caught: a foreign
// or double free that fits within used() lowers it by that length.
//
// Cost: one compare-and-swap to reserve (one more to give it back if the
// child refuses) around one indirect call to the child; free is one load (the
// wrong-free check) and one compare-and-swap (a sub that cannot wrap).
// Constructed with Threading::kSingleThread these become plain loads and
// stores (several times cheaper; figures in bench/README.md), for children
// one thread uses.
// Thread safety: as the child (kShared, the default). The accounting is
// lock-free and never lets concurrent callers overshoot the ceiling; a caller
// racing with a child failure may see a refusal that a moment later would
// have succeeded. kSingleThread: one thread at a time; the getters and
// set_ceiling may still be called from anywhere.
//
// Example:
//   alloy::LimitAllocator capped(alloy::c_allocator(), 1 << 20);  // 1 MiB
//   alloy::Allocator a = capped.allocator();
//   auto big = a.alloc<std::byte>(2 << 20);        // refused: over the ceiling
//   auto ok = a.alloc<std::byte>(4096);            // fine: capped.used() == 4096
//   capped.set_ceiling(8 << 20);                   // raised at run time
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/allocators/wrappers/threading.h"
#include "alloy/allocators/wrong_free.h"

namespace alloy {

class LimitAllocator {
 public:
  // alloy::Threading (threading.h), also spelled LimitAllocator::Threading.
  using Threading = alloy::Threading;

  LimitAllocator(Allocator child, std::size_t ceiling_bytes,
                 Threading threading = Threading::kShared)
      : child_(child), threading_(threading), ceiling_(ceiling_bytes) {}
  LimitAllocator(const LimitAllocator&) = delete;
  LimitAllocator& operator=(const LimitAllocator&) = delete;

  // The handle; valid while this object lives.
  Allocator allocator() {
    return Allocator{this, threading_ == Threading::kShared ? &kSharedVTable
                                                            : &kSingleThreadVTable};
  }
  Allocator child() const { return child_; }
  Threading threading() const { return threading_; }

  std::size_t ceiling() const { return ceiling_.load(std::memory_order_relaxed); }
  // Raises or lowers the ceiling; blocks already out stay valid either way.
  void set_ceiling(std::size_t ceiling_bytes) {
    ceiling_.store(ceiling_bytes, std::memory_order_relaxed);
  }

  // Bytes currently held by callers (may exceed the ceiling after lowering it).
  std::size_t used() const { return used_.load(std::memory_order_relaxed); }
  // Bytes that may still be taken; 0 when at or over the ceiling.
  std::size_t remaining() const;
  // Highest `used()` seen.
  std::size_t peak() const { return peak_.load(std::memory_order_relaxed); }
  // Requests refused because of the ceiling (not those the child refused).
  std::size_t refusals() const { return refusals_.load(std::memory_order_relaxed); }
  // Wrong frees refused (longer than used()), and the last one.
  std::size_t refused_frees() const { return log_.count(); }
  WrongFreeRecord last_wrong_free() const { return log_.last(); }
  // stderr reports are on by default; tests of the refusal path may mute them.
  void set_report_to_stderr(bool on) { log_.set_report(on); }

 private:
  template <bool kShared>
  struct Ops;  // the vtable functions, one set per Threading
  static const VTable kSharedVTable;
  static const VTable kSingleThreadVTable;

  Allocator child_;
  Threading threading_;
  std::atomic<std::size_t> ceiling_;
  std::atomic<std::size_t> used_{0};
  std::atomic<std::size_t> peak_{0};
  std::atomic<std::size_t> refusals_{0};
  WrongFreeLog log_;
};

}  // namespace alloy
