// Peer allocators through their own APIs, for side-by-side benchmarks.
//
// What it is for: one struct per allocator with alloc(n) / free(p, n), so a
// benchmark template runs the same loop over each. glibc is reached through
// __libc_malloc (the process malloc may be a peer's, since the peers' shared
// libraries all export malloc, and mimalloc even exports __libc_malloc, so
// the functions are looked up in libc.so.6 itself); jemalloc through mallocx/sdallocx, tcmalloc
// through tc_malloc/tc_free_sized, mimalloc through mi_malloc/mi_free, and the
// engine through its inline fast path.
// Cost: that of the allocator. Thread safety: all are thread-safe.
//
// Example:
//   template <class A> void churn() {
//     void* p = A::alloc(32);
//     A::free(p, 32);
//   }
//   churn<Engine>(); churn<Mimalloc>();
#pragma once

#include <dlfcn.h>
#include <mimalloc.h>

#include <cstddef>

#include "alloy/allocators/engine/fast_path.h"
#include "alloy/allocators/engine/heap.h"

extern "C" {
void* mallocx(std::size_t, int);
void sdallocx(void*, std::size_t, int);
void* tc_malloc(std::size_t);
void tc_free_sized(void*, std::size_t);
}

namespace alloy::bench {

struct GlibcFns {
  void* (*malloc)(std::size_t);
  void (*free)(void*);
};
inline GlibcFns load_glibc() {
  void* h = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  GlibcFns f{};
  if (h != nullptr) {
    f.malloc = reinterpret_cast<void* (*)(std::size_t)>(dlsym(h, "__libc_malloc"));
    f.free = reinterpret_cast<void (*)(void*)>(dlsym(h, "__libc_free"));
  }
  return f;
}
inline const GlibcFns g_glibc = load_glibc();

struct Engine {
  static constexpr const char* kName = "engine";
  static void* alloc(std::size_t n) { return alloy::engine::inline_alloc(n); }
  static void free(void* p, std::size_t) { alloy::engine::inline_free(p); }
};
// A first-class alloy::Heap (allocation takes the heap's lock).
struct UserHeap {
  static constexpr const char* kName = "alloy::Heap";
  static alloy::Heap& heap() {
    static alloy::Heap h = std::move(*alloy::Heap::create());
    return h;
  }
  static void* alloc(std::size_t n) { return heap().alloc(n); }
  static void free(void* p, std::size_t) { alloy::Heap::free(p); }
};
struct Glibc {
  static constexpr const char* kName = "glibc";
  static void* alloc(std::size_t n) { return g_glibc.malloc(n); }
  static void free(void* p, std::size_t) { g_glibc.free(p); }
};
struct Jemalloc {
  static constexpr const char* kName = "jemalloc";
  static void* alloc(std::size_t n) { return mallocx(n, 0); }
  static void free(void* p, std::size_t n) { sdallocx(p, n, 0); }
};
struct Tcmalloc {
  static constexpr const char* kName = "tcmalloc";
  static void* alloc(std::size_t n) { return tc_malloc(n); }
  static void free(void* p, std::size_t n) { tc_free_sized(p, n); }
};
struct Mimalloc {
  static constexpr const char* kName = "mimalloc";
  static void* alloc(std::size_t n) { return mi_malloc(n); }
  static void free(void* p, std::size_t) { mi_free(p); }
};

}  // namespace alloy::bench
