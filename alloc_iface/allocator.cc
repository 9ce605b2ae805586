#include "alloy/alloc_iface/allocator.h"

#include <algorithm>
#include <cstring>

namespace alloy {

bool no_resize(void*, Bytes, Alignment, std::size_t, std::uintptr_t) { return false; }
void* no_remap(void*, Bytes, Alignment, std::size_t, std::uintptr_t) { return nullptr; }
void no_free(void*, Bytes, Alignment, std::uintptr_t) {}

ALLOY_HELPER Result<Bytes> Allocator::alloc_bytes(std::size_t len,
                                                  Alignment alignment) const {
  return alloc_array<std::byte>(len, alignment, ALLOY_RETURN_ADDRESS());
}

ALLOY_HELPER bool Allocator::resize_bytes(Bytes memory, Alignment alignment,
                                          std::size_t new_len) const {
  if (memory.empty()) return new_len == 0;
  if (new_len == 0) {
    raw_free(memory, alignment, ALLOY_RETURN_ADDRESS());
    return true;
  }
  return raw_resize(memory, alignment, new_len, ALLOY_RETURN_ADDRESS());
}

ALLOY_HELPER Result<Bytes> Allocator::realloc_bytes(Bytes memory, Alignment alignment,
                                                    std::size_t new_len) const {
  return realloc_bytes_at(memory, alignment, new_len, ALLOY_RETURN_ADDRESS());
}

ALLOY_HELPER void Allocator::free_bytes(Bytes memory, Alignment alignment) const {
  if (memory.empty()) return;
  raw_free(memory, alignment, ALLOY_RETURN_ADDRESS());
}

Result<Bytes> Allocator::realloc_bytes_at(Bytes memory, Alignment alignment,
                                          std::size_t new_len,
                                          std::uintptr_t ret_addr) const {
  if (memory.empty()) return alloc_array<std::byte>(new_len, alignment, ret_addr);
  if (new_len == 0) {
    raw_free(memory, alignment, ret_addr);
    return Bytes(detail::dangling<std::byte>(alignment), 0);
  }
  if (new_len == memory.size()) return memory;
  if (raw_resize(memory, alignment, new_len, ret_addr)) {
    return Bytes(memory.data(), new_len);
  }
  if (void* p = raw_remap(memory, alignment, new_len, ret_addr)) {
    return Bytes(static_cast<std::byte*>(p), new_len);
  }
  void* p = raw_alloc(new_len, alignment, ret_addr);
  if (p == nullptr) return Err(AllocError::kOutOfMemory);
  std::memcpy(p, memory.data(), std::min(memory.size(), new_len));
  raw_free(memory, alignment, ret_addr);
  return Bytes(static_cast<std::byte*>(p), new_len);
}

ALLOY_HELPER Result<std::span<char>> Allocator::dupe(std::string_view src) const {
  auto r = alloc_array<char>(src.size(), Alignment{}, ALLOY_RETURN_ADDRESS());
  if (r && !src.empty()) std::memcpy(r->data(), src.data(), src.size());
  return r;
}

ALLOY_HELPER Result<std::span<char>> Allocator::dupe_z(std::string_view src) const {
  std::size_t len = 0;
  if (__builtin_add_overflow(src.size(), std::size_t{1}, &len)) {
    return Err(AllocError::kSizeOverflow);
  }
  auto r = alloc_array<char>(len, Alignment{}, ALLOY_RETURN_ADDRESS());
  if (!r) return r;
  if (!src.empty()) std::memcpy(r->data(), src.data(), src.size());
  (*r)[src.size()] = '\0';
  return r;
}

}  // namespace alloy
