// alloy::Segregator — requests up to a size threshold go to one allocator,
// larger ones to another (e.g. a pool for small nodes, pages for buffers).
//
// The length decides everything: alloc sends len <= threshold to `small`,
// the rest to `large`; free is routed by the block's length, which the handle
// always passes (sized free), so routing is exact with no lookup. resize and
// remap stay on one side: across the threshold they return false/null, and
// the caller's realloc moves the block (alloc on the other side, copy, free).
//
// Size feedback: alloc_at_least reports the chosen side's usable length,
// capped at the threshold on the small side, so any length the freed-length
// rule allows still names the side that made the block.
//
// Wrong frees: routing trusts the length, so a free is passed to the side
// its length names and gets what that child promises. In checked builds (no
// NDEBUG, or a sanitizer) a free whose side answers owns() with kNo while
// the other side answers kYes (a wrong size across the threshold) is
// refused, counted (refused_frees()) and reported instead of reaching the
// wrong child. Release builds, and children that cannot answer owns, pass it
// on: give each side a child that checks ownership (pools, block allocator,
// arena) or put the DebugAllocator in front. Its own owns is kYes if either
// side says so, kNo if both do.
//
// Cost: one compare (two for resize/remap) plus one indirect call to the
// chosen child; checked builds add two owns calls to each free. Thread safety: as the two children.
//
// Example:
//   alloy::Segregator seg(256, small_pool.allocator(), alloy::page_allocator());
//   alloy::Allocator a = seg.allocator();
//   auto node = a.alloc<std::byte>(48);        // small_pool
//   auto image = a.alloc<std::byte>(1 << 20);  // pages
//   a.free(*node); a.free(*image);             // each back to its own side
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/alloc_iface/make_vtable.h"

namespace alloy {

class Segregator {
 public:
  Segregator(std::size_t threshold, Allocator small, Allocator large)
      : threshold_(threshold), small_(small), large_(large) {}
  Segregator(const Segregator&) = delete;
  Segregator& operator=(const Segregator&) = delete;

  // The handle; valid while this object lives.
  Allocator allocator() { return Allocator{this, &vtable_for<Segregator>}; }
  std::size_t threshold() const { return threshold_; }
  Allocator small() const { return small_; }
  Allocator large() const { return large_; }
  // Frees refused because their length named the side that does not own
  // them (checked builds; see the header comment).
  std::size_t refused_frees() const { return refused_.load(std::memory_order_relaxed); }

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

  bool is_small(std::size_t len) const { return len <= threshold_; }
  const Allocator& side(std::size_t len) const { return is_small(len) ? small_ : large_; }

  const std::size_t threshold_;
  const Allocator small_;
  const Allocator large_;
  std::atomic<std::size_t> refused_{0};
};

}  // namespace alloy
