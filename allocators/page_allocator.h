// alloy::page_allocator() — whole pages straight from the kernel.
//
// Every alloc is an mmap, every free an munmap: no headers, no caching, and
// memory goes back to the OS the moment it is freed. Alignments above the
// page size are honoured by over-reserving and trimming. `resize` grows or
// shrinks in place with mremap (no move); `remap` lets mremap move the pages,
// which copies nothing, so growing a large buffer is O(1) in its size.
//
// Wrong frees: there is no bookkeeping, only the kernel's. A pointer that is
// not page-aligned (interior, or not a block of this allocator) is REFUSED in
// every build, and so is a free the kernel rejects; in checked builds (no
// NDEBUG, or a sanitizer) so is a free whose first or last page is not mapped
// (a double free, or a foreign range) — asked of the kernel with mincore().
// Refusals unmap nothing and are reported on stderr with the caller's
// address. Not caught: a page-aligned range that is mapped but not ours (a
// foreign or wrong-size free unmaps it: munmap is not sized-checked), a
// double free after the kernel reused the range; release builds also miss
// double frees. Use a checked child-owning allocator (arena, pool) or the
// DebugAllocator in front when that matters.
//
// Optional entries: alloc_at_least reports whole pages (what free and resize
// round to); alloc_zeroed is alloc itself (fresh mappings are zero, no
// memset); no owns (mincore says mapped, not whose).
//
// Cost: one or two syscalls per call, rounding every length up to a page.
// Best as the child of an arena or pool, or for big buffers.
// Thread safety: fully thread-safe (the kernel serialises).
//
// Example:
//   alloy::Allocator pages = alloy::page_allocator();
//   auto buf = pages.alloc<std::byte>(1 << 20);          // 1 MiB, page-aligned
//   if (!buf) return;
//   auto bigger = pages.realloc(*buf, 64 << 20);          // mremap, no copy
//   pages.free(bigger ? *bigger : *buf);
#pragma once

#include <cstddef>

#include "alloy/alloc_iface/allocator.h"

namespace alloy {

Allocator page_allocator();

// The system page size (cached after the first call).
std::size_t page_size();

}  // namespace alloy
