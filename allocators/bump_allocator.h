// alloy::BumpAllocator — a pointer bump over a buffer the caller owns.
//
// The simplest allocator there is: alloc aligns a cursor and moves it
// forward; the buffer (stack array, static storage, a block from another
// allocator) is never freed by it. The most recent allocation can grow,
// shrink or be freed in place (the cursor follows it); resize and free on
// older blocks are no-ops (a shrink there reports success, a grow fails).
// reset() forgets everything at once. When the buffer is full alloc returns
// null and nothing changes.
//
// Wrong frees, caught in every build: a pointer outside the buffer
// (foreign), and a block that reaches at or above the cursor (freed, rewound
// or reset already: a double free; or longer than was handed out). They are
// REFUSED (nothing moves), counted in refused_frees() and reported on stderr
// with the caller's address. Not caught (no headers to tell): an interior
// pointer or a short length that happens to end at the cursor rewinds to it,
// and a double free after the same place was handed out again frees the new
// block. Frees of older blocks are no-ops either way.
//
// Cost: alloc_inline is an add, a mask, two compares and a store; through the
// handle add one indirect call. No headers: used() counts block bytes plus
// alignment padding only. Thread safety: none (see ThreadSafeFixedBufferAllocator).
//
// Example:
//   alignas(16) std::byte storage[4096];
//   alloy::BumpAllocator bump(storage);
//   auto line = bump.allocator().dupe(std::string_view("GET / HTTP/1.1"));
//   void* raw = bump.alloc_inline(64, 16);                  // no indirect call
//   bump.reset();                                           // both gone
#pragma once

#include <cstddef>
#include <cstdint>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/allocators/bump_cursor.h"

namespace alloy {

class BumpAllocator {
 public:
  explicit BumpAllocator(Bytes buffer)
      : base_(reinterpret_cast<std::uintptr_t>(buffer.data())),
        cur_(base_),
        end_(base_ + buffer.size()) {}
  BumpAllocator(const BumpAllocator&) = delete;
  BumpAllocator& operator=(const BumpAllocator&) = delete;

  // A handle whose ctx is this allocator; valid while it lives.
  Allocator allocator();

  // `len` (> 0) bytes aligned to `align` (a power of two), or null when full.
  [[gnu::always_inline]] inline void* alloc_inline(
      std::size_t len, std::size_t align = alignof(std::max_align_t)) {
    return bump_take(cur_, end_, len, align);
  }

  // Grows or shrinks the most recent allocation in place; see the header note.
  bool resize(Bytes memory, std::size_t new_len);
  // Rewinds when `memory` is the most recent allocation; an older block is a
  // no-op; a wrong free is refused and reported (see above).
  void free(Bytes memory, std::uintptr_t ret_addr = 0);
  std::size_t refused_frees() const { return refused_; }
  bool is_last(Bytes memory) const {
    return reinterpret_cast<std::uintptr_t>(memory.data()) + memory.size() == cur_;
  }

  void reset() { cur_ = base_; }
  bool owns(const void* p) const {
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    return a >= base_ && a < end_;
  }
  std::size_t used() const { return cur_ - base_; }
  std::size_t capacity() const { return end_ - base_; }
  std::size_t remaining() const { return end_ - cur_; }

 private:
  std::uintptr_t base_;
  std::uintptr_t cur_;
  std::uintptr_t end_;
  std::size_t refused_ = 0;
};

}  // namespace alloy
