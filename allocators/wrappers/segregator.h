// alloy::Segregator — requests up to a size threshold go to one allocator,
// larger ones to another (e.g. a pool for small nodes, pages for buffers).
//
// The length decides everything: alloc sends len <= threshold to `small`,
// the rest to `large`; free is routed by the block's length, which the handle
// always passes (sized free), so routing is exact with no lookup. resize and
// remap stay on one side: across the threshold they return false/null, and
// the caller's realloc moves the block (alloc on the other side, copy, free).
//
// Wrong frees: routing trusts the length, so a free is passed to the side
// its length names and gets what that child promises. A wrong size that
// crosses the threshold reaches the OTHER child (e.g. a pool's node handed to
// munmap), which must refuse it: give each side a child that checks
// ownership (pools, block allocator, arena) or put the DebugAllocator in
// front; the segregator itself checks nothing, in any build.
//
// Cost: one compare (two for resize/remap) plus one indirect call to the
// chosen child. Thread safety: as the two children.
//
// Example:
//   alloy::Segregator seg(256, small_pool.allocator(), alloy::page_allocator());
//   alloy::Allocator a = seg.allocator();
//   auto node = a.alloc<std::byte>(48);        // small_pool
//   auto image = a.alloc<std::byte>(1 << 20);  // pages
//   a.free(*node); a.free(*image);             // each back to its own side
#pragma once

#include <cstddef>
#include <cstdint>

#include "alloy/alloc_iface/allocator.h"

namespace alloy {

class Segregator {
 public:
  Segregator(std::size_t threshold, Allocator small, Allocator large)
      : threshold_(threshold), small_(small), large_(large) {}
  Segregator(const Segregator&) = delete;
  Segregator& operator=(const Segregator&) = delete;

  // The handle; valid while this object lives.
  Allocator allocator() { return Allocator{this, &kVTable}; }
  std::size_t threshold() const { return threshold_; }
  Allocator small() const { return small_; }
  Allocator large() const { return large_; }

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

  bool is_small(std::size_t len) const { return len <= threshold_; }
  const Allocator& side(std::size_t len) const { return is_small(len) ? small_ : large_; }

  const std::size_t threshold_;
  const Allocator small_;
  const Allocator large_;
};

}  // namespace alloy
