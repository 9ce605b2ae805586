// alloy::VirtualArena — one huge reserved address range, committed on demand.
//
// The constructor reserves (default) 64 GiB of address space with
// PROT_NONE | MAP_NORESERVE: no memory, no swap, just addresses. Allocation
// bumps a pointer; when it crosses the committed end, the next stretch is
// made readable/writable with mprotect (rounded up to the commit granule).
// Because the range never moves, every pointer stays valid for the arena's
// life and the last allocation grows in place (resize and remap) up to the
// whole reservation — a vector of any size without a copy. reset() rewinds;
// what the ResetMode does not keep is decommitted (madvise DONTNEED, then
// PROT_NONE), so its pages go back to the kernel.
//
// Wrong frees, caught in every build: a pointer outside the reservation
// (foreign), and a block that reaches at or above the cursor (freed, rewound
// or reset already: a double free; or longer than was handed out). They are
// REFUSED (nothing moves), counted in refused_frees() and reported on stderr
// with the caller's address. Not caught (no headers to tell): an interior
// pointer or a short length that happens to end at the cursor rewinds to it,
// and a double free after the same place was handed out again frees the new
// block. Frees of older blocks are no-ops either way.
//
// Cost: alloc is a pointer bump; crossing into uncommitted space costs one
// mprotect; reset one madvise + mprotect. If the reservation fails (e.g.
// RLIMIT_AS), ok() is false and every alloc returns null.
// Thread safety: none.
//
// Example:
//   alloy::VirtualArena va;                                  // 64 GiB reserved
//   auto log = va.allocator().alloc<char>(4096);
//   for (...) log = va.allocator().realloc(*log, log->size() * 2);  // never moves
//   va.reset(alloy::ResetMode::free_all());                  // pages returned
#pragma once

#include <cstddef>
#include <cstdint>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/allocators/bump_cursor.h"
#include "alloy/allocators/reset_mode.h"

namespace alloy {

class VirtualArena {
 public:
  struct Options {
    std::size_t reserve = std::size_t{64} << 30;  // address space to reserve
    std::size_t commit_granule = 64 * 1024;        // commit in steps of this
  };

  VirtualArena() : VirtualArena(Options{}) {}
  explicit VirtualArena(Options options);
  ~VirtualArena();  // unmaps the whole reservation
  VirtualArena(const VirtualArena&) = delete;
  VirtualArena& operator=(const VirtualArena&) = delete;

  // False when the reservation failed; the arena then serves nothing.
  bool ok() const { return base_ != 0; }

  Allocator allocator();

  [[gnu::always_inline]] inline void* alloc_inline(
      std::size_t len, std::size_t align = alignof(std::max_align_t)) {
    if (void* p = bump_take(cur_, committed_end_, len, align)) [[likely]] return p;
    return alloc_slow(len, align);
  }

  // The last allocation grows/shrinks in place up to the reservation;
  // older blocks: grow fails, shrink is a no-op success.
  bool resize_last(Bytes memory, std::size_t new_len);
  // A refused free is reported with the caller's call (ALLOY_HELPER), or
  // `ret_addr`.
  ALLOY_HELPER void free_last(Bytes memory) { free_last(memory, ALLOY_RETURN_ADDRESS()); }
  void free_last(Bytes memory, std::uintptr_t ret_addr);
  std::size_t refused_frees() const { return refused_; }

  // Rewinds to empty. free_all decommits everything, retain_capacity keeps
  // the committed pages, retain_with_limit(n) keeps the first n bytes
  // (rounded up to pages) committed. Always succeeds (returns true).
  bool reset(ResetMode mode = ResetMode::free_all());

  std::size_t used() const { return cur_ - base_; }
  std::size_t committed() const { return committed_end_ - base_; }
  std::size_t reserved() const { return reserved_; }
  bool owns(const void* p) const {
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    return a >= base_ && a < base_ + reserved_;
  }

 private:
  [[gnu::noinline]] void* alloc_slow(std::size_t len, std::size_t align);
  bool commit_to(std::uintptr_t end);

  std::uintptr_t base_ = 0;
  std::size_t reserved_ = 0;
  std::size_t granule_;
  std::uintptr_t cur_ = 0;
  std::uintptr_t committed_end_ = 0;
  std::size_t refused_ = 0;
};

}  // namespace alloy
