#include "alloy/alloc_iface/allocator.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "alloy/alloc_iface/make_vtable.h"

namespace alloy {

bool no_resize(void*, Bytes, Alignment, std::size_t, std::uintptr_t) { return false; }
void* no_remap(void*, Bytes, Alignment, std::size_t, std::uintptr_t) { return nullptr; }
void no_free(void*, Bytes, Alignment, std::uintptr_t) {}

namespace detail {

void contract_failed(const char* rule) noexcept {
  // write(2), not stdio: the malloc adapter and the engine use the handle, so
  // this path must not allocate.
  auto put = [](const char* s) {
    std::size_t n = std::strlen(s);
    while (n > 0) {
      ssize_t w = ::write(2, s, n);
      if (w <= 0) return;
      s += w;
      n -= static_cast<std::size_t>(w);
    }
  };
  put("alloy: ");
  put(rule);
  put("\n");
  std::abort();
}

namespace {

// A default-constructed handle: serves nothing. Without NDEBUG each entry
// reports the misuse and aborts; with NDEBUG it answers "no" quietly.
#ifdef NDEBUG
constexpr bool kReportUnset = false;
#else
constexpr bool kReportUnset = true;
#endif

struct UnsetEntries {
  static void* vt_alloc(void*, std::size_t, Alignment, std::uintptr_t) {
    if (kReportUnset) contract_failed("use of a default-constructed alloy::Allocator (alloc)");
    return nullptr;
  }
  static bool vt_resize(void*, Bytes, Alignment, std::size_t, std::uintptr_t) {
    if (kReportUnset) contract_failed("use of a default-constructed alloy::Allocator (resize)");
    return false;
  }
  static void* vt_remap(void*, Bytes, Alignment, std::size_t, std::uintptr_t) {
    if (kReportUnset) contract_failed("use of a default-constructed alloy::Allocator (remap)");
    return nullptr;
  }
  static void vt_free(void*, Bytes, Alignment, std::uintptr_t) {
    // It handed nothing out, so whatever this is belongs elsewhere: refused.
    if (kReportUnset) contract_failed("use of a default-constructed alloy::Allocator (free)");
  }
  static Ownership vt_owns(void*, const void*) {
    // It handed nothing out: nothing is its own.
    if (kReportUnset) contract_failed("use of a default-constructed alloy::Allocator (owns)");
    return Ownership::kNo;
  }
};

}  // namespace

const VTable kUnsetVTable = make_vtable<UnsetEntries>();

}  // namespace detail

ALLOY_HELPER Result<Bytes> Allocator::alloc_bytes(std::size_t len,
                                                  Alignment alignment) const {
  return alloc_array<std::byte>(len, alignment, ALLOY_RETURN_ADDRESS());
}

ALLOY_HELPER bool Allocator::resize_bytes(Bytes memory, Alignment alignment,
                                          std::size_t new_len) const {
  return resize_bytes_at(memory, alignment, new_len, ALLOY_RETURN_ADDRESS());
}

bool Allocator::resize_bytes_at(Bytes memory, Alignment alignment, std::size_t new_len,
                                std::uintptr_t ret_addr) const {
  if (memory.empty()) return new_len == 0;
  if (new_len == 0) return false;  // resize never frees: that is free()'s job
  if (!detail::size_fits(new_len, alignment)) return false;
  return raw_resize(memory, alignment, new_len, ret_addr);
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
  if (!detail::size_fits(new_len, alignment)) return Err(AllocError::kSizeOverflow);
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

ALLOY_HELPER Result<Bytes> Allocator::alloc_bytes_at_least(std::size_t len,
                                                           Alignment alignment) const {
  return alloc_bytes_at_least_at(len, alignment, ALLOY_RETURN_ADDRESS());
}

Result<Bytes> Allocator::alloc_bytes_at_least_at(std::size_t len, Alignment alignment,
                                                 std::uintptr_t ret_addr) const {
  if (!detail::size_fits(len, alignment)) return Err(AllocError::kSizeOverflow);
  if (len == 0) return Bytes(detail::dangling<std::byte>(alignment), 0);
  Bytes b = raw_alloc_at_least(len, alignment, ret_addr);
  if (b.data() == nullptr) return Err(AllocError::kOutOfMemory);
  return b;
}

ALLOY_HELPER Result<Bytes> Allocator::alloc_bytes_zeroed(std::size_t len,
                                                         Alignment alignment) const {
  return alloc_bytes_zeroed_at(len, alignment, ALLOY_RETURN_ADDRESS());
}

Result<Bytes> Allocator::alloc_bytes_zeroed_at(std::size_t len, Alignment alignment,
                                               std::uintptr_t ret_addr) const {
  if (!detail::size_fits(len, alignment)) return Err(AllocError::kSizeOverflow);
  if (len == 0) return Bytes(detail::dangling<std::byte>(alignment), 0);
  void* p = raw_alloc_zeroed(len, alignment, ret_addr);
  if (p == nullptr) return Err(AllocError::kOutOfMemory);
  return Bytes(static_cast<std::byte*>(p), len);
}

ALLOY_HELPER Result<Bytes> Allocator::realloc_bytes_zeroed(Bytes memory, Alignment alignment,
                                                           std::size_t new_len) const {
  return realloc_bytes_zeroed_at(memory, alignment, new_len, ALLOY_RETURN_ADDRESS());
}

Result<Bytes> Allocator::realloc_bytes_zeroed_at(Bytes memory, Alignment alignment,
                                                 std::size_t new_len,
                                                 std::uintptr_t ret_addr) const {
  if (!detail::size_fits(new_len, alignment)) return Err(AllocError::kSizeOverflow);
  if (memory.empty()) return alloc_bytes_zeroed_at(new_len, alignment, ret_addr);
  const std::size_t old_len = memory.size();
  if (new_len <= old_len) return realloc_bytes_at(memory, alignment, new_len, ret_addr);
  if (raw_resize(memory, alignment, new_len, ret_addr)) {
    std::memset(memory.data() + old_len, 0, new_len - old_len);
    return Bytes(memory.data(), new_len);
  }
  if (void* p = raw_remap(memory, alignment, new_len, ret_addr)) {
    std::memset(static_cast<std::byte*>(p) + old_len, 0, new_len - old_len);
    return Bytes(static_cast<std::byte*>(p), new_len);
  }
  // Fresh zeroed memory (no memset where the allocator knows it is zero),
  // then the old bytes over its head.
  void* p = raw_alloc_zeroed(new_len, alignment, ret_addr);
  if (p == nullptr) return Err(AllocError::kOutOfMemory);
  std::memcpy(p, memory.data(), old_len);
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
