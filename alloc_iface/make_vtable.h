// alloy::make_vtable<T>() — the one way to build an allocator's VTable from
// its member functions, and alloy::vtable_for<T>, the table itself.
//
// T names each entry with a fixed member name, in one of two forms:
//  * a non-static member without the ctx argument; the handle's ctx is then
//    a T* (the allocator object itself):
//      void* vt_alloc(std::size_t len, Alignment alignment, std::uintptr_t ret);
//      bool  vt_resize(Bytes memory, Alignment alignment, std::size_t new_len,
//                      std::uintptr_t ret);
//      void* vt_remap(Bytes memory, Alignment alignment, std::size_t new_len,
//                     std::uintptr_t ret);
//      void  vt_free(Bytes memory, Alignment alignment, std::uintptr_t ret);
//      Bytes vt_alloc_at_least(std::size_t len, Alignment alignment, std::uintptr_t ret);
//      void* vt_alloc_zeroed(std::size_t len, Alignment alignment, std::uintptr_t ret);
//      bool  vt_owns(const void* ptr);            // or Ownership; may be const
//  * a static member with the VTable field's exact signature (ctx first), for
//    allocators whose ctx is not a T* (stateless ones pass null; a policy
//    struct such as CountingAllocator's Ops<kShared> casts ctx itself).
// vt_alloc is required. A missing vt_resize is no_resize (never in place), a
// missing vt_remap no_remap (null: "alloc + copy + free yourself"), a missing
// vt_free no_free. The optional entries (vt_alloc_at_least, vt_alloc_zeroed,
// vt_owns) stay null when missing, and the handle's helpers fall back (the
// asked length; alloc + memset; Ownership::kUnknown), so an allocator without
// them pays nothing and branches nowhere. See VTable (allocator.h) for each
// entry's contract.
//
// The entries may be private: put ALLOY_VTABLE_ENTRIES in the class (it
// befriends the builder, and nothing else).
//
// Cost: none at run time. A non-static entry is a static trampoline that
// casts ctx and calls the member (inlined into it); a static entry is used
// as it is. Thread safety: not applicable (constant tables).
//
// Example:
//   class Bump {
//    public:
//     alloy::Allocator allocator() { return {this, &alloy::vtable_for<Bump>}; }
//    private:
//     ALLOY_VTABLE_ENTRIES;
//     void* vt_alloc(std::size_t len, alloy::Alignment a, std::uintptr_t ret);
//     void vt_free(alloy::Bytes memory, alloy::Alignment a, std::uintptr_t ret);
//   };
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "alloy/alloc_iface/allocator.h"

namespace alloy {
namespace detail {

template <class T>
struct VTableAccess {
  using AllocFn = void* (*)(void*, std::size_t, Alignment, std::uintptr_t);
  using ResizeFn = bool (*)(void*, Bytes, Alignment, std::size_t, std::uintptr_t);
  using RemapFn = void* (*)(void*, Bytes, Alignment, std::size_t, std::uintptr_t);
  using FreeFn = void (*)(void*, Bytes, Alignment, std::uintptr_t);
  using AtLeastFn = Bytes (*)(void*, std::size_t, Alignment, std::uintptr_t);
  using OwnsFn = Ownership (*)(void*, const void*);

  // The static form: the member converts to the field's pointer type.
  static constexpr bool kStaticAlloc = requires { static_cast<AllocFn>(&T::vt_alloc); };
  static constexpr bool kStaticResize = requires { static_cast<ResizeFn>(&T::vt_resize); };
  static constexpr bool kStaticRemap = requires { static_cast<RemapFn>(&T::vt_remap); };
  static constexpr bool kStaticFree = requires { static_cast<FreeFn>(&T::vt_free); };
  static constexpr bool kStaticAtLeast = requires { static_cast<AtLeastFn>(&T::vt_alloc_at_least); };
  static constexpr bool kStaticZeroed = requires { static_cast<AllocFn>(&T::vt_alloc_zeroed); };
  static constexpr bool kStaticOwns = requires { static_cast<OwnsFn>(&T::vt_owns); };

  // The member form: callable on a T* without ctx.
  static constexpr bool kMemberAlloc =
      requires(T* t, std::size_t n, Alignment a, std::uintptr_t r) {
        { t->vt_alloc(n, a, r) } -> std::same_as<void*>;
      };
  static constexpr bool kMemberResize =
      requires(T* t, Bytes m, Alignment a, std::size_t n, std::uintptr_t r) {
        { t->vt_resize(m, a, n, r) } -> std::same_as<bool>;
      };
  static constexpr bool kMemberRemap =
      requires(T* t, Bytes m, Alignment a, std::size_t n, std::uintptr_t r) {
        { t->vt_remap(m, a, n, r) } -> std::same_as<void*>;
      };
  static constexpr bool kMemberFree = requires(T* t, Bytes m, Alignment a, std::uintptr_t r) {
    t->vt_free(m, a, r);
  };
  static constexpr bool kMemberAtLeast =
      requires(T* t, std::size_t n, Alignment a, std::uintptr_t r) {
        { t->vt_alloc_at_least(n, a, r) } -> std::same_as<Bytes>;
      };
  static constexpr bool kMemberZeroed =
      requires(T* t, std::size_t n, Alignment a, std::uintptr_t r) {
        { t->vt_alloc_zeroed(n, a, r) } -> std::same_as<void*>;
      };
  static constexpr bool kMemberOwns = requires(T* t, const void* p) {
    { t->vt_owns(p) } -> std::convertible_to<bool>;
  } || requires(T* t, const void* p) {
    { t->vt_owns(p) } -> std::same_as<Ownership>;
  };

  static T* self(void* ctx) { return static_cast<T*>(ctx); }

  static void* alloc(void* ctx, std::size_t len, Alignment a, std::uintptr_t r) {
    return self(ctx)->vt_alloc(len, a, r);
  }
  static bool resize(void* ctx, Bytes m, Alignment a, std::size_t n, std::uintptr_t r) {
    return self(ctx)->vt_resize(m, a, n, r);
  }
  static void* remap(void* ctx, Bytes m, Alignment a, std::size_t n, std::uintptr_t r) {
    return self(ctx)->vt_remap(m, a, n, r);
  }
  static void free(void* ctx, Bytes m, Alignment a, std::uintptr_t r) {
    self(ctx)->vt_free(m, a, r);
  }
  static Bytes alloc_at_least(void* ctx, std::size_t len, Alignment a, std::uintptr_t r) {
    return self(ctx)->vt_alloc_at_least(len, a, r);
  }
  static void* alloc_zeroed(void* ctx, std::size_t len, Alignment a, std::uintptr_t r) {
    return self(ctx)->vt_alloc_zeroed(len, a, r);
  }
  static Ownership owns(void* ctx, const void* p) {
    if constexpr (std::is_same_v<decltype(self(ctx)->vt_owns(p)), Ownership>) {
      return self(ctx)->vt_owns(p);
    } else {
      return ownership(self(ctx)->vt_owns(p));
    }
  }

  static constexpr VTable make() {
    static_assert(kStaticAlloc || kMemberAlloc,
                  "make_vtable<T>: T needs vt_alloc(len, alignment, ret_addr) (a member), or "
                  "a static vt_alloc(ctx, len, alignment, ret_addr)");
    VTable v{nullptr, &no_resize, &no_remap, &no_free};
    if constexpr (kStaticAlloc) {
      v.alloc = &T::vt_alloc;
    } else {
      v.alloc = &alloc;
    }
    if constexpr (kStaticResize) {
      v.resize = &T::vt_resize;
    } else if constexpr (kMemberResize) {
      v.resize = &resize;
    }
    if constexpr (kStaticRemap) {
      v.remap = &T::vt_remap;
    } else if constexpr (kMemberRemap) {
      v.remap = &remap;
    }
    if constexpr (kStaticFree) {
      v.free = &T::vt_free;
    } else if constexpr (kMemberFree) {
      v.free = &free;
    }
    if constexpr (kStaticAtLeast) {
      v.alloc_at_least = &T::vt_alloc_at_least;
    } else if constexpr (kMemberAtLeast) {
      v.alloc_at_least = &alloc_at_least;
    }
    if constexpr (kStaticZeroed) {
      v.alloc_zeroed = &T::vt_alloc_zeroed;
    } else if constexpr (kMemberZeroed) {
      v.alloc_zeroed = &alloc_zeroed;
    }
    if constexpr (kStaticOwns) {
      v.owns = &T::vt_owns;
    } else if constexpr (kMemberOwns) {
      v.owns = &owns;
    }
    return v;
  }
};

}  // namespace detail

// The table of T's entries (see the header comment).
template <class T>
constexpr VTable make_vtable() {
  return detail::VTableAccess<T>::make();
}

// One table per T, shared by every handle to a T: Allocator{this, &vtable_for<T>}.
template <class T>
inline constexpr VTable vtable_for = make_vtable<T>();

}  // namespace alloy
