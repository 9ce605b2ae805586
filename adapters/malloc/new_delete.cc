// Every replaceable form of operator new/delete on top of alloy::engine.
//
// new: retries through std::get_new_handler() until it succeeds; with no
// handler installed it throws std::bad_alloc (nothrow forms return null, and
// a handler that throws makes them return null). delete: sized forms pass the
// size on (checked against the block in debug builds); pointers the engine
// does not own are ignored like in free().
//
// No link-time dependency on libstdc++: liballoy_malloc.so is preloaded into
// C programs too, and must not drag libstdc++, libm and libgcc_s into every
// process (issue 12: 0.5 ms and ~0.9 MiB RSS per process). Every C++ runtime
// symbol this file uses is a weak reference (the .weak directives below). In
// a C++ program libstdc++ is loaded, the dynamic linker binds them, and
// operator new throws a real std::bad_alloc that the program can catch. In a
// program without libstdc++ nothing can catch an exception anyway, so a
// failed throwing new reports and aborts, as an uncaught bad_alloc would.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#include "alloy/adapters/malloc/malloc_internal.h"
#include "alloy/allocators/engine/engine.h"

namespace adapter = alloy::malloc_adapter::internal;

// The C++ runtime, weakly. std::__throw_bad_alloc (libstdc++'s own
// `throw std::bad_alloc()`) builds and throws the exception inside libstdc++,
// so this file names no typeinfo, vtable or constructor of it. What remains
// is what catch (...) and the cleanups compile to (Itanium C++ ABI) and
// std::get_new_handler. A weak undefined symbol adds no DT_NEEDED under
// --as-needed and binds to libstdc++ whenever a C++ program has loaded it.
asm(".weak __cxa_begin_catch\n"
    ".weak __cxa_end_catch\n"
    ".weak __gxx_personality_v0\n"
    ".weak _Unwind_Resume\n");
// The two this file tests for null are declared weak to the compiler too, so
// it does not fold `&f != nullptr` to true.
namespace std {
[[noreturn, gnu::weak]] void __throw_bad_alloc();
[[gnu::weak]] new_handler get_new_handler() noexcept;
}  // namespace std

namespace {

#define ALLOY_CALLER() \
  (reinterpret_cast<std::uintptr_t>(__builtin_return_address(0)))

// The request failed: either the new_handler frees something and we retry, or
// there is none and we give up. Returns false when the caller must give up.
[[gnu::cold]] bool call_new_handler() {
  if (&std::get_new_handler == nullptr) return false;  // no C++ runtime loaded
  std::new_handler handler = std::get_new_handler();
  if (handler == nullptr) return false;
  handler();
  return true;
}

// `throw std::bad_alloc()`, or, with no C++ runtime in the process (a C
// program whose C++ library was dlopen()ed without RTLD_GLOBAL, say), the
// report and abort an uncaught exception would end in.
[[noreturn, gnu::noinline, gnu::cold]] void throw_bad_alloc(std::size_t size,
                                                            std::uintptr_t caller) {
  if (&std::__throw_bad_alloc != nullptr) std::__throw_bad_alloc();
  adapter::report("operator new: out of memory, and no C++ runtime to throw std::bad_alloc",
                  nullptr, size, caller, true);
  std::abort();
}

[[gnu::noinline, gnu::cold]] void* new_slow(std::size_t size,
                                            std::size_t alignment,
                                            std::uintptr_t caller) {
  for (;;) {
    if (!call_new_handler()) throw_bad_alloc(size, caller);
    void* p = adapter::alloc_aligned(size, alignment, caller);
    if (p != nullptr) return p;
  }
}

[[gnu::noinline, gnu::cold]] void* new_nothrow_slow(
    std::size_t size, std::size_t alignment, std::uintptr_t caller) noexcept {
  try {
    return new_slow(size, alignment, caller);
  } catch (...) {
    return nullptr;
  }
}

inline void* new_impl(std::size_t size, std::size_t alignment,
                      std::uintptr_t caller) {
  void* p = adapter::alloc_aligned(size, alignment, caller);
  if (p != nullptr) [[likely]]
    return p;
  return new_slow(size, alignment, caller);
}

inline void* new_nothrow_impl(std::size_t size, std::size_t alignment,
                              std::uintptr_t caller) noexcept {
  void* p = adapter::alloc_aligned(size, alignment, caller);
  if (p != nullptr) [[likely]]
    return p;
  return new_nothrow_slow(size, alignment, caller);
}

// new_impl / new_nothrow_impl for the natural alignment, out of line: the
// slow halves of operator new, whose inlined fast half is the engine's list
// pop (so the fast path saves no registers).
// An AccountScope's thread takes the scoped fast lane first (alloc_slow).
[[gnu::noinline]] void* new_natural_slow(std::size_t size, std::uintptr_t caller) {
  if (!adapter::maybe_secure()) [[likely]] {
    if (void* p = alloy::engine::detail::scope_try_alloc(size)) return p;
  }
  return new_impl(size, adapter::kNaturalAlignment, caller);
}
[[gnu::noinline]] void* new_natural_nothrow_slow(std::size_t size,
                                                 std::uintptr_t caller) noexcept {
  if (!adapter::maybe_secure()) [[likely]] {
    if (void* p = alloy::engine::detail::scope_try_alloc(size)) return p;
  }
  return new_nothrow_impl(size, adapter::kNaturalAlignment, caller);
}

// An alignment that is not a power of two is undefined behaviour for the
// caller; we treat it as an allocation that cannot be served.
inline std::size_t checked_alignment(std::align_val_t al) {
  std::size_t a = static_cast<std::size_t>(al);
  return adapter::is_pow2(a) ? a : SIZE_MAX;
}

inline void* aligned_new_impl(std::size_t size, std::align_val_t al,
                              std::uintptr_t caller) {
  std::size_t a = checked_alignment(al);
  if (a == SIZE_MAX) [[unlikely]] {
    adapter::report("operator new: alignment not a power of two", nullptr,
               static_cast<std::size_t>(al), caller, false, "alignment");
    throw_bad_alloc(size, caller);
  }
  return new_impl(size, a, caller);
}

inline void* aligned_new_nothrow_impl(std::size_t size, std::align_val_t al,
                                      std::uintptr_t caller) noexcept {
  std::size_t a = checked_alignment(al);
  if (a == SIZE_MAX) [[unlikely]] {
    adapter::report("operator new: alignment not a power of two", nullptr,
               static_cast<std::size_t>(al), caller, false, "alignment");
    return nullptr;
  }
  return new_nothrow_impl(size, a, caller);
}


}  // namespace

#define ALLOY_EXPORT [[gnu::visibility("default")]]

// ---- new ----
ALLOY_EXPORT void* operator new(std::size_t size) {
  if (void* p = alloy::engine::try_inline_alloc(size)) [[likely]] return p;
  return new_natural_slow(size, ALLOY_CALLER());
}
ALLOY_EXPORT void* operator new[](std::size_t size) {
  if (void* p = alloy::engine::try_inline_alloc(size)) [[likely]] return p;
  return new_natural_slow(size, ALLOY_CALLER());
}
ALLOY_EXPORT void* operator new(std::size_t size,
                                const std::nothrow_t&) noexcept {
  if (void* p = alloy::engine::try_inline_alloc(size)) [[likely]] return p;
  return new_natural_nothrow_slow(size, ALLOY_CALLER());
}
ALLOY_EXPORT void* operator new[](std::size_t size,
                                  const std::nothrow_t&) noexcept {
  if (void* p = alloy::engine::try_inline_alloc(size)) [[likely]] return p;
  return new_natural_nothrow_slow(size, ALLOY_CALLER());
}
ALLOY_EXPORT void* operator new(std::size_t size, std::align_val_t al) {
  return aligned_new_impl(size, al, ALLOY_CALLER());
}
ALLOY_EXPORT void* operator new[](std::size_t size, std::align_val_t al) {
  return aligned_new_impl(size, al, ALLOY_CALLER());
}
ALLOY_EXPORT void* operator new(std::size_t size, std::align_val_t al,
                                const std::nothrow_t&) noexcept {
  return aligned_new_nothrow_impl(size, al, ALLOY_CALLER());
}
ALLOY_EXPORT void* operator new[](std::size_t size, std::align_val_t al,
                                  const std::nothrow_t&) noexcept {
  return aligned_new_nothrow_impl(size, al, ALLOY_CALLER());
}

// ---- delete ----
ALLOY_EXPORT void operator delete(void* p) noexcept {
  if (alloy::engine::try_inline_free(p)) [[likely]] return;
  adapter::free_slow(p, ALLOY_CALLER());
}
ALLOY_EXPORT void operator delete[](void* p) noexcept {
  if (alloy::engine::try_inline_free(p)) [[likely]] return;
  adapter::free_slow(p, ALLOY_CALLER());
}
ALLOY_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept {
  adapter::free(p, ALLOY_CALLER());
}
ALLOY_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept {
  adapter::free(p, ALLOY_CALLER());
}
ALLOY_EXPORT void operator delete(void* p, std::size_t size) noexcept {
  // The size is only checked in debug builds; otherwise the block's page
  // knows its size class and this is an unsized free.
  if (!adapter::kCheckSizedFree && alloy::engine::try_inline_free(p)) [[likely]] return;
  adapter::free_sized_slow(p, size, ALLOY_CALLER());
}
ALLOY_EXPORT void operator delete[](void* p, std::size_t size) noexcept {
  // The size is only checked in debug builds; otherwise the block's page
  // knows its size class and this is an unsized free.
  if (!adapter::kCheckSizedFree && alloy::engine::try_inline_free(p)) [[likely]] return;
  adapter::free_sized_slow(p, size, ALLOY_CALLER());
}
ALLOY_EXPORT void operator delete(void* p, std::align_val_t) noexcept {
  adapter::free(p, ALLOY_CALLER());
}
ALLOY_EXPORT void operator delete[](void* p, std::align_val_t) noexcept {
  adapter::free(p, ALLOY_CALLER());
}
ALLOY_EXPORT void operator delete(void* p, std::align_val_t,
                                  const std::nothrow_t&) noexcept {
  adapter::free(p, ALLOY_CALLER());
}
ALLOY_EXPORT void operator delete[](void* p, std::align_val_t,
                                    const std::nothrow_t&) noexcept {
  adapter::free(p, ALLOY_CALLER());
}
ALLOY_EXPORT void operator delete(void* p, std::size_t size,
                                  std::align_val_t al) noexcept {
  adapter::free_aligned_sized(p, static_cast<std::size_t>(al), size,
                         ALLOY_CALLER());
}
ALLOY_EXPORT void operator delete[](void* p, std::size_t size,
                                    std::align_val_t al) noexcept {
  adapter::free_aligned_sized(p, static_cast<std::size_t>(al), size,
                         ALLOY_CALLER());
}
