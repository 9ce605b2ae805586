// Shared fast paths of the malloc adapter: the C functions and the C++
// operators both call these, so the semantics (size 0, errno, foreign
// pointers, alignment rules) are written once. Internal to adapters/malloc.
//
// Cost: each inlines to one engine call plus a branch or two. Nothing here
// calls malloc. Thread safety: as the engine (fully thread-safe).
//
// Example:
//   void* malloc(size_t n) { return internal::alloc(n, ALLOY_CALLER()); }
//   void free(void* p) { internal::free(p, ALLOY_CALLER()); }
//   // internal::alloc sets errno = ENOMEM and returns null on failure;
//   // internal::free ignores null and pointers the engine does not own.
#pragma once

#include <errno.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "alloy/allocators/engine/engine.h"
#include "alloy/allocators/engine/fast_path.h"
#include "alloy/base/line_writer.h"

namespace alloy::malloc_adapter::internal {

// No request above this can ever be served (half the address space); the
// adapter fails such requests itself rather than trust every engine path
// with near-SIZE_MAX arithmetic.
inline constexpr std::size_t kMaxRequest = SIZE_MAX / 2;

// The engine's natural alignment: malloc's guarantee.
inline constexpr std::size_t kNaturalAlignment = 16;

// The largest alignment engine::alloc_aligned serves (engine.h); larger ones
// get their own mapping from big_aligned_alloc.
inline constexpr std::size_t kEngineMaxAlignment = engine::kMaxAlignment;

// A fixed buffer for reports, formatted without malloc; 512 bytes leave
// room for a module path.
using Line = base::LineWriter<512>;

// Writes one report line to stderr when ALLOY_VERBOSE is set or `always`.
// `label` names the number ("size", "alignment"). Lines that are not
// `always` are rate-limited (the first 100, then 10 a second).
void report(const char* what, const void* p, std::size_t size,
            std::uintptr_t caller, bool always, const char* label = "size") noexcept;

// errno = ENOMEM, report if verbose, return null.
[[gnu::cold]] void* fail_enomem(std::size_t size,
                                std::uintptr_t caller) noexcept;

[[gnu::cold]] void note_foreign_free(void* p, std::uintptr_t caller) noexcept;

// free() of a pointer the engine does not own: a big-aligned block is
// unmapped, anything else is counted and ignored.
[[gnu::cold]] void free_not_engine(void* p, std::uintptr_t caller) noexcept;

// A pointer inside the engine's memory that is not the start of a live block
// was passed to `op` ("free", "realloc", "malloc_usable_size"): reported
// always (what, where, why, the caller's module+offset), then abort() unless
// ALLOY_ON_ERROR=report.
[[gnu::cold]] void invalid_pointer(const char* op, const void* p, const char* why,
                                   std::uintptr_t caller) noexcept;

// free() of an engine pointer the inline push did not take (another
// thread's page, an alloy::Heap block, a huge block, or the block freed last
// on its page): checked (engine::check_block), then freed or reported.
[[gnu::cold]] void free_engine_checked(void* p, std::uintptr_t caller) noexcept;

// Blocks aligned above kEngineMaxAlignment (big_aligned.cc): own mappings.
void* big_aligned_alloc(std::size_t size, std::size_t alignment) noexcept;
bool big_aligned_free(void* p) noexcept;                // true if p was one
std::size_t big_aligned_usable(const void* p) noexcept;  // 0 if p is not one
std::size_t big_aligned_live() noexcept;

// Reports (always) a sized free whose size exceeds the block's usable size.
void check_sized_free(void* p, std::size_t size,
                      std::uintptr_t caller) noexcept;

// realloc() of a pointer the engine does not own (big-aligned or foreign).
[[gnu::cold]] void* realloc_not_engine(void* p, std::size_t size,
                                       std::uintptr_t caller) noexcept;

// ---- The secure mode (secure.cc; README "Hardening"). ----
// True unless the secure mode is known to be off (so before the engine's
// first init too): a load and a compare, for the slow halves and the paths
// without an inline fast half.
inline bool maybe_secure() noexcept {
  return engine::detail::g_secure_state != engine::detail::kSecureOff;
}
// True when the secure mode is on (deciding it at the first call): a load
// and a compare once the engine has started.
inline bool secure_on() noexcept {
  const std::uint8_t s = engine::detail::g_secure_state;
  return s == engine::detail::kSecureOn ||
         (s == engine::detail::kSecureUnknown && engine::secure_mode());
}
// A checked block of `size` bytes (canary, trailer); null with errno set.
void* secure_alloc(std::size_t size, std::size_t alignment, std::uintptr_t caller) noexcept;
// Every free of the secure mode (null, foreign pointers and blocks of an
// alloy::Heap included): checks p (a block's start; double free, canary,
// the size of a sized free when `sized` != 0), fills it and quarantines it.
// Small blocks of the default heap take an inline path; the rest
// engine::check_block.
void secure_free(void* p, std::size_t sized, std::uintptr_t caller) noexcept;
// The size asked for (canary checked); p passed engine::check_block.
std::size_t secure_usable(void* p, std::uintptr_t caller) noexcept;
// Registers the quarantine's flush at thread exit (once, at start-up).
void install_secure_hooks() noexcept;
// Checked realloc of engine block p (in place within the block, else moves).
void* secure_realloc(void* p, std::size_t size, std::uintptr_t caller) noexcept;

int open_append(const char* path) noexcept;

// Verbose lines dropped by the rate limit so far.
std::size_t verbose_suppressed() noexcept;

inline bool is_pow2(std::size_t x) { return x != 0 && (x & (x - 1)) == 0; }

// sysconf once; a constant-initialized atomic rather than a function-local
// static, whose guard would call __cxa_guard_acquire from libstdc++.
inline std::size_t page_size() {
  static constinit std::atomic<std::size_t> cached{0};
  std::size_t size = cached.load(std::memory_order_relaxed);
  if (size == 0) {
    size = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    cached.store(size, std::memory_order_relaxed);
  }
  return size;
}

#ifndef NDEBUG
inline constexpr bool kCheckSizedFree = true;
#else
inline constexpr bool kCheckSizedFree = false;
#endif

// alloc(), out of line: the slow half of malloc, whose inlined fast half is
// engine::try_inline_alloc (so malloc's fast path saves no registers).
[[gnu::noinline]] void* alloc_slow(std::size_t size, std::uintptr_t caller) noexcept;

inline void* alloc(std::size_t size, std::uintptr_t caller) noexcept {
  if (size == 0) size = 1;
  if (secure_on()) [[unlikely]]
    return secure_alloc(size, kNaturalAlignment, caller);
  // The engine's inlined fast path: a TLS load and a list pop when the
  // thread's page for this size class has a free block.
  void* p = size <= kMaxRequest ? engine::inline_alloc(size) : nullptr;
  if (p == nullptr) [[unlikely]]
    return fail_enomem(size, caller);
  return p;
}

// `alignment` must be a power of two (callers validate).
inline void* alloc_aligned(std::size_t size, std::size_t alignment,
                           std::uintptr_t caller) noexcept {
  if (alignment <= kNaturalAlignment) return alloc(size, caller);
  if (size == 0) size = 1;
  if (alignment <= kEngineMaxAlignment && secure_on()) [[unlikely]]
    return secure_alloc(size, alignment, caller);
  void* p = nullptr;
  if (size <= kMaxRequest && alignment <= kMaxRequest) {
    p = alignment <= kEngineMaxAlignment ? engine::alloc_aligned(size, alignment)
                                         : big_aligned_alloc(size, alignment);
  }
  if (p == nullptr) [[unlikely]]
    return fail_enomem(size, caller);
  return p;
}

// free(), out of line: the slow half of the exported free, whose inlined
// fast half is engine::try_inline_free.
[[gnu::noinline]] void free_slow(void* p, std::uintptr_t caller) noexcept;

// Every free of the adapter: the engine's inline push when p is this thread's
// block, else the checked slow half.
inline void free(void* p, std::uintptr_t caller) noexcept {
  if (engine::try_inline_free(p)) [[likely]] return;
  if (p == nullptr) return;
  if (!engine::inline_owns(p)) [[unlikely]] {
    free_not_engine(p, caller);
    return;
  }
  free_engine_checked(p, caller);
}

// free_sized(), out of line (see free_slow).
[[gnu::noinline]] void free_sized_slow(void* p, std::size_t size, std::uintptr_t caller) noexcept;

inline void free_sized(void* p, std::size_t size,
                       std::uintptr_t caller) noexcept {
  if (p == nullptr) return;
  if (!engine::inline_owns(p)) [[unlikely]] {
    free_not_engine(p, caller);
    return;
  }
  if (size == 0) size = 1;
  if (secure_on()) [[unlikely]] {
    secure_free(p, size, caller);
    return;
  }
  if constexpr (kCheckSizedFree) {
    if (engine::check_block(p) == nullptr && size > engine::usable_size(p)) [[unlikely]]
      check_sized_free(p, size, caller);
  }
  // Size classes come from the block's page, so the size is not needed to
  // free it; it was only checked above.
  free(p, caller);
}

// Aligned blocks are freed unsized: the size class of an over-aligned block
// is not derivable from the requested size alone.
inline void free_aligned_sized(void* p, std::size_t alignment,
                               std::size_t size,
                               std::uintptr_t caller) noexcept {
  if (alignment <= kNaturalAlignment) return free_sized(p, size, caller);
  if (p == nullptr) return;
  if (!engine::inline_owns(p)) [[unlikely]] {
    free_not_engine(p, caller);
    return;
  }
  if (secure_on()) [[unlikely]] {
    secure_free(p, size == 0 ? 1 : size, caller);
    return;
  }
  if constexpr (kCheckSizedFree) {
    if (engine::check_block(p) == nullptr && size > engine::usable_size(p)) [[unlikely]]
      check_sized_free(p, size, caller);
  }
  free(p, caller);
}

inline void* calloc(std::size_t n, std::size_t size,
                    std::uintptr_t caller) noexcept {
  std::size_t bytes;
  if (__builtin_mul_overflow(n, size, &bytes)) [[unlikely]]
    return fail_enomem(SIZE_MAX, caller);
  if (bytes <= 1024) {  // the inlined fast path, then a short memset
    void* p = alloc(bytes, caller);
    if (p != nullptr) std::memset(p, 0, bytes);
    return p;
  }
  if (secure_on()) [[unlikely]] {
    void* p = secure_alloc(bytes, kNaturalAlignment, caller);
    if (p != nullptr) std::memset(p, 0, bytes);
    return p;
  }
  // Big blocks fresh from the OS are already zero: the engine skips the
  // memset, so calloc(100 MiB) costs no RSS until it is touched.
  void* p = bytes <= kMaxRequest ? engine::alloc_zeroed(bytes) : nullptr;
  if (p == nullptr) [[unlikely]]
    return fail_enomem(bytes, caller);
  return p;
}

// realloc(), out of line (see alloc_slow).
[[gnu::noinline]] void* realloc_slow(void* p, std::size_t size, std::uintptr_t caller) noexcept;

// glibc semantics: realloc(NULL, n) = malloc(n); realloc(p, 0) frees p and
// returns NULL; on failure p is untouched and errno = ENOMEM.
inline void* realloc(void* p, std::size_t size,
                     std::uintptr_t caller) noexcept {
  if (p == nullptr) return alloc(size, caller);
  if (size == 0) {
    free(p, caller);
    return nullptr;
  }
  if (size > kMaxRequest) [[unlikely]]
    return fail_enomem(size, caller);
  if (!engine::inline_owns(p)) [[unlikely]]
    return realloc_not_engine(p, size, caller);
  if (const char* why = engine::check_block(p)) [[unlikely]] {
    invalid_pointer("realloc", p, why, caller);
    errno = EINVAL;
    return nullptr;
  }
  if (secure_on()) [[unlikely]]
    return secure_realloc(p, size, caller);
  void* q = engine::realloc(p, size);
  if (q == nullptr) [[unlikely]]
    return fail_enomem(size, caller);
  return q;
}

// glibc semantics: alignments below 16 are malloc; a non-power-of-two
// alignment is rounded up to the next power of two; absurd ones are EINVAL.
inline void* memalign(std::size_t alignment, std::size_t size,
                      std::uintptr_t caller) noexcept {
  if (alignment <= kNaturalAlignment) return alloc(size, caller);
  if (alignment > kMaxRequest + 1) {
    report("memalign: invalid alignment", nullptr, alignment, caller, false, "alignment");
    errno = EINVAL;
    return nullptr;
  }
  if (!is_pow2(alignment)) {
    alignment = std::size_t{1} << (64 - __builtin_clzl(alignment));
  }
  return alloc_aligned(size, alignment, caller);
}

// Page-aligned, size rounded up to whole pages (0 -> one page).
inline void* pvalloc(std::size_t size, std::uintptr_t caller) noexcept {
  std::size_t page = page_size();
  std::size_t rounded;
  if (__builtin_add_overflow(size, page - 1, &rounded)) [[unlikely]]
    return fail_enomem(size, caller);
  rounded &= ~(page - 1);
  if (rounded == 0) rounded = page;
  return alloc_aligned(rounded, page, caller);
}

}  // namespace alloy::malloc_adapter::internal
