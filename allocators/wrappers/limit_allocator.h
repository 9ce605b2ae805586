// alloy::LimitAllocator — a hard ceiling, in bytes, over any child allocator.
//
// Bytes in use are the lengths callers hold (what they asked for, not what
// the child rounds up to). An alloc, or a growing resize/remap, that would
// take the total above the ceiling returns null/false without calling the
// child: nothing changes, and the caller may free something and retry.
// `set_ceiling` moves the ceiling at run time; lowering it below what is in
// use keeps existing blocks and refuses new ones until enough are freed.
//
// Cost: one compare-and-swap to reserve (one more to give it back if the
// child refuses) around one indirect call to the child; free is one atomic sub.
// Thread safety: as the child. The accounting is lock-free and never lets
// concurrent callers overshoot the ceiling; a caller racing with a child
// failure may see a refusal that a moment later would have succeeded.
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

#include "alloc_iface/allocator.h"

namespace alloy {

class LimitAllocator {
 public:
  LimitAllocator(Allocator child, std::size_t ceiling_bytes)
      : child_(child), ceiling_(ceiling_bytes) {}
  LimitAllocator(const LimitAllocator&) = delete;
  LimitAllocator& operator=(const LimitAllocator&) = delete;

  // The handle; valid while this object lives.
  Allocator allocator() { return Allocator{this, &kVTable}; }
  Allocator child() const { return child_; }

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

  // Adds `bytes` to used_ if that stays within the ceiling.
  bool reserve(std::size_t bytes);
  void release(std::size_t bytes) { used_.fetch_sub(bytes, std::memory_order_relaxed); }

  Allocator child_;
  std::atomic<std::size_t> ceiling_;
  std::atomic<std::size_t> used_{0};
  std::atomic<std::size_t> peak_{0};
  std::atomic<std::size_t> refusals_{0};
};

}  // namespace alloy
