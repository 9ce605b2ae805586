// Writing a fresh SharedHeap header and checking a mapped one: the two ends
// of the on-shm format of internal/layout.h. Not a public API
// (allocators/shared_heap and its tests).
//
// Cost: init_header O(sizeof(Header)) plus one free-list push; validate_header
// O(sizeof(Header)) (the checksum). Thread safety: init_header on a mapping no
// one else sees yet; validate_header reads only the immutable prefix (and
// `magic` and `state` with acquire loads), so it needs no lock.
//
// Example:
//   init_header(h, mapping_bytes);                  // creator, before publishing
//   if (!validate_header(h, st.st_size, &err)) ...  // attacher, before locking
#pragma once

#include "alloy/allocators/shared_heap/internal/layout.h"
#include "alloy/allocators/shared_heap/shared_heap.h"

namespace alloy::shared_heap_internal {

// Lays out a heap of `mapping` bytes at h: geometry, robust mutex, one free
// block, the sentinel, the checksum; stores the magic last (release).
void init_header(Header* h, u64 mapping);

// Validates a mapped header against the object's real size: magic, version,
// layout signature, checksum, geometry, not still initialising.
bool validate_header(const Header* h, u64 object_size, SharedHeapError* err);

}  // namespace alloy::shared_heap_internal
