#include "alloy/adapters/pmr.h"

#include <new>

#include "alloy/alloc_iface/make_vtable.h"

namespace alloy {
namespace {

Alignment alignment_of_bytes(std::size_t alignment) {
  auto a = Alignment::from_bytes(alignment);
  return a ? *a : Alignment::of<std::max_align_t>();
}

// A handle over a memory_resource: no resize, no remap (the resource has
// neither), so the builder puts no_resize and no_remap in the table.
struct ResourceEntries {
  static void* vt_alloc(void* ctx, std::size_t len, Alignment alignment, std::uintptr_t) {
    auto* resource = static_cast<std::pmr::memory_resource*>(ctx);
    try {
      return resource->allocate(len, alignment.bytes());
    } catch (...) {
      // The handle reports failure as null; no exception crosses it.
      return nullptr;
    }
  }

  static void vt_free(void* ctx, Bytes memory, Alignment alignment, std::uintptr_t) {
    static_cast<std::pmr::memory_resource*>(ctx)->deallocate(memory.data(), memory.size(),
                                                             alignment.bytes());
  }
};

}  // namespace

void* MemoryResource::do_allocate(std::size_t bytes, std::size_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) throw std::bad_alloc();
  if (bytes == 0) bytes = 1;
  void* p = handle_.raw_alloc(bytes, alignment_of_bytes(alignment), ALLOY_RETURN_ADDRESS());
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void MemoryResource::do_deallocate(void* p, std::size_t bytes, std::size_t alignment) {
  if (p == nullptr) return;
  if (bytes == 0) bytes = 1;
  handle_.raw_free(Bytes(static_cast<std::byte*>(p), bytes), alignment_of_bytes(alignment),
                   ALLOY_RETURN_ADDRESS());
}

AllocationResult<void*> MemoryResource::allocate_at_least(std::size_t bytes,
                                                          std::size_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) throw std::bad_alloc();
  if (bytes == 0) bytes = 1;
  Bytes b = handle_.raw_alloc_at_least(bytes, alignment_of_bytes(alignment),
                                       ALLOY_RETURN_ADDRESS());
  if (b.data() == nullptr) throw std::bad_alloc();
  return {b.data(), b.size()};
}

bool MemoryResource::do_is_equal(const std::pmr::memory_resource& other) const noexcept {
  if (this == &other) return true;
  auto* o = dynamic_cast<const MemoryResource*>(&other);
  return o != nullptr && o->handle_ == handle_;
}

Allocator resource_allocator(std::pmr::memory_resource* resource) {
  return Allocator{resource, &vtable_for<ResourceEntries>};
}

}  // namespace alloy
