// Allocation, free and resize inside the mapping, and the Allocator vtable
// of alloy::SharedHeap. Not a public API (allocators/shared_heap and its tests).
//
// Each function takes the HeapLock itself and changes the chain only by the
// ordered commits of recovery.h ("Crash consistency"), with the intent record
// naming the block in flight.
//
// Cost: one lock, then O(1) for small sizes (exact classes) or a scan of one
// power-of-two bin; free coalesces with both neighbours in O(1).
// Thread safety: any thread of any attached process.
//
// Example:
//   void* p = heap_alloc(h, 100, Alignment::of<double>());
//   SharedFreeStatus st = heap_free(h, p, 100, Alignment::of<double>());
#pragma once

#include <cstddef>

#include "alloy/alloc_iface/alignment.h"
#include "alloy/alloc_iface/allocator.h"
#include "alloy/allocators/shared_heap/internal/layout.h"
#include "alloy/allocators/shared_heap/shared_heap.h"

namespace alloy::shared_heap_internal {

// A block for `len` bytes at `alignment`, or null (no room, cap, corrupt).
void* heap_alloc(Header* h, std::size_t len, Alignment alignment);

// Frees a live block of exactly (len, alignment), or says why not.
SharedFreeStatus heap_free(Header* h, void* p, std::size_t len, Alignment alignment);

// Resizes a live block of (len, alignment) in place to new_len; false if not.
bool heap_resize(Header* h, void* p, std::size_t len, Alignment alignment,
                 std::size_t new_len);

// The table of SharedHeap::allocator(); its context is the Header.
extern const VTable kVTable;

}  // namespace alloy::shared_heap_internal
