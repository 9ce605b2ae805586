// alloy::Allocator — the handle every alloy allocator hands out.
//
// Two words: a context pointer and a pointer to a static table of four
// functions. Library code takes an `Allocator` by value and never learns which
// strategy is behind it; the caller decides (page, c, arena, pool, debug, ...).
//
//   alloc  (ctx, len, alignment, ret_addr)          -> pointer, or null = out of memory
//   resize (ctx, memory, alignment, new_len, ret)   -> true if it grew/shrank in place
//   remap  (ctx, memory, alignment, new_len, ret)   -> new pointer (may move), or null =
//                                                      "do alloc + copy + free yourself"
//   free   (ctx, memory, alignment, ret_addr)
//
// `memory` is always the exact (pointer, length) the caller was given, so every
// free is a sized free; `alignment` is the one used at allocation. Lengths
// reaching the table are never zero: the typed helpers below answer
// zero-length requests themselves (as Zig does). `ret_addr` is the caller's
// return address, kept by debugging allocators to name call sites cheaply.
//
// The typed helpers never throw and never abort on failure: fallible ones
// return a [[nodiscard]] alloy::Result, and `n * sizeof(T)` overflow is an
// error, not a wrap.
//
// Cost: one indirect call per operation, plus one direct call into the
// out-of-line helper that records the caller's address. Thread safety: the
// handle is a value; whether calls may race is the allocator's own promise.
//
// Example:
//   void tokenize(alloy::Allocator a, std::string_view text) {
//     auto words = a.alloc<std::string_view>(64);   // Result<std::span<...>>
//     if (!words) return;                           // out of memory: no throw
//     ... use *words ...
//     a.free(*words);                               // sized free
//   }
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>

#include "alloy/alloc_iface/alignment.h"
#include "alloy/alloc_iface/result.h"

// The return address of the current function, as an integer.
#define ALLOY_RETURN_ADDRESS() \
  (reinterpret_cast<std::uintptr_t>(__builtin_return_address(0)))

// Typed helpers are kept out of line so that ALLOY_RETURN_ADDRESS() inside them
// names the line of user code that called them.
#define ALLOY_HELPER [[gnu::noinline]]

namespace alloy {

using Bytes = std::span<std::byte>;

struct VTable {
  void* (*alloc)(void* ctx, std::size_t len, Alignment alignment,
                 std::uintptr_t ret_addr);
  bool (*resize)(void* ctx, Bytes memory, Alignment alignment,
                 std::size_t new_len, std::uintptr_t ret_addr);
  void* (*remap)(void* ctx, Bytes memory, Alignment alignment,
                 std::size_t new_len, std::uintptr_t ret_addr);
  void (*free)(void* ctx, Bytes memory, Alignment alignment,
               std::uintptr_t ret_addr);
};

// Stubs for allocators that cannot do an operation.
bool no_resize(void* ctx, Bytes memory, Alignment alignment, std::size_t new_len,
               std::uintptr_t ret_addr);
void* no_remap(void* ctx, Bytes memory, Alignment alignment, std::size_t new_len,
               std::uintptr_t ret_addr);
void no_free(void* ctx, Bytes memory, Alignment alignment,
             std::uintptr_t ret_addr);

namespace detail {
// A non-null, suitably aligned pointer for zero-length results (Rust's
// NonNull::dangling). Never dereferenced, never passed to the vtable.
template <class T>
T* dangling(Alignment alignment) {
  return reinterpret_cast<T*>(alignment.bytes());
}

template <class T>
constexpr bool kPlainData =
    std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>;

// n * size without wrapping.
constexpr bool mul_overflows(std::size_t n, std::size_t size, std::size_t* out) {
  return __builtin_mul_overflow(n, size, out);
}
}  // namespace detail

struct Allocator {
  void* ctx = nullptr;
  const VTable* vtable = nullptr;

  // ---- Raw calls: straight through the table. Lengths must be non-zero. ----
  void* raw_alloc(std::size_t len, Alignment alignment,
                  std::uintptr_t ret_addr) const {
    return vtable->alloc(ctx, len, alignment, ret_addr);
  }
  bool raw_resize(Bytes memory, Alignment alignment, std::size_t new_len,
                  std::uintptr_t ret_addr) const {
    return vtable->resize(ctx, memory, alignment, new_len, ret_addr);
  }
  void* raw_remap(Bytes memory, Alignment alignment, std::size_t new_len,
                  std::uintptr_t ret_addr) const {
    return vtable->remap(ctx, memory, alignment, new_len, ret_addr);
  }
  void raw_free(Bytes memory, Alignment alignment,
                std::uintptr_t ret_addr) const {
    vtable->free(ctx, memory, alignment, ret_addr);
  }

  // ---- Bytes. ----

  // `len` bytes aligned to `alignment`; zero length gives an empty span.
  Result<Bytes> alloc_bytes(std::size_t len, Alignment alignment) const;
  // Grows or shrinks `memory` in place; false leaves it untouched. Shrinking
  // to zero frees and is always true (the span becomes empty).
  bool resize_bytes(Bytes memory, Alignment alignment, std::size_t new_len) const;
  // resize, then remap, then alloc + copy + free. On error `memory` is intact.
  Result<Bytes> realloc_bytes(Bytes memory, Alignment alignment,
                              std::size_t new_len) const;
  void free_bytes(Bytes memory, Alignment alignment) const;

  // ---- Single objects. ----

  // Allocates and constructs one T. Destroy it with destroy(), with the same T
  // (sized free: a base-class pointer to a derived object would be wrong).
  template <class T, class... Args>
  ALLOY_HELPER Result<T*> create(Args&&... args) const {
    void* p = raw_alloc(sizeof(T), Alignment::of<T>(), ALLOY_RETURN_ADDRESS());
    if (p == nullptr) return Err(AllocError::kOutOfMemory);
#if defined(__cpp_exceptions)
    try {
      return ::new (p) T(std::forward<Args>(args)...);
    } catch (...) {
      raw_free(Bytes(static_cast<std::byte*>(p), sizeof(T)), Alignment::of<T>(),
               ALLOY_RETURN_ADDRESS());
      throw;
    }
#else
    return ::new (p) T(std::forward<Args>(args)...);
#endif
  }

  // Runs ~T and frees. Null is a no-op.
  template <class T>
  ALLOY_HELPER void destroy(T* p) const {
    if (p == nullptr) return;
    p->~T();
    raw_free(Bytes(reinterpret_cast<std::byte*>(const_cast<std::remove_cv_t<T>*>(p)),
                   sizeof(T)),
             Alignment::of<T>(), ALLOY_RETURN_ADDRESS());
  }

  // ---- Arrays of plain data (trivially copyable and destructible). ----
  // Contents are uninitialized. Non-trivial element types belong in alloy::Vec.

  template <class T>
  ALLOY_HELPER Result<std::span<T>> alloc(std::size_t n) const {
    static_assert(detail::kPlainData<T>, "alloc<T>(n) is for plain data; use Vec<T>");
    return alloc_array<T>(n, Alignment::of<T>(), ALLOY_RETURN_ADDRESS());
  }

  // As alloc<T>(n) with a stronger alignment (never weaker than alignof(T)).
  // Free the result with free_aligned(span, same alignment).
  template <class T>
  ALLOY_HELPER Result<std::span<T>> alloc_aligned(std::size_t n,
                                                  Alignment alignment) const {
    static_assert(detail::kPlainData<T>, "alloc_aligned is for plain data");
    return alloc_array<T>(n, alignment.max(Alignment::of<T>()),
                          ALLOY_RETURN_ADDRESS());
  }
  // Alignment in bytes; kInvalidAlignment unless a power of two.
  template <class T>
  ALLOY_HELPER Result<std::span<T>> alloc_aligned(std::size_t n,
                                                  std::size_t alignment_bytes) const {
    static_assert(detail::kPlainData<T>, "alloc_aligned is for plain data");
    auto alignment = Alignment::from_bytes(alignment_bytes);
    if (!alignment) return Err(AllocError::kInvalidAlignment);
    return alloc_array<T>(n, alignment->max(Alignment::of<T>()),
                          ALLOY_RETURN_ADDRESS());
  }

  // Resizes an array to n elements, keeping the first min(old, n). Tries
  // resize in place, then remap, then alloc + copy + free. On error the old
  // span is untouched and still owned by the caller. n == 0 frees.
  template <class T>
  ALLOY_HELPER Result<std::span<T>> realloc(std::span<T> old, std::size_t n) const {
    static_assert(detail::kPlainData<T>, "realloc is for plain data; use Vec<T>");
    return realloc_array<T>(old, n, Alignment::of<T>(), ALLOY_RETURN_ADDRESS());
  }
  template <class T>
  ALLOY_HELPER Result<std::span<T>> realloc_aligned(std::span<T> old, std::size_t n,
                                                    Alignment alignment) const {
    static_assert(detail::kPlainData<T>, "realloc is for plain data; use Vec<T>");
    return realloc_array<T>(old, n, alignment.max(Alignment::of<T>()),
                            ALLOY_RETURN_ADDRESS());
  }

  // In-place resize of an array; false leaves it as it was.
  template <class T>
  ALLOY_HELPER bool resize(std::span<T> memory, std::size_t n) const {
    static_assert(detail::kPlainData<T>, "resize is for plain data");
    std::size_t bytes = 0;
    if (detail::mul_overflows(n, sizeof(T), &bytes)) return false;
    if (memory.empty()) return n == 0;
    if (n == 0) return false;  // shrinking to nothing is free()'s job
    return raw_resize(std::as_writable_bytes(memory), Alignment::of<T>(), bytes,
                      ALLOY_RETURN_ADDRESS());
  }

  // A copy of `src` in new memory.
  template <class T>
  ALLOY_HELPER Result<std::span<std::remove_const_t<T>>> dupe(std::span<T> src) const {
    using U = std::remove_const_t<T>;
    static_assert(detail::kPlainData<U>, "dupe is for plain data");
    auto r = alloc_array<U>(src.size(), Alignment::of<U>(), ALLOY_RETURN_ADDRESS());
    if (r && !src.empty()) std::memcpy(r->data(), src.data(), src.size_bytes());
    return r;
  }
  ALLOY_HELPER Result<std::span<char>> dupe(std::string_view src) const;
  // A NUL-terminated copy: the span includes the terminator (size() ==
  // src.size() + 1), so it can be passed to free() as it is.
  ALLOY_HELPER Result<std::span<char>> dupe_z(std::string_view src) const;

  // Frees an array from alloc/realloc/dupe. Empty spans are a no-op.
  template <class T>
  ALLOY_HELPER void free(std::span<T> memory) const {
    static_assert(detail::kPlainData<std::remove_const_t<T>>, "free(span) is for plain data");
    if (memory.empty()) return;
    raw_free(to_bytes(memory), Alignment::of<T>(), ALLOY_RETURN_ADDRESS());
  }
  template <class T>
  ALLOY_HELPER void free_aligned(std::span<T> memory, Alignment alignment) const {
    if (memory.empty()) return;
    raw_free(to_bytes(memory), alignment.max(Alignment::of<T>()),
             ALLOY_RETURN_ADDRESS());
  }

  friend bool operator==(const Allocator& a, const Allocator& b) {
    return a.ctx == b.ctx && a.vtable == b.vtable;
  }

 private:
  template <class T>
  static Bytes to_bytes(std::span<T> s) {
    return Bytes(reinterpret_cast<std::byte*>(const_cast<std::remove_const_t<T>*>(s.data())),
                 s.size_bytes());
  }

  template <class T>
  Result<std::span<T>> alloc_array(std::size_t n, Alignment alignment,
                                   std::uintptr_t ret_addr) const {
    std::size_t bytes = 0;
    if (detail::mul_overflows(n, sizeof(T), &bytes)) return Err(AllocError::kSizeOverflow);
    if (bytes == 0) return std::span<T>(detail::dangling<T>(alignment), 0);
    void* p = raw_alloc(bytes, alignment, ret_addr);
    if (p == nullptr) return Err(AllocError::kOutOfMemory);
    return std::span<T>(static_cast<T*>(p), n);
  }

  template <class T>
  Result<std::span<T>> realloc_array(std::span<T> old, std::size_t n,
                                     Alignment alignment,
                                     std::uintptr_t ret_addr) const {
    std::size_t bytes = 0;
    if (detail::mul_overflows(n, sizeof(T), &bytes)) return Err(AllocError::kSizeOverflow);
    auto r = realloc_bytes_at(to_bytes(old), alignment, bytes, ret_addr);
    if (!r) return Err(r.error());
    if (r->empty()) return std::span<T>(detail::dangling<T>(alignment), 0);
    return std::span<T>(reinterpret_cast<T*>(r->data()), n);
  }

  Result<Bytes> realloc_bytes_at(Bytes memory, Alignment alignment,
                                 std::size_t new_len, std::uintptr_t ret_addr) const;
};

static_assert(sizeof(Allocator) == 2 * sizeof(void*));
static_assert(std::is_trivially_copyable_v<Allocator>);

}  // namespace alloy
