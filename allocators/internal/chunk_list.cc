#include "alloy/allocators/internal/chunk_list.h"

#include "alloy/base/assert.h"

namespace alloy::internal {

Chunk* ChunkList::append(std::size_t size, Alignment alignment, std::uintptr_t ret_addr) {
  ALLOY_ASSERT_MSG(size >= kChunkHeader, "ChunkList::append: a chunk holds its header");
  ALLOY_ASSERT(alignment >= Alignment::of<Chunk>());
  void* p = child_.raw_alloc(size, alignment, ret_addr);
  if (p == nullptr) return nullptr;
  auto* c = static_cast<Chunk*>(p);
  c->prev = last_;
  c->next = nullptr;
  c->size = size;
  c->user = 0;
  c->alignment = alignment;
  if (last_ != nullptr) {
    last_->next = c;
  } else {
    first_ = c;
  }
  last_ = c;
  bytes_ += size;
  return c;
}

void ChunkList::release(Chunk* c, std::uintptr_t ret_addr) {
  bytes_ -= c->size;
  child_.raw_free(Bytes(reinterpret_cast<std::byte*>(c), c->size), c->alignment, ret_addr);
}

void ChunkList::free_after(Chunk* c, std::uintptr_t ret_addr) {
  Chunk* n = c != nullptr ? c->next : first_;
  while (n != nullptr) {
    Chunk* next = n->next;
    release(n, ret_addr);
    n = next;
  }
  if (c != nullptr) {
    c->next = nullptr;
  } else {
    first_ = nullptr;
  }
  last_ = c;
}

void ChunkList::free_before(Chunk* c, std::uintptr_t ret_addr) {
  ALLOY_ASSERT(c != nullptr);
  for (Chunk* o = c->prev; o != nullptr;) {
    Chunk* prev = o->prev;
    release(o, ret_addr);
    o = prev;
  }
  c->prev = nullptr;
  first_ = c;
}

bool ChunkList::resize(Chunk* c, std::size_t new_size, std::uintptr_t ret_addr) {
  ALLOY_ASSERT_MSG(new_size >= kChunkHeader, "ChunkList::resize: a chunk holds its header");
  if (new_size == c->size) return true;
  if (!child_.raw_resize(Bytes(reinterpret_cast<std::byte*>(c), c->size), c->alignment,
                         new_size, ret_addr)) {
    return false;
  }
  bytes_ = bytes_ - c->size + new_size;
  c->size = new_size;
  return true;
}

std::size_t ChunkList::usable_bytes() const {
  std::size_t total = 0;
  for (const Chunk* c = first_; c != nullptr; c = c->next) total += c->size - kChunkHeader;
  return total;
}

std::size_t ChunkList::count() const {
  std::size_t n = 0;
  for (const Chunk* c = first_; c != nullptr; c = c->next) ++n;
  return n;
}

Chunk* ChunkList::find(const void* p) const {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  for (Chunk* c = first_; c != nullptr; c = c->next) {
    if (c->body_contains(a)) return c;
  }
  return nullptr;
}

}  // namespace alloy::internal
