// alloy::internal::ChunkList — the list of chunks that Arena, Scratch and
// NodePool take from their child (not a public API: allocators/ only).
//
// Each chunk is one child block that starts with its own header (Chunk: the
// links, its size and alignment, and one word its owner may use), so the
// list costs no memory of its own. Chunks are kept oldest first: append()
// adds a newer one, free_after()/free_before() give back the newer or the
// older part, resize() grows or shrinks one in place through the child.
// The owner decides what lives in a chunk's body [begin(), end()): Arena and
// Scratch bump a cursor through it, NodePool carves nodes. This is the
// chain that Arena and Scratch each walked by hand (foonathan's memory_arena
// under memory_stack is the model).
//
// Cost: append and each freed chunk are one child call; count(),
// usable_bytes() and find() walk the list (O(chunks)); bytes() is a load.
// Thread safety: none; one owner.
//
// Example:
//   alloy::internal::ChunkList chunks(alloy::c_allocator());
//   Chunk* c = chunks.append(4096, alloy::Alignment::from_log2(4), ALLOY_RETURN_ADDRESS());
//   if (c != nullptr) use(c->begin(), c->end());      // 4096 - kChunkHeader bytes
//   chunks.free_all(ALLOY_RETURN_ADDRESS());           // one child free per chunk
#pragma once

#include <cstddef>
#include <cstdint>

#include "alloy/alloc_iface/allocator.h"

namespace alloy::internal {

struct Chunk {
  Chunk* prev;          // older chunk, or null
  Chunk* next;          // newer chunk, or null
  std::size_t size;     // bytes from the child, this header included
  std::size_t user;     // the owner's word (NodePool: nodes in the slab)
  Alignment alignment;  // as asked of the child (sized, aligned free)

  std::uintptr_t address() const { return reinterpret_cast<std::uintptr_t>(this); }
  std::uintptr_t begin() const;  // first byte after the header
  std::uintptr_t end() const { return address() + size; }
  bool body_contains(std::uintptr_t a) const { return a >= begin() && a < end(); }
};

inline constexpr std::size_t kChunkHeader = sizeof(Chunk);
inline std::uintptr_t Chunk::begin() const { return address() + kChunkHeader; }

class ChunkList {
 public:
  explicit ChunkList(Allocator child) : child_(child) {}
  ChunkList(const ChunkList&) = delete;
  ChunkList& operator=(const ChunkList&) = delete;
  // The owner frees (free_all) with the return address it wants reported.
  ~ChunkList() = default;

  Allocator child() const { return child_; }
  Chunk* first() const { return first_; }  // oldest
  Chunk* last() const { return last_; }    // newest
  bool empty() const { return first_ == nullptr; }

  // A new newest chunk of `size` bytes (header included, size >=
  // kChunkHeader) at `alignment`, or null if the child refuses.
  Chunk* append(std::size_t size, Alignment alignment, std::uintptr_t ret_addr);
  // Gives back every chunk newer than `c` (c null: every chunk).
  void free_after(Chunk* c, std::uintptr_t ret_addr);
  // Gives back every chunk older than `c` (which becomes first()).
  void free_before(Chunk* c, std::uintptr_t ret_addr);
  void free_all(std::uintptr_t ret_addr) { free_after(nullptr, ret_addr); }
  // Resizes `c` in place through the child (size >= kChunkHeader); false,
  // changing nothing, if the child cannot.
  bool resize(Chunk* c, std::size_t new_size, std::uintptr_t ret_addr);

  std::size_t bytes() const { return bytes_; }  // from the child, headers included
  std::size_t usable_bytes() const;             // bodies only
  std::size_t count() const;
  // The chunk whose body holds `p`, or null.
  Chunk* find(const void* p) const;

 private:
  void release(Chunk* c, std::uintptr_t ret_addr);

  Allocator child_;
  Chunk* first_ = nullptr;
  Chunk* last_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace alloy::internal
