// alloy::StackAllocator — LIFO allocation over a caller's buffer, with markers.
//
// Each block is preceded by a 24-byte header holding the top of the stack,
// the start of the block below it and the block's serial number, so frees in
// reverse order rewind exactly (alignment padding included), and the top
// block is known by its start — also after an older block was shrunk in
// place (a no-op that keeps its bytes until it is popped). mark() captures
// the top; unwind(marker) drops everything allocated since in one step.
//
// Wrong frees and stale markers are REFUSED, in every build: nothing changes,
// the refusal is counted (refused_count()), remembered (last_error(), with
// the caller's return address) and printed to stderr as one line naming the
// allocator, what was wrong and the return address in hex:
//   - a free of a live block below the top (out of order), of memory above
//     the top (already freed, unwound or reset: a double free), of memory
//     outside the buffer (foreign), of an interior pointer (not the top
//     block's start), or with a length that ends past the top;
//   - unwind() to a marker above the top, or to a marker made stale because
//     the block that was on top at mark() has since been freed, unwound or
//     reset (its serial no longer matches), so a stale marker can never
//     resurrect a freed block or let it be freed twice.
// Not caught (in any build): a double free after the same start was handed
// out again as the new top block is taken as a free of that new block, and a
// free of the top block with a shorter length is accepted (it is how an older
// block shrunk in place is freed). The most recent block can grow/shrink in
// place.
//
// Cost: alloc is an align and a header store; free is one compare and a
// header load; unwind reads one header per block it drops (the walk that
// proves the marker is still on the stack). Thread safety: none.
//
// Example:
//   alloy::StackAllocator stack(buffer);
//   auto m = stack.mark();
//   auto a = stack.allocator().alloc<float>(256);       // temporaries ...
//   auto b = stack.allocator().alloc<int>(64);
//   stack.unwind(m);                                      // ... all gone
#pragma once

#include <cstddef>
#include <cstdint>

#include "alloy/alloc_iface/allocator.h"

namespace alloy {

class StackAllocator {
 public:
  struct Marker {
    std::size_t offset = 0;
    std::size_t top_block = SIZE_MAX;  // start of the top block then
    std::uint64_t serial = 0;          // that block's serial (0: none)
  };

  enum class ErrorKind : unsigned char {
    kNone,
    kOutOfOrderFree,  // a live block below the top
    kStaleFree,       // above the top: already freed or unwound
    kForeignFree,     // not inside this stack's buffer
    kBadMarker,       // unwind to a marker above the current top
    kStaleMarker,     // unwind to a marker whose top block was freed since
    kInteriorFree,    // inside the buffer below the top, not a block start
  };
  struct Error {
    ErrorKind kind = ErrorKind::kNone;
    const void* pointer = nullptr;
    std::size_t length = 0;
    std::uintptr_t ret_addr = 0;  // where the refused call came from
  };

  explicit StackAllocator(Bytes buffer) : buffer_(buffer) {}
  StackAllocator(const StackAllocator&) = delete;
  StackAllocator& operator=(const StackAllocator&) = delete;

  Allocator allocator();

  void* alloc(std::size_t len, Alignment alignment);
  bool resize(Bytes memory, std::size_t new_len);
  // Pops `memory` if it is the top block; otherwise refuses and reports.
  // Returns whether it was freed.
  bool free(Bytes memory, std::uintptr_t ret_addr);

  Marker mark() const;
  // Drops every block allocated after `marker`. A marker above the top, or
  // one made stale (its top block was freed, unwound or reset since), is
  // refused and reported (returns false, nothing changes) with the caller's
  // call (ALLOY_HELPER), or `ret_addr`.
  ALLOY_HELPER bool unwind(Marker marker) { return unwind(marker, ALLOY_RETURN_ADDRESS()); }
  bool unwind(Marker marker, std::uintptr_t ret_addr);
  // Drops every block; every marker taken before is stale afterwards.
  void reset() {
    top_ = 0;
    top_block_ = kNoBlock;
  }

  std::size_t used() const { return top_; }
  std::size_t capacity() const { return buffer_.size(); }
  bool owns(const void* p) const;

  std::size_t refused_count() const { return refused_; }
  const Error& last_error() const { return last_error_; }
  // stderr reports are on by default; tests of the refusal path may mute them.
  void set_report_to_stderr(bool on) { report_ = on; }

 private:
  void refuse(ErrorKind kind, const void* p, std::size_t len, std::uintptr_t ret_addr);
  bool on_stack(const Marker& marker) const;
  std::uint64_t serial_at(std::size_t block) const;

  static constexpr std::size_t kNoBlock = SIZE_MAX;

  Bytes buffer_;
  std::size_t top_ = 0;
  std::size_t top_block_ = kNoBlock;  // offset of the top block's data
  std::uint64_t next_serial_ = 1;     // never reused, so stale markers stay stale
  std::size_t refused_ = 0;
  Error last_error_;
  bool report_ = true;
};

}  // namespace alloy
