#include "alloy/allocators/c_allocator.h"

#include "alloy/alloc_iface/make_vtable.h"

#include <malloc.h>

#include <algorithm>
#include <cstdlib>

namespace alloy {
namespace {

// What malloc guarantees without being asked (glibc x86-64: 16).
constexpr std::size_t kMallocAlignment = alignof(std::max_align_t);

struct CEntries {
  static void* vt_alloc(void*, std::size_t len, Alignment alignment, std::uintptr_t) {
    if (alignment.bytes() <= kMallocAlignment) return std::malloc(len);
    void* p = nullptr;
    // posix_memalign takes any length, unlike aligned_alloc's multiple rule.
    if (posix_memalign(&p, alignment.bytes(), len) != 0) return nullptr;
    return p;
  }

  static bool vt_resize(void*, Bytes memory, Alignment, std::size_t new_len, std::uintptr_t) {
    return new_len <= malloc_usable_size(memory.data());
  }

  static void* vt_remap(void* ctx, Bytes memory, Alignment alignment, std::size_t new_len,
                        std::uintptr_t ret) {
    if (vt_resize(ctx, memory, alignment, new_len, ret)) return memory.data();
    // realloc only promises malloc's own alignment.
    if (alignment.bytes() > kMallocAlignment) return nullptr;
    return std::realloc(memory.data(), new_len);
  }

  static void vt_free(void*, Bytes memory, Alignment, std::uintptr_t) { std::free(memory.data()); }
  // Size feedback: malloc_usable_size, the bytes resize already accepts.
  static Bytes vt_alloc_at_least(void* ctx, std::size_t len, Alignment alignment,
                                 std::uintptr_t ret) {
    void* p = vt_alloc(ctx, len, alignment, ret);
    if (p == nullptr) return Bytes();
    return Bytes(static_cast<std::byte*>(p), std::max(len, malloc_usable_size(p)));
  }
};

}  // namespace

Allocator c_allocator() { return Allocator{nullptr, &vtable_for<CEntries>}; }

}  // namespace alloy
