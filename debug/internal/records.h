// alloy::debug::internal::Record — what DebugAllocator remembers of each live
// block, and the table it keeps them in (an AddressMap keyed by address).
//
// Not a public API: visible to debug/ and tests/debug only.
//
// Cost: 40 bytes per live block (plus the table's load factor <= 1/2); the
// table's O(1) expected insert/find/erase, see address_map.h. Thread safety:
// none; the owner locks.
//
// Example:
//   alloy::debug::internal::RecordTable live;
//   alloy::debug::internal::Record* r = live.claim_new(addr);
//   r->size = 64;  // and the other fields, one by one
#pragma once

#include <cstddef>
#include <cstdint>

#include "alloy/alloc_iface/alignment.h"
#include "alloy/debug/internal/address_map.h"
#include "alloy/debug/internal/trace.h"

namespace alloy::debug::internal {

struct Record {
  std::size_t size = 0;
  std::uintptr_t ret_addr = 0;
  StackTrace* trace = nullptr;  // null unless sampled
  std::uint64_t seq = 0;        // allocation order, for leak reports and visit()
  Alignment alignment;
  // Usable bytes past `size` (alloc_at_least's feedback): the block may be
  // freed, resized or remapped with any length in [size, size + extra], and
  // its canary starts at size + extra. 0 for a plain alloc.
  std::uint32_t extra = 0;
  std::size_t usable() const { return size + extra; }
  // len in [size, size + extra]: below size, len - size wraps past extra.
  bool accepts(std::size_t len) const { return len - size <= extra; }
};

using RecordTable = AddressMap<Record>;

}  // namespace alloy::debug::internal
