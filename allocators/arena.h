// alloy::Arena — many allocations, one free: a chunked bump allocator over a child.
//
// Allocation bumps a pointer inside the current chunk; when a chunk is full
// the arena asks its child for a new one, each twice the size of the last
// (geometric growth keeps the number of child calls logarithmic). Individual
// frees only rewind the most recent allocation; everything else is released
// together by reset() or by the destructor, which walks the chunk list once
// — the cost depends on the number of chunks, never on the number of objects.
// An optional ceiling caps the bytes the arena may take from its child
// (alloy::kNoCeiling, the default, is none; see alloc_iface/ceiling.h); over
// it, alloc returns null and the arena stays usable.
//
// With the page allocator as child, big chunks are backed by transparent huge
// pages when the kernel allows (Options::huge_pages).
//
// Cost: alloc is an align, a compare and a store (alloc_inline, or one
// indirect call through the handle); a new chunk costs one child alloc.
// resize/free act on the last allocation only (grow/shrink/rewind in place)
// and are harmless no-ops on older blocks (a shrink there reports success).
// Thread safety: none; one arena per thread (or wrap it).
//
// Return addresses: a chunk is asked of the child with the address of the
// user's call that needed it (the ret_addr the handle passed in, or the call
// of alloc_inline/make/reset); chunks are given back with the address of the
// reset() or of the scope end that destroyed the arena.
//
// Wrong frees: a block in the current chunk that reaches at or above the
// cursor (freed or rewound already: a double free; freed after reset(); or
// longer than was handed out) is REFUSED in every build; a pointer in none of
// the arena's chunks (foreign) is refused in checked builds (no NDEBUG, or a
// sanitizer: one walk of the chunk list per free of an older block). Refused
// frees change nothing, are counted in refused_frees() and reported on stderr
// with the caller's address. Not caught: a free in an older chunk (a no-op
// either way), an interior pointer or short length that happens to end at the
// cursor (it rewinds there), a double free after the same place was handed
// out again (it frees the new block).
//
// Example:
//   alloy::Arena arena(alloy::page_allocator());
//   alloy::Allocator a = arena.allocator();
//   Node* root = a.create<Node>(1).value_or(nullptr);     // or arena.make<Node>(1)
//   build_tree(a, root);                                   // thousands of nodes
//   arena.reset(alloy::ResetMode::retain_capacity());     // all gone, memory kept
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/alloc_iface/ceiling.h"
#include "alloy/allocators/bump_cursor.h"
#include "alloy/allocators/internal/chunk_list.h"
#include "alloy/allocators/reset_mode.h"
#include "alloy/base/assert.h"

namespace alloy {

class Arena {
 public:
  struct Options {
    std::size_t first_chunk = 4096;  // bytes of the first chunk, header included
    // Max bytes taken from the child; kNoCeiling = no cap. 0 also means no
    // cap for one release (the old spelling, deprecated): say kNoCeiling.
    std::size_t ceiling = kNoCeiling;
    // With the page allocator as child, chunks of 2 MiB or more are 2 MiB
    // aligned and advised MADV_HUGEPAGE: fewer page faults while filling, and
    // dropping the arena unmaps a few huge pages instead of thousands.
    bool huge_pages = true;
  };

  explicit Arena(Allocator child) : Arena(child, Options{}) {}
  Arena(Allocator child, Options options);
  ALLOY_HELPER ~Arena();  // frees every chunk, one child free per chunk
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // A handle whose ctx is this arena; valid while the arena lives.
  Allocator allocator();

  // The fast path: `len` bytes aligned to `align` (a power of two), or null
  // when the child (or the ceiling) refuses a new chunk. `len` > 0. Inlined
  // into the caller (ALLOY_INLINE_ENTRY): a new chunk is asked of the child
  // with the address of the caller's call.
  ALLOY_INLINE_ENTRY void* alloc_inline(std::size_t len,
                                        std::size_t align = alignof(std::max_align_t)) {
    ALLOY_ASSERT_MSG(len != 0, "Arena::alloc_inline: len must be non-zero");
    if (void* p = bump_take(cur_, end_, len, align)) [[likely]] return p;
    return alloc_slow(len, align);
  }

  // Constructs a T in the arena (its destructor is never run by the arena).
  template <class T, class... Args>
  ALLOY_INLINE_ENTRY T* make(Args&&... args) {
    void* p = alloc_inline(sizeof(T), alignof(T));
    return p == nullptr ? nullptr : ::new (p) T(std::forward<Args>(args)...);
  }

  // Releases every allocation. Returns false when it could not keep the
  // capacity the mode asked for (the arena is then empty but still usable).
  // The child calls it makes (a resize, or a new chunk) carry the caller's
  // address.
  ALLOY_HELPER bool reset(ResetMode mode = ResetMode::retain_capacity());

  // Usable bytes in the chunks held now (headers excluded).
  std::size_t query_capacity() const;
  // Bytes taken from the child, headers included (what the ceiling counts).
  std::size_t child_bytes() const { return chunks_.bytes(); }
  std::size_t chunk_count() const;
  // Whether `p` lies inside one of this arena's chunks.
  bool owns(const void* p) const;

  std::size_t refused_frees() const { return refused_; }

  // kNoCeiling when uncapped (also after set_ceiling(0), the deprecated spelling).
  std::size_t ceiling() const { return ceiling_; }
  void set_ceiling(std::size_t bytes) { ceiling_ = bytes == 0 ? kNoCeiling : bytes; }

 private:
  // The handle's entries (make_vtable.h); ctx is the Arena.
  ALLOY_VTABLE_ENTRIES;
  static void* vt_alloc(void* ctx, std::size_t len, Alignment alignment, std::uintptr_t);
  static bool vt_resize(void* ctx, Bytes memory, Alignment, std::size_t new_len,
                        std::uintptr_t);
  static void* vt_remap(void* ctx, Bytes memory, Alignment, std::size_t new_len,
                        std::uintptr_t);
  static void vt_free(void* ctx, Bytes memory, Alignment, std::uintptr_t);
  static Ownership vt_owns(void* ctx, const void* p) {
    return ownership(static_cast<Arena*>(ctx)->owns(p));
  }

 private:
  using Chunk = internal::Chunk;  // the chunk list (allocators/internal/chunk_list.h)
  static constexpr std::size_t kHeader = internal::kChunkHeader;
  static constexpr Alignment kChunkAlignment = Alignment::from_log2(4);

  // alloc_inline's slow path: its return address is the caller's call.
  ALLOY_HELPER void* alloc_slow(std::size_t len, std::size_t align);
  // A new chunk for the block; `ret_addr` goes to the child.
  void* alloc_slow_at(std::size_t len, std::size_t align, std::uintptr_t ret_addr);
  bool add_chunk(std::size_t min_size, std::size_t wanted_size, std::uintptr_t ret_addr);
  void use_chunk(Chunk* c);
  void free_chunks(std::uintptr_t ret_addr);
  bool resize_last(Bytes memory, std::size_t new_len);

  internal::ChunkList chunks_;  // oldest first; last() is where cur_/end_ point
  std::uintptr_t cur_ = 0;
  std::uintptr_t end_ = 0;
  std::size_t next_size_;
  std::size_t first_size_;
  std::size_t ceiling_;
  bool huge_pages_;
  std::size_t refused_ = 0;
};

}  // namespace alloy
