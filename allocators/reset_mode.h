// alloy::ResetMode — how much memory a reset keeps (arenas, pools, virtual arenas).
//
// Why: a reset that frees everything makes the next burst pay for fresh
// memory again; one that keeps everything pins the high-water mark forever.
// The three modes (as in Zig's ArenaAllocator) let the owner choose:
//   free_all()             give every byte back to the child allocator
//   retain_capacity()      keep what is held now, ready for the next round
//   retain_with_limit(n)   keep at most n bytes (reset() says if it kept them)
//
// Cost: a value of two words. Thread safety: a value type.
//
// Example:
//   alloy::Arena arena(alloy::page_allocator());
//   for (const Request& r : requests) {
//     serve(arena.allocator(), r);
//     arena.reset(alloy::ResetMode::retain_with_limit(1 << 20));
//   }
#pragma once

#include <cstddef>

namespace alloy {

struct ResetMode {
  enum class Kind : unsigned char { kFreeAll, kRetainCapacity, kRetainWithLimit };

  Kind kind = Kind::kRetainCapacity;
  std::size_t limit = 0;  // bytes; only for kRetainWithLimit

  static constexpr ResetMode free_all() { return {Kind::kFreeAll, 0}; }
  static constexpr ResetMode retain_capacity() { return {Kind::kRetainCapacity, 0}; }
  static constexpr ResetMode retain_with_limit(std::size_t bytes) {
    return {Kind::kRetainWithLimit, bytes};
  }
};

}  // namespace alloy
