// alloy::Scratch — a reusable per-thread arena for temporaries, with scoped
// checkpoints (ScratchScope) that give back everything allocated inside them.
//
// Scratch::local() is this thread's instance: chunks taken from the page
// allocator the first time and kept for the thread's lifetime, so the
// steady state allocates nothing from the system. A ScratchScope records the
// position on construction and restores it on scope exit (nested scopes
// restore in LIFO order; a restore to a position that an outer scope already
// released is ignored). In debug builds (!NDEBUG) the bytes above a restored
// checkpoint are filled with 0xDB and, under AddressSanitizer, poisoned, so a
// pointer that outlived its scope reads garbage or trips ASan at once.
//
// Cost: alloc is a pointer bump; a scope is two words saved and restored
// (plus the poisoning fill in debug builds). Chunks beyond the current one
// are reused, never freed, until release() or thread exit.
// Thread safety: one Scratch per thread; local() never shares.
// Return addresses: a chunk is asked of the child with the address of the
// user's call that needed it (the ret_addr the handle passed in, or the call
// of alloc_inline); chunks go back with the address of release() or of the
// scope end that destroyed the scratch.
//
// Wrong frees: a block in the current chunk that reaches at or above the
// cursor (freed already, or dropped by a restored checkpoint: a double free
// or a free after its scope; or longer than was handed out) is REFUSED in
// every build; in checked builds (no NDEBUG, or a sanitizer: one walk of the
// chunk list) so is a pointer in a retained chunk past the current one
// (dropped by a restore) or in no chunk at all (foreign). Refused frees
// change nothing, are counted in refused_frees() and reported on stderr with
// the caller's address. Not caught: frees in earlier chunks (no-ops either
// way), an interior pointer or short length that happens to end at the
// cursor (it rewinds there), a double free after the same place was handed
// out again (it frees the new block).
//
// Example:
//   std::string_view render(Allocator out, const Doc& doc) {
//     alloy::ScratchScope scope;                       // this thread's scratch
//     auto tmp = scope.allocator().alloc<char>(4096);  // temporaries ...
//     ... format into tmp, copy the result into `out` ...
//   }                                                  // ... released here
#pragma once

#include <cstddef>
#include <cstdint>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/allocators/bump_cursor.h"
#include "alloy/allocators/internal/chunk_list.h"
#include "alloy/allocators/page_allocator.h"
#include "alloy/base/assert.h"

namespace alloy {

class Scratch {
 public:
  // A position in the scratch; opaque, only for restore().
  struct Checkpoint {
    void* chunk = nullptr;  // null: before the first chunk
    std::uintptr_t cur = 0;
  };

  // This thread's scratch (page-allocator chunks, 64 KiB first).
  static Scratch& local();

  explicit Scratch(Allocator child = page_allocator(), std::size_t first_chunk = 64 * 1024);
  ALLOY_HELPER ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  Allocator allocator();

  // Inlined into the caller (ALLOY_INLINE_ENTRY): a new chunk is asked of
  // the child with the address of the caller's call.
  ALLOY_INLINE_ENTRY void* alloc_inline(std::size_t len,
                                        std::size_t align = alignof(std::max_align_t)) {
    ALLOY_ASSERT_MSG(len != 0, "Scratch::alloc_inline: len must be non-zero");
    if (void* p = bump_take(cur_, end_, len, align)) [[likely]] {
      unpoison(p, len);
      return p;
    }
    return alloc_slow(len, align);
  }

  Checkpoint checkpoint() const { return Checkpoint{current_, cur_}; }
  // Releases everything allocated since `cp` (poisoning it in debug builds).
  // Returns false, changing nothing, if `cp` is not at or below the top.
  bool restore(Checkpoint cp);

  // Returns every chunk to the child (with the caller's address). Only valid
  // with no live scope.
  ALLOY_HELPER void release();

  std::size_t capacity() const;        // usable bytes in all chunks
  std::size_t chunk_count() const;
  bool owns(const void* p) const;

  // Whether restore() fills/poisons released memory in this build.
  static constexpr bool kPoisons =
#ifdef NDEBUG
      false;
#else
      true;
#endif
  static constexpr std::byte kPoisonByte{0xDB};

  bool resize_last(Bytes memory, std::size_t new_len);
  // A refused free is reported with the caller's call (ALLOY_HELPER), or
  // `ret_addr`.
  ALLOY_HELPER void free_last(Bytes memory) { free_last(memory, ALLOY_RETURN_ADDRESS()); }
  void free_last(Bytes memory, std::uintptr_t ret_addr);
  std::size_t refused_frees() const { return refused_; }

 private:
  // Arena's chunk list (allocators/internal/chunk_list.h): chunks after
  // current_ are retained, empty, for reuse.
  using Chunk = internal::Chunk;
  static constexpr std::size_t kHeader = internal::kChunkHeader;

  static void unpoison(void* p, std::size_t len);
  // alloc_inline's slow path: its return address is the caller's call.
  ALLOY_HELPER void* alloc_slow(std::size_t len, std::size_t align);
  struct Entries;  // the handle's table (scratch.cc)
  // A new (or retained) chunk for the block; `ret_addr` goes to the child.
  void* alloc_slow_at(std::size_t len, std::size_t align, std::uintptr_t ret_addr);
  void enter(Chunk* c);
  // Unpoisons and gives back every chunk after `c` (null: every chunk).
  void free_after(Chunk* c, std::uintptr_t ret_addr);
  void release_at(std::uintptr_t ret_addr);
  static std::uintptr_t start_of(const Chunk* c) { return c->begin(); }
  static std::uintptr_t end_of(const Chunk* c) { return c->end(); }

  internal::ChunkList chunks_;  // oldest first
  Chunk* current_ = nullptr;
  std::uintptr_t cur_ = 0;
  std::uintptr_t end_ = 0;
  std::size_t next_size_;
  std::size_t refused_ = 0;
};

// Restores its scratch to where it was at construction when it goes out of scope.
class ScratchScope {
 public:
  explicit ScratchScope(Scratch& scratch = Scratch::local())
      : scratch_(scratch), checkpoint_(scratch.checkpoint()) {}
  ~ScratchScope() { (void)scratch_.restore(checkpoint_); }
  ScratchScope(const ScratchScope&) = delete;
  ScratchScope& operator=(const ScratchScope&) = delete;

  Allocator allocator() { return scratch_.allocator(); }
  Scratch& scratch() { return scratch_; }

 private:
  Scratch& scratch_;
  Scratch::Checkpoint checkpoint_;
};

}  // namespace alloy
