// alloy::FallbackAllocator — try a primary allocator, else a fallback; route
// everything else by who owns the block. alloy::StackFallback<N> is the ready
// form with an inline N-byte buffer as the primary (Zig's
// StackFallbackAllocator, generalised to any pair).
//
// Ownership is answered by the primary's handle (its VTable's owns entry,
// Allocator::owns): the two-handle constructor needs nothing else. When the
// primary cannot tell (kUnknown), the fallback is asked instead (its kNo
// means the primary's). An `Owner` given to the three-argument constructor
// overrides both: a function pointer and a context, `owns(ctx, ptr)`, true
// when `ptr` came from the primary; `Owner::of(obj)` builds one from any
// object with `bool owns(const void*) const`, `AddressRange{begin,
// end}.owner()` from an address range (for a primary whose table cannot answer). alloc (and
// alloc_at_least, alloc_zeroed) tries the primary and, if it returns null,
// the fallback. resize, remap and free go to whichever owns the block;
// nothing migrates inside resize/remap: a primary block that cannot grow
// returns null/false and the caller's realloc moves it (alloc, copy, free),
// which may land it in the fallback. Its own owns answers kYes for either
// child's blocks.
//
// Cost: alloc is one indirect call (two when the primary is full); the other
// calls add one ownership test (an indirect call to the primary's owns entry
// or to the Owner; two compares for an address range or StackFallback's
// buffer) before the child's call.
// Thread safety: as the two children and the Owner together. StackFallback's
// inline buffer is single-threaded; share it through ThreadSafeAllocator.
//
// Wrong frees: a block the Owner claims goes to the primary, any other to the
// fallback, and gets whatever that child promises (c_allocator: glibc's own
// checks; a checked alloy allocator: refused and reported).
// StackFallback's inline buffer follows the bump rules (BumpAllocator): a
// free reaching at or above its cursor (double free, after reset_inline())
// is refused and reported in every build, an older block is a no-op.
//
// Example:
//   alloy::StackFallback<4096> sf(alloy::c_allocator());
//   alloy::Allocator a = sf.allocator();
//   auto small = a.alloc<char>(100);        // from the inline buffer
//   auto large = a.alloc<char>(1 << 20);    // too big: from malloc
//   a.free(*large); a.free(*small);         // each goes back where it came from
#pragma once

#include <cstddef>
#include <cstdint>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/alloc_iface/make_vtable.h"

namespace alloy {

// Answers "did this pointer come from the primary?".
struct Owner {
  bool (*owns)(const void* ctx, const void* ptr) = nullptr;
  const void* ctx = nullptr;

  bool operator()(const void* ptr) const { return owns(ctx, ptr); }

  // From any object with `bool owns(const void*) const`; `object` must
  // outlive the Owner.
  template <class T>
  static Owner of(const T& object) {
    return Owner{[](const void* ctx, const void* ptr) {
                   return static_cast<const T*>(ctx)->owns(ptr);
                 },
                 &object};
  }
};

// An address range [begin, end) as an ownership test; the range object must
// outlive the Owner made from it.
struct AddressRange {
  const std::byte* begin = nullptr;
  const std::byte* end = nullptr;
  bool owns(const void* ptr) const {
    const auto p = reinterpret_cast<std::uintptr_t>(ptr);
    return p >= reinterpret_cast<std::uintptr_t>(begin) &&
           p < reinterpret_cast<std::uintptr_t>(end);
  }
  Owner owner() const { return Owner::of(*this); }
};

class FallbackAllocator {
 public:
  // Routes by the handles' own owns entries: the primary's, else the
  // fallback's. Without NDEBUG, aborts if neither table has one.
  FallbackAllocator(Allocator primary, Allocator fallback)
      : primary_(primary), fallback_(fallback) {
    ALLOY_DETAIL_CONTRACT(primary.vtable->owns != nullptr || fallback.vtable->owns != nullptr,
                          "FallbackAllocator: neither handle can answer owns(); pass an Owner");
  }
  // Routes by `primary_owns` (an override for primaries whose table cannot
  // answer owns).
  FallbackAllocator(Allocator primary, Owner primary_owns, Allocator fallback)
      : primary_(primary), owns_(primary_owns), fallback_(fallback) {}
  FallbackAllocator(const FallbackAllocator&) = delete;
  FallbackAllocator& operator=(const FallbackAllocator&) = delete;

  // The handle; valid while this object lives.
  Allocator allocator() { return Allocator{this, &vtable_for<FallbackAllocator>}; }
  Allocator primary() const { return primary_; }
  Allocator fallback() const { return fallback_; }
  bool primary_owns(const void* ptr) const {
    if (owns_.owns != nullptr) return owns_(ptr);
    const Ownership o = primary_.owns(ptr);
    if (o != Ownership::kUnknown) return o == Ownership::kYes;
    return fallback_.owns(ptr) == Ownership::kNo;
  }

 private:
  ALLOY_VTABLE_ENTRIES;  // the handle's entries (make_vtable.h)
  static void* vt_alloc(void* ctx, std::size_t len, Alignment alignment,
                        std::uintptr_t ret_addr);
  static bool vt_resize(void* ctx, Bytes memory, Alignment alignment,
                        std::size_t new_len, std::uintptr_t ret_addr);
  static void* vt_remap(void* ctx, Bytes memory, Alignment alignment,
                        std::size_t new_len, std::uintptr_t ret_addr);
  static void vt_free(void* ctx, Bytes memory, Alignment alignment,
                      std::uintptr_t ret_addr);
  static Bytes vt_alloc_at_least(void* ctx, std::size_t len, Alignment alignment,
                                 std::uintptr_t ret_addr);
  static void* vt_alloc_zeroed(void* ctx, std::size_t len, Alignment alignment,
                               std::uintptr_t ret_addr);
  static Ownership vt_owns(void* ctx, const void* ptr);

  const Allocator& route(const void* ptr) const {
    return primary_owns(ptr) ? primary_ : fallback_;
  }

  Allocator primary_;
  Owner owns_;  // empty: ask the handles
  Allocator fallback_;
};

namespace detail {

// The smallest bump allocator over a caller's buffer, for StackFallback:
// alloc bumps; resize and free act on the last block only (shrinking any
// block in place is accepted, its bytes are not reclaimed). Not thread-safe.
class InlineBump {
 public:
  InlineBump(std::byte* begin, std::size_t size)
      : begin_(begin), cur_(begin), end_(begin + size) {}
  InlineBump(const InlineBump&) = delete;
  InlineBump& operator=(const InlineBump&) = delete;

  Allocator allocator() { return Allocator{this, &vtable_for<InlineBump>}; }
  bool owns(const void* ptr) const {
    const auto p = reinterpret_cast<std::uintptr_t>(ptr);
    return p >= reinterpret_cast<std::uintptr_t>(begin_) &&
           p < reinterpret_cast<std::uintptr_t>(end_);
  }
  std::size_t used() const { return static_cast<std::size_t>(cur_ - begin_); }
  std::size_t capacity() const { return static_cast<std::size_t>(end_ - begin_); }
  void reset() { cur_ = begin_; }
  std::size_t refused_frees() const { return refused_; }

 private:
  ALLOY_VTABLE_ENTRIES;  // the handle's entries (make_vtable.h)
  static void* vt_alloc(void* ctx, std::size_t len, Alignment alignment,
                        std::uintptr_t ret_addr);
  static bool vt_resize(void* ctx, Bytes memory, Alignment alignment,
                        std::size_t new_len, std::uintptr_t ret_addr);
  static void* vt_remap(void* ctx, Bytes memory, Alignment alignment,
                        std::size_t new_len, std::uintptr_t ret_addr);
  static void vt_free(void* ctx, Bytes memory, Alignment alignment,
                      std::uintptr_t ret_addr);
  static Ownership vt_owns(void* ctx, const void* ptr) {
    return ownership(static_cast<InlineBump*>(ctx)->owns(ptr));
  }

  bool is_last(Bytes memory) const { return memory.data() + memory.size() == cur_; }

  std::byte* begin_;
  std::byte* cur_;
  std::byte* end_;
  std::size_t refused_ = 0;
};

}  // namespace detail

// FallbackAllocator whose primary is an inline N-byte buffer (on the stack
// when the StackFallback is a local). Cannot be copied or moved: the handle
// points into it.
template <std::size_t N>
class StackFallback {
  static_assert(N > 0, "StackFallback needs a buffer");

 public:
  explicit StackFallback(Allocator fallback)
      : bump_(buffer_, N), fallback_(bump_.allocator(), fallback) {}
  StackFallback(const StackFallback&) = delete;
  StackFallback& operator=(const StackFallback&) = delete;

  Allocator allocator() { return fallback_.allocator(); }

  // Whether `ptr` lies in the inline buffer.
  bool owns_inline(const void* ptr) const { return bump_.owns(ptr); }
  std::size_t inline_used() const { return bump_.used(); }
  static constexpr std::size_t inline_capacity() { return N; }
  // Rewinds the inline buffer. Only when none of its blocks is still in use.
  void reset_inline() { bump_.reset(); }
  // Wrong frees the inline buffer refused (see the header comment).
  std::size_t inline_refused_frees() const { return bump_.refused_frees(); }

 private:
  alignas(std::max_align_t) std::byte buffer_[N];
  detail::InlineBump bump_;
  FallbackAllocator fallback_;
};

}  // namespace alloy
