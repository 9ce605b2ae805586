// alloy::Allocator — the handle every alloy allocator hands out.
//
// Two words: a context pointer and a pointer to a static table of four
// functions (and three optional ones). Library code takes an `Allocator` by
// value and never learns which strategy is behind it; the caller decides
// (page, c, arena, pool, debug, ...).
//
//   alloc  (ctx, len, alignment, ret_addr)          -> pointer, or null = out of memory
//   resize (ctx, memory, alignment, new_len, ret)   -> true if it grew/shrank in place
//   remap  (ctx, memory, alignment, new_len, ret)   -> new pointer (may move), or null =
//                                                      "do alloc + copy + free yourself"
//   free   (ctx, memory, alignment, ret_addr)
// Optional (null: the handle falls back, at no cost to the allocator):
//   alloc_at_least (ctx, len, alignment, ret)  -> {ptr, usable >= len}   (else usable = len)
//   alloc_zeroed   (ctx, len, alignment, ret)  -> zeroed block            (else alloc + memset)
//   owns           (ctx, ptr)                  -> Ownership kYes/kNo/...  (else kUnknown)
// Tables are built with make_vtable<T>() (make_vtable.h).
//
// Each entry's contract is written at its `VTable` field. In short: `memory`
// is always the (pointer, length) the caller was given (for a block from
// alloc_at_least, any length from the asked to the reported one: the
// freed-length rule), so every free is a sized free; `alignment` is the one used at allocation; lengths reaching
// the table are never zero (the typed helpers answer zero-length requests
// themselves, as Zig does) and never more than PTRDIFF_MAX once rounded up to
// the alignment (Rust's Layout rule: the handle refuses larger sizes before
// any table sees them, so every allocator gives the same kSizeOverflow).
// `ret_addr` is the address of the user's call, kept by debugging allocators
// to name call sites cheaply. Builds without NDEBUG check the contracts the
// handle can see (non-zero lengths, live blocks, aligned results) in the
// raw_* calls and abort with a message naming the broken rule; DebugAllocator
// checks the rest (exact pointer and length, alignment, double frees).
//
// A default-constructed Allocator is "unset": it points at a table that
// serves nothing. Without NDEBUG any call through it prints "use of a
// default-constructed alloy::Allocator" and aborts; with NDEBUG alloc (and
// alloc_at_least, alloc_zeroed) answers null (kOutOfMemory), resize false,
// remap null, owns kNo, and free does nothing (it cannot have handed the
// block out). valid() says whether a handle is set.
//
// The typed helpers never throw and never abort on failure: fallible ones
// return a [[nodiscard]] alloy::Result, and `n * sizeof(T)` overflow is an
// error, not a wrap. resize never frees: resizing a block to zero answers
// false and leaves it as it was (typed and byte forms alike; give it back with
// free, or realloc to zero, which frees and gives an empty span).
//
// Cost: one indirect call per operation, plus one direct call into the
// out-of-line helper that records the caller's address (and, without NDEBUG,
// a compare or two). Thread safety: the handle is a value; whether calls may
// race is the allocator's own promise.
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
#include "alloy/base/config.h"  // ALLOY_RETURN_ADDRESS()

// Where the address of "the user's call" comes from. Every public function
// that allocates follows one of two patterns, in every build mode:
//  * ALLOY_HELPER: the public entry is kept out of line and captures
//    ALLOY_RETURN_ADDRESS() once, which then names the user's call; it passes
//    that value down to internals (`*_at(..., ret_addr)`) that may inline.
//  * ALLOY_INLINE_ENTRY: a hot entry (Vec::try_push) is always inlined into
//    the user's function and calls an ALLOY_HELPER slow path only when it must
//    allocate; that slow path's return address lies in the user's function.
// A tail call from the user's function into an entry names its caller
// instead, as with any return-address tool.
#define ALLOY_HELPER [[gnu::noinline]]
#define ALLOY_INLINE_ENTRY [[gnu::always_inline]] inline

// Contract checks in the raw_* calls: on unless NDEBUG (or set it to 0/1).
#ifndef ALLOY_CHECK_CONTRACTS
#ifdef NDEBUG
#define ALLOY_CHECK_CONTRACTS 0
#else
#define ALLOY_CHECK_CONTRACTS 1
#endif
#endif

namespace alloy {

using Bytes = std::span<std::byte>;

// What Allocator::owns answers.
enum class Ownership : std::uint8_t {
  kUnknown,  // the allocator cannot tell (no owns entry)
  kNo,
  kYes,
};
constexpr Ownership ownership(bool yes) { return yes ? Ownership::kYes : Ownership::kNo; }

// The four entries of an allocator, and three optional ones. "The block" is
// memory handed out by this table's alloc, alloc_at_least or alloc_zeroed (or
// moved by its remap) and not yet freed; "its length" is the length asked,
// or any length the freed-length rule (at alloc_at_least) allows. The handle's raw_*
// calls check the marked (*) rules without NDEBUG; the others are what
// DebugAllocator checks.
struct VTable {
  // Returns `len` writable bytes aligned to `alignment`, or null when it
  // cannot (out of memory, or a size or alignment it does not serve).
  //  * len is non-zero (*); zero-length requests never reach the table (with
  //    NDEBUG raw_alloc answers null for them).
  //  * len rounded up to `alignment` is at most PTRDIFF_MAX; the handle
  //    answers larger requests itself (null from raw_alloc, kSizeOverflow from
  //    the typed helpers), so no allocator has to.
  //  * a non-null result is aligned to `alignment` (*).
  //  * ret_addr is the user's call (0 if unknown); only for reports.
  void* (*alloc)(void* ctx, std::size_t len, Alignment alignment,
                 std::uintptr_t ret_addr);
  // Grows or shrinks the block in place, without moving it.
  //  * memory is a live block (non-null, non-empty (*)): the exact
  //    (pointer, length) from the most recent alloc, resize or remap (after
  //    alloc_at_least: any length the freed-length rule allows).
  //  * alignment is the one passed to the alloc that made the block.
  //  * new_len is non-zero (*) (to shrink to nothing, free) and within the
  //    same size limit as alloc (the handle answers false above it).
  //  * true: the block is now new_len bytes at the same address, the first
  //    min(len, new_len) bytes kept. false: the block and its contents are
  //    untouched and still owned by the caller.
  bool (*resize)(void* ctx, Bytes memory, Alignment alignment,
                 std::size_t new_len, std::uintptr_t ret_addr);
  // Grows or shrinks the block, moving it if that is cheaper than a copy.
  //  * memory, alignment, new_len: as for resize (*).
  //  * non-null: the block is now new_len bytes there (aligned (*)), the first
  //    min(len, new_len) bytes kept; the old (pointer, length) is dead.
  //  * null: nothing happened. The old block and its contents are untouched
  //    and still owned; the caller does alloc + copy + free itself.
  void* (*remap)(void* ctx, Bytes memory, Alignment alignment,
                 std::size_t new_len, std::uintptr_t ret_addr);
  // Gives the block back.
  //  * memory is a live block (non-null, non-empty (*)): the exact
  //    (pointer, length) from the most recent alloc, resize or remap (after
  //    alloc_at_least: any length the freed-length rule allows).
  //  * alignment is the one passed to the alloc that made the block.
  //  * afterwards the block is dead; freeing it again is a double free.
  void (*free)(void* ctx, Bytes memory, Alignment alignment,
               std::uintptr_t ret_addr);

  // ---- Optional entries: null when the allocator lacks them; the handle's
  // helpers then fall back, so an allocator without one pays nothing. ----

  // Size feedback (Rust's allocate returning the real length, C++23's
  // allocate_at_least). Null: the handle calls alloc and reports len.
  //  * len, alignment, ret_addr: as for alloc.
  //  * returns {ptr, usable}: ptr as alloc's result (aligned (*)), and
  //    usable >= len (*) bytes the caller may use, all of them; or {null, 0}
  //    (*) when it cannot. Answer truthfully: what the block really holds
  //    (a size class, a pool's node, whole pages), or len when nothing more
  //    is cheap to know.
  //  * The freed-length rule: the block's length, for the resize, remap and
  //    free that follow, may be ANY value in [len, usable] (the asked one,
  //    the reported one or any between); DebugAllocator checks it. A block
  //    that a resize or remap changed has the new_len it was given, exactly.
  //  * Wrappers that charge bytes (counting, limit) charge the usable length
  //    they report; wrappers that add bytes of their own (the debug canary)
  //    report only what the user may touch.
  Bytes (*alloc_at_least)(void* ctx, std::size_t len, Alignment alignment,
                          std::uintptr_t ret_addr) = nullptr;
  // Zeroed memory (calloc, Rust's allocate_zeroed). Null: alloc + memset.
  //  * as alloc (same rules (*)); every one of the len bytes is zero. For
  //    allocators that know fresh OS memory is zero (the engine, the page
  //    allocator) and skip the memset for it.
  void* (*alloc_zeroed)(void* ctx, std::size_t len, Alignment alignment,
                        std::uintptr_t ret_addr) = nullptr;
  // Ownership (foonathan's is_owning). Null: the handle answers kUnknown.
  //  * ptr is any address (may be null, interior, foreign, freed).
  //  * kYes for the start of every live block this table handed out; kNo
  //    for a block of another allocator (one that does not share this
  //    allocator's memory); kUnknown when it cannot tell (a wrapper whose
  //    child cannot). An interior or freed pointer of its own may get kYes
  //    or kNo. Cheap: address arithmetic or a short walk, no allocation
  //    through this table; thread safety as the allocator's alloc.
  Ownership (*owns)(void* ctx, const void* ptr) = nullptr;
};

// The allocation_result of C++23's allocate_at_least, for StdAllocator and
// MemoryResource in C++20 too: `count` elements (bytes for MemoryResource)
// at `ptr`, at least the number asked for.
template <class Pointer>
struct AllocationResult {
  Pointer ptr;
  std::size_t count;
};

// Stubs for allocators that cannot do an operation.
bool no_resize(void* ctx, Bytes memory, Alignment alignment, std::size_t new_len,
               std::uintptr_t ret_addr);
void* no_remap(void* ctx, Bytes memory, Alignment alignment, std::size_t new_len,
               std::uintptr_t ret_addr);
void no_free(void* ctx, Bytes memory, Alignment alignment,
             std::uintptr_t ret_addr);

namespace detail {
template <class T>
struct VTableAccess;  // make_vtable.h
}  // namespace detail

// In a class whose vt_* entries are private: lets make_vtable (and only it)
// reach them. See make_vtable.h.
#define ALLOY_VTABLE_ENTRIES \
  template <class> friend struct ::alloy::detail::VTableAccess

namespace detail {
// The table of a default-constructed handle (see the header comment).
extern const VTable kUnsetVTable;

// Prints "alloy: <rule>" on stderr (with write(2): no allocation) and aborts.
[[noreturn]] void contract_failed(const char* rule) noexcept;

// The largest size any allocator is asked for: PTRDIFF_MAX, after rounding
// `len` up to `alignment` (Rust's Layout rule).
constexpr bool size_fits(std::size_t len, Alignment alignment) {
  return len <= static_cast<std::size_t>(PTRDIFF_MAX) - (alignment.bytes() - 1);
}
// size_fits and len != 0, in one compare (len - 1 wraps for zero).
constexpr bool nonzero_size_fits(std::size_t len, Alignment alignment) {
  return len - 1 < static_cast<std::size_t>(PTRDIFF_MAX) - (alignment.bytes() - 1);
}

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

#if ALLOY_CHECK_CONTRACTS
#define ALLOY_DETAIL_CONTRACT(cond, rule) \
  do {                                    \
    if (!(cond)) [[unlikely]]             \
      ::alloy::detail::contract_failed(rule); \
  } while (0)
#else
#define ALLOY_DETAIL_CONTRACT(cond, rule) \
  do {                                    \
  } while (0)
#endif

struct Allocator {
  void* ctx = nullptr;
  const VTable* vtable = &detail::kUnsetVTable;

  // False for a default-constructed (unset) handle.
  bool valid() const { return vtable != &detail::kUnsetVTable && vtable != nullptr; }

  // ---- Raw calls: straight through the table (see VTable for the rules). ----
  // Sizes over the limit are answered here (null / false), never passed on.
  // With NDEBUG a broken rule the handle can see gets one answer from every
  // allocator: a zero length null / false, a free of an empty span nothing.
  void* raw_alloc(std::size_t len, Alignment alignment,
                  std::uintptr_t ret_addr) const {
    ALLOY_DETAIL_CONTRACT(len != 0, "VTable::alloc contract: len must be non-zero");
    if (!detail::nonzero_size_fits(len, alignment)) [[unlikely]] return nullptr;
    void* p = vtable->alloc(ctx, len, alignment, ret_addr);
    ALLOY_DETAIL_CONTRACT(alignment.check(p),
                          "VTable::alloc contract: the result must be aligned to `alignment`");
    return p;
  }
  bool raw_resize(Bytes memory, Alignment alignment, std::size_t new_len,
                  std::uintptr_t ret_addr) const {
    ALLOY_DETAIL_CONTRACT(memory.data() != nullptr && !memory.empty(),
                          "VTable::resize contract: memory must be a live block (non-null, "
                          "non-empty)");
    ALLOY_DETAIL_CONTRACT(new_len != 0,
                          "VTable::resize contract: new_len must be non-zero (free the block "
                          "instead)");
    if (!detail::nonzero_size_fits(new_len, alignment) || memory.empty()) [[unlikely]] {
      return false;
    }
    return vtable->resize(ctx, memory, alignment, new_len, ret_addr);
  }
  void* raw_remap(Bytes memory, Alignment alignment, std::size_t new_len,
                  std::uintptr_t ret_addr) const {
    ALLOY_DETAIL_CONTRACT(memory.data() != nullptr && !memory.empty(),
                          "VTable::remap contract: memory must be a live block (non-null, "
                          "non-empty)");
    ALLOY_DETAIL_CONTRACT(new_len != 0,
                          "VTable::remap contract: new_len must be non-zero (free the block "
                          "instead)");
    if (!detail::nonzero_size_fits(new_len, alignment) || memory.empty()) [[unlikely]] {
      return nullptr;
    }
    void* p = vtable->remap(ctx, memory, alignment, new_len, ret_addr);
    ALLOY_DETAIL_CONTRACT(alignment.check(p),
                          "VTable::remap contract: the result must be aligned to `alignment`");
    return p;
  }
  // alloc with size feedback: {ptr, usable >= len}, or {null, 0}. Without
  // an alloc_at_least entry, alloc and usable == len.
  Bytes raw_alloc_at_least(std::size_t len, Alignment alignment,
                           std::uintptr_t ret_addr) const {
    ALLOY_DETAIL_CONTRACT(len != 0, "VTable::alloc_at_least contract: len must be non-zero");
    if (!detail::nonzero_size_fits(len, alignment)) [[unlikely]] return Bytes();
    if (vtable->alloc_at_least == nullptr) {
      void* p = vtable->alloc(ctx, len, alignment, ret_addr);
      ALLOY_DETAIL_CONTRACT(alignment.check(p),
                            "VTable::alloc contract: the result must be aligned to `alignment`");
      return p == nullptr ? Bytes() : Bytes(static_cast<std::byte*>(p), len);
    }
    Bytes b = vtable->alloc_at_least(ctx, len, alignment, ret_addr);
    ALLOY_DETAIL_CONTRACT(b.data() != nullptr || b.empty(),
                          "VTable::alloc_at_least contract: a null result must have length 0");
    ALLOY_DETAIL_CONTRACT(b.data() == nullptr || b.size() >= len,
                          "VTable::alloc_at_least contract: the usable length must be at least "
                          "len");
    ALLOY_DETAIL_CONTRACT(alignment.check(b.data()),
                          "VTable::alloc_at_least contract: the result must be aligned to "
                          "`alignment`");
    return b;
  }
  // alloc with every byte zero. Without an alloc_zeroed entry, alloc + memset.
  void* raw_alloc_zeroed(std::size_t len, Alignment alignment,
                         std::uintptr_t ret_addr) const {
    ALLOY_DETAIL_CONTRACT(len != 0, "VTable::alloc_zeroed contract: len must be non-zero");
    if (!detail::nonzero_size_fits(len, alignment)) [[unlikely]] return nullptr;
    void* p = nullptr;
    if (vtable->alloc_zeroed == nullptr) {
      p = vtable->alloc(ctx, len, alignment, ret_addr);
      if (p != nullptr) std::memset(p, 0, len);
    } else {
      p = vtable->alloc_zeroed(ctx, len, alignment, ret_addr);
    }
    ALLOY_DETAIL_CONTRACT(alignment.check(p),
                          "VTable::alloc_zeroed contract: the result must be aligned to "
                          "`alignment`");
    return p;
  }
  void raw_free(Bytes memory, Alignment alignment,
                std::uintptr_t ret_addr) const {
    ALLOY_DETAIL_CONTRACT(memory.data() != nullptr && !memory.empty(),
                          "VTable::free contract: memory must be a live block (non-null, "
                          "non-empty)");
    if (memory.empty()) [[unlikely]] return;
    vtable->free(ctx, memory, alignment, ret_addr);
  }

  // Whether `ptr` is this allocator's (see VTable::owns); kUnknown when its
  // table has no owns entry.
  Ownership owns(const void* ptr) const {
    if (vtable->owns == nullptr) return Ownership::kUnknown;
    return vtable->owns(ctx, ptr);
  }

  // ---- Bytes. ----

  // `len` bytes aligned to `alignment`; zero length gives an empty span.
  Result<Bytes> alloc_bytes(std::size_t len, Alignment alignment) const;
  // Grows or shrinks `memory` in place; false leaves it untouched (also for
  // sizes over the limit). It never frees: new_len == 0 answers false for a
  // block (free it, or realloc_bytes to 0); an empty `memory` answers
  // new_len == 0 (an empty span stays empty).
  bool resize_bytes(Bytes memory, Alignment alignment, std::size_t new_len) const;
  // resize, then remap, then alloc + copy + free. On error `memory` is intact.
  Result<Bytes> realloc_bytes(Bytes memory, Alignment alignment,
                              std::size_t new_len) const;
  void free_bytes(Bytes memory, Alignment alignment) const;
  // At least `len` bytes: the span is as long as the block really is (its
  // size class, its pool node, its pages); free, resize or remap it with any
  // length from `len` to the span's (see VTable::alloc_at_least).
  Result<Bytes> alloc_bytes_at_least(std::size_t len, Alignment alignment) const;
  // `len` zero bytes (calloc): no memset where the allocator knows its memory
  // is fresh from the OS.
  Result<Bytes> alloc_bytes_zeroed(std::size_t len, Alignment alignment) const;
  // realloc_bytes whose new bytes (past memory.size()) are zero (Rust's
  // grow_zeroed): resize or remap and zero the tail, else alloc_zeroed + copy
  // + free. On error `memory` is intact.
  Result<Bytes> realloc_bytes_zeroed(Bytes memory, Alignment alignment,
                                     std::size_t new_len) const;

  // ---- Single objects. ----

  // Allocates and constructs one T. Destroy it with destroy(), with the same T
  // (sized free: a base-class pointer to a derived object would be wrong).
  template <class T, class... Args>
  ALLOY_HELPER Result<T*> create(Args&&... args) const {
    return create_at<T>(ALLOY_RETURN_ADDRESS(), std::forward<Args>(args)...);
  }

  // Runs ~T and frees. Null is a no-op.
  template <class T>
  ALLOY_HELPER void destroy(T* p) const {
    destroy_at(p, ALLOY_RETURN_ADDRESS());
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

  // At least n elements: the span holds as many as the block really fits
  // (>= n). Free it (or realloc it) as it is, or with any size from n up.
  template <class T>
  ALLOY_HELPER Result<std::span<T>> alloc_at_least(std::size_t n) const {
    static_assert(detail::kPlainData<T>, "alloc_at_least<T>(n) is for plain data; use Vec<T>");
    std::size_t bytes = 0;
    if (detail::mul_overflows(n, sizeof(T), &bytes)) return Err(AllocError::kSizeOverflow);
    auto r = alloc_bytes_at_least_at(bytes, Alignment::of<T>(), ALLOY_RETURN_ADDRESS());
    if (!r) return Err(r.error());
    return std::span<T>(reinterpret_cast<T*>(r->data()), bytes == 0 ? 0 : r->size() / sizeof(T));
  }

  // n elements, every byte zero (calloc; Rust's allocate_zeroed).
  template <class T>
  ALLOY_HELPER Result<std::span<T>> alloc_zeroed(std::size_t n) const {
    static_assert(detail::kPlainData<T>, "alloc_zeroed<T>(n) is for plain data");
    std::size_t bytes = 0;
    if (detail::mul_overflows(n, sizeof(T), &bytes)) return Err(AllocError::kSizeOverflow);
    auto r = alloc_bytes_zeroed_at(bytes, Alignment::of<T>(), ALLOY_RETURN_ADDRESS());
    if (!r) return Err(r.error());
    return std::span<T>(reinterpret_cast<T*>(r->data()), n);
  }

  // realloc whose new elements (past old.size()) are zero bytes (Rust's
  // grow_zeroed). On error the old span is untouched; n == 0 frees.
  template <class T>
  ALLOY_HELPER Result<std::span<T>> realloc_zeroed(std::span<T> old, std::size_t n) const {
    static_assert(detail::kPlainData<T>, "realloc_zeroed is for plain data");
    std::size_t bytes = 0;
    if (detail::mul_overflows(n, sizeof(T), &bytes)) return Err(AllocError::kSizeOverflow);
    auto r = realloc_bytes_zeroed_at(to_bytes(old), Alignment::of<T>(), bytes,
                                     ALLOY_RETURN_ADDRESS());
    if (!r) return Err(r.error());
    if (r->empty()) return std::span<T>(detail::dangling<T>(Alignment::of<T>()), 0);
    return std::span<T>(reinterpret_cast<T*>(r->data()), n);
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

  // In-place resize of an array to n elements; false leaves it as it was
  // (also when n * sizeof(T) overflows or is over the size limit). As
  // resize_bytes: n == 0 answers false for a non-empty array (it never frees).
  template <class T>
  ALLOY_HELPER bool resize(std::span<T> memory, std::size_t n) const {
    static_assert(detail::kPlainData<T>, "resize is for plain data");
    std::size_t bytes = 0;
    if (detail::mul_overflows(n, sizeof(T), &bytes)) return false;
    return resize_bytes_at(to_bytes(memory), Alignment::of<T>(), bytes,
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

  // ---- For wrappers that record their own caller (Vec, Box, your own
  // containers): the helpers above with the user's return address given. ----

  Result<Bytes> alloc_bytes_at(std::size_t len, Alignment alignment,
                               std::uintptr_t ret_addr) const {
    return alloc_array<std::byte>(len, alignment, ret_addr);
  }
  bool resize_bytes_at(Bytes memory, Alignment alignment, std::size_t new_len,
                       std::uintptr_t ret_addr) const;
  Result<Bytes> alloc_bytes_at_least_at(std::size_t len, Alignment alignment,
                                        std::uintptr_t ret_addr) const;
  Result<Bytes> alloc_bytes_zeroed_at(std::size_t len, Alignment alignment,
                                      std::uintptr_t ret_addr) const;
  Result<Bytes> realloc_bytes_zeroed_at(Bytes memory, Alignment alignment,
                                        std::size_t new_len, std::uintptr_t ret_addr) const;
  Result<Bytes> realloc_bytes_at(Bytes memory, Alignment alignment,
                                 std::size_t new_len, std::uintptr_t ret_addr) const;

  template <class T, class... Args>
  Result<T*> create_at(std::uintptr_t ret_addr, Args&&... args) const {
    static_assert(detail::size_fits(sizeof(T), Alignment::of<T>()));
    void* p = raw_alloc(sizeof(T), Alignment::of<T>(), ret_addr);
    if (p == nullptr) return Err(AllocError::kOutOfMemory);
#if defined(__cpp_exceptions)
    try {
      return ::new (p) T(std::forward<Args>(args)...);
    } catch (...) {
      raw_free(Bytes(static_cast<std::byte*>(p), sizeof(T)), Alignment::of<T>(), ret_addr);
      throw;
    }
#else
    return ::new (p) T(std::forward<Args>(args)...);
#endif
  }

  template <class T>
  void destroy_at(T* p, std::uintptr_t ret_addr) const {
    if (p == nullptr) return;
    p->~T();
    raw_free(Bytes(reinterpret_cast<std::byte*>(const_cast<std::remove_cv_t<T>*>(p)),
                   sizeof(T)),
             Alignment::of<T>(), ret_addr);
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
    if (detail::mul_overflows(n, sizeof(T), &bytes) || !detail::size_fits(bytes, alignment)) {
      return Err(AllocError::kSizeOverflow);
    }
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
};

static_assert(sizeof(Allocator) == 2 * sizeof(void*));
static_assert(std::is_trivially_copyable_v<Allocator>);

}  // namespace alloy
