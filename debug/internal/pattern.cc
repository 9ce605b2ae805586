#include "alloy/debug/internal/pattern.h"

namespace alloy::debug::internal {

Mismatch find_changed(const std::byte* p, std::size_t n, std::byte expected) {
  // The byte loop runs only when something did change.
  if (pattern_detail::all_are_loop(p, n, expected)) return {};
  Mismatch m;
  for (std::size_t i = 0; i < n; ++i) {
    if (p[i] != expected) {
      if (m.count == 0) m.first = i;
      ++m.count;
    }
  }
  return m;
}

Mismatch check_canary(const std::byte* block, std::size_t size, std::size_t canary_bytes) {
  Mismatch m = find_changed(block + size, canary_bytes, kCanaryByte);
  m.first += size;
  return m;
}

}  // namespace alloy::debug::internal
