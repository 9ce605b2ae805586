#include "alloy/allocators/c_allocator.h"

#include <malloc.h>

#include <cstdlib>

namespace alloy {
namespace {

// What malloc guarantees without being asked (glibc x86-64: 16).
constexpr std::size_t kMallocAlignment = alignof(std::max_align_t);

void* c_alloc(void*, std::size_t len, Alignment alignment, std::uintptr_t) {
  if (alignment.bytes() <= kMallocAlignment) return std::malloc(len);
  void* p = nullptr;
  // posix_memalign takes any length, unlike aligned_alloc's multiple rule.
  if (posix_memalign(&p, alignment.bytes(), len) != 0) return nullptr;
  return p;
}

bool c_resize(void*, Bytes memory, Alignment, std::size_t new_len, std::uintptr_t) {
  return new_len <= malloc_usable_size(memory.data());
}

void* c_remap(void* ctx, Bytes memory, Alignment alignment, std::size_t new_len,
              std::uintptr_t ret) {
  if (c_resize(ctx, memory, alignment, new_len, ret)) return memory.data();
  // realloc only promises malloc's own alignment.
  if (alignment.bytes() > kMallocAlignment) return nullptr;
  return std::realloc(memory.data(), new_len);
}

void c_free(void*, Bytes memory, Alignment, std::uintptr_t) { std::free(memory.data()); }

constexpr VTable kCVTable = {c_alloc, c_resize, c_remap, c_free};

}  // namespace

Allocator c_allocator() { return Allocator{nullptr, &kCVTable}; }

}  // namespace alloy
