// pmr both ways: alloy handles as std::pmr::memory_resource, and back.
//
// * alloy::MemoryResource wraps a handle so any std::pmr container
//   (std::pmr::vector, std::pmr::string, ...) allocates through alloy. As pmr
//   requires, an allocation that cannot be served throws std::bad_alloc.
// * alloy::resource_allocator(r) gives a handle over any memory_resource,
//   so alloy-taking libraries can use monotonic_buffer_resource,
//   unsynchronized_pool_resource, or a resource of your own. A throwing
//   resource becomes a null (out of memory) result; nothing escapes.
//
// A MemoryResource records, as the call site of each allocation, the caller
// of its (out-of-line) do_allocate: std::pmr::memory_resource::allocate, or,
// where the compiler inlines that, the code calling it (a pmr container's own
// member, or the user's line for direct use). pmr has no way to pass the
// user's address through. A handle over a resource refuses sizes over
// PTRDIFF_MAX (rounded to the alignment) with kSizeOverflow before the
// resource sees them, as every handle does.
//
// MemoryResource::allocate_at_least(bytes, alignment) gives the handle's
// size feedback to callers that want it (pmr itself has no such call).
//
// Cost: one virtual call plus one indirect call. resize is never in place
// and remap always says "copy it yourself" through a resource, since pmr has
// neither. Thread safety: as the wrapped resource or handle.
//
// Example:
//   std::pmr::monotonic_buffer_resource mono;
//   alloy::Allocator a = alloy::resource_allocator(&mono);  // handle over pmr
//   alloy::MemoryResource res(alloy::c_allocator());        // pmr over handle
//   std::pmr::vector<int> v(&res);
//   v.push_back(42);
#pragma once

#include <memory_resource>

#include "alloy/alloc_iface/allocator.h"

namespace alloy {

class MemoryResource final : public std::pmr::memory_resource {
 public:
  explicit MemoryResource(Allocator handle) noexcept : handle_(handle) {}
  Allocator handle() const noexcept { return handle_; }

  // allocate() with size feedback (as C++23's allocate_at_least): at least
  // `bytes`, `count` bytes really usable, from the handle's alloc_at_least.
  // deallocate(ptr, n, alignment) takes any n from `bytes` to `count`.
  // Throws std::bad_alloc as allocate() does.
  AllocationResult<void*> allocate_at_least(std::size_t bytes,
                                            std::size_t alignment = alignof(std::max_align_t));

 private:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override;
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override;
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override;

  Allocator handle_;
};

// A handle over `resource`, which must outlive every use of the handle.
Allocator resource_allocator(std::pmr::memory_resource* resource);

}  // namespace alloy
