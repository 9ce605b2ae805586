// alloy::StdAllocator<T> — an STL allocator over an alloy::Allocator handle.
//
// Lets std::vector, std::map, std::string, std::unordered_map and friends
// draw their memory from any alloy allocator. The STL's contract has no way
// to report failure but an exception, so allocate() throws std::bad_alloc
// (std::bad_array_new_length on overflow) — the one place alloy throws, and
// only because the container asked for it. Frees are sized, as alloy wants.
//
// The address recorded with each call (what DebugAllocator reports as the
// call site) is that of the code calling allocate()/deallocate(): for a
// container, its own member (std::vector<...>::_M_realloc_insert, ...), since
// the STL is the caller; for direct use, the user's line. Both are kept out
// of line so that holds in every build mode.
//
// allocate_at_least(n) (C++23's, a member in C++20 too) returns {ptr, count}
// from the handle's size feedback; deallocate takes any n from the asked one
// to count.
//
// Cost: one indirect call per allocate/deallocate; the object is the two-word
// handle. Copies compare equal when they share ctx and vtable, so containers
// can swap and move storage between them. Thread safety: as the handle's.
//
// Example:
//   alloy::Arena arena(alloy::page_allocator());
//   alloy::StdAllocator<int> stl(arena.allocator());
//   std::vector<int, alloy::StdAllocator<int>> v(stl);
//   v.assign({3, 1, 2});
//   std::map<int, int, std::less<>, alloy::StdAllocator<std::pair<const int, int>>> m(stl);
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>

#include "alloy/alloc_iface/allocator.h"

namespace alloy {

template <class T>
class StdAllocator {
 public:
  using value_type = T;
  using propagate_on_container_copy_assignment = std::true_type;
  using propagate_on_container_move_assignment = std::true_type;
  using propagate_on_container_swap = std::true_type;
  using is_always_equal = std::false_type;

  explicit StdAllocator(Allocator handle) noexcept : handle_(handle) {}
  template <class U>
  StdAllocator(const StdAllocator<U>& other) noexcept  // NOLINT: rebinding
      : handle_(other.handle()) {}

  [[nodiscard]] ALLOY_HELPER T* allocate(std::size_t n) {
    std::size_t bytes = 0;
    if (detail::mul_overflows(n, sizeof(T), &bytes) ||
        !detail::size_fits(bytes, Alignment::of<T>())) {
      throw std::bad_array_new_length();
    }
    if (n == 0) n = 1;  // the STL may ask for zero; the handle never sees it
    void* p = handle_.raw_alloc(n * sizeof(T), Alignment::of<T>(), ALLOY_RETURN_ADDRESS());
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }

  // C++23's allocate_at_least, in C++20 too (a member; std::allocator_traits
  // reaches it from C++23 on): at least n elements, `count` of them usable
  // (what the handle's alloc_at_least reported, in whole T). deallocate takes
  // any n from the asked one to `count`. Throws as allocate().
#if defined(__cpp_lib_allocate_at_least)
  using AtLeast = std::allocation_result<T*, std::size_t>;
#else
  using AtLeast = AllocationResult<T*>;
#endif
  [[nodiscard]] ALLOY_HELPER AtLeast allocate_at_least(std::size_t n) {
    std::size_t bytes = 0;
    if (detail::mul_overflows(n, sizeof(T), &bytes) ||
        !detail::size_fits(bytes, Alignment::of<T>())) {
      throw std::bad_array_new_length();
    }
    if (n == 0) n = 1;
    Bytes b = handle_.raw_alloc_at_least(n * sizeof(T), Alignment::of<T>(),
                                         ALLOY_RETURN_ADDRESS());
    if (b.data() == nullptr) throw std::bad_alloc();
    return {reinterpret_cast<T*>(b.data()), b.size() / sizeof(T)};
  }

  ALLOY_HELPER void deallocate(T* p, std::size_t n) noexcept {
    if (p == nullptr) return;
    if (n == 0) n = 1;
    handle_.raw_free(Bytes(reinterpret_cast<std::byte*>(p), n * sizeof(T)),
                     Alignment::of<T>(), ALLOY_RETURN_ADDRESS());
  }

  Allocator handle() const noexcept { return handle_; }

  template <class U>
  friend bool operator==(const StdAllocator& a, const StdAllocator<U>& b) noexcept {
    return a.handle() == b.handle();
  }

 private:
  Allocator handle_;
};

}  // namespace alloy
