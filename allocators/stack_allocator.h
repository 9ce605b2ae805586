// alloy::StackAllocator — LIFO allocation over a caller's buffer, with markers.
//
// Each block is preceded by a 16-byte header holding the top of the stack
// and the start of the block below it, so frees in reverse order rewind
// exactly (alignment padding included), and the top block is known by its
// start — also after an older block was shrunk in place (a no-op that keeps
// its bytes until it is popped). mark() captures the top; unwind(marker) drops everything
// allocated since in one step. A free that is not of the top block — out of
// order, already freed, or not from this buffer — is REFUSED: nothing
// changes, the refusal is counted, remembered (last_error(), with the
// caller's return address) and printed to stderr, instead of silently
// corrupting the stack. The most recent block can grow/shrink in place.
//
// Cost: alloc is an align and a header store; free is one compare and a
// header load. Thread safety: none.
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
  };

  enum class ErrorKind : unsigned char {
    kNone,
    kOutOfOrderFree,  // a live block below the top
    kStaleFree,       // above the top: already freed or unwound
    kForeignFree,     // not inside this stack's buffer
    kBadMarker,       // unwind to a marker above the current top
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

  Marker mark() const { return Marker{top_, top_block_}; }
  // Drops every block allocated after `marker`; a marker above the top is
  // refused and reported (returns false).
  bool unwind(Marker marker, std::uintptr_t ret_addr = ALLOY_RETURN_ADDRESS());
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

  static constexpr std::size_t kNoBlock = SIZE_MAX;

  Bytes buffer_;
  std::size_t top_ = 0;
  std::size_t top_block_ = kNoBlock;  // offset of the top block's data
  std::size_t refused_ = 0;
  Error last_error_;
  bool report_ = true;
};

}  // namespace alloy
