// alloy::Alignment — an alignment stored as its base-2 logarithm in one byte.
//
// Why: every call through an `alloy::Allocator` carries an alignment. Storing
// log2 keeps it one byte, makes "is a power of two" true by construction, and
// turns rounding into shifts and masks.
//
// Cost: every member is a constexpr shift or mask. Thread safety: a value type.
//
// Example:
//   alloy::Alignment a = alloy::Alignment::of<double>();      // 8 bytes, log2 3
//   auto b = alloy::Alignment::from_bytes(64);                  // optional, 64
//   if (!alloy::Alignment::from_bytes(48)) { /* not a power of two */ }
//   std::uintptr_t p = a.forward(0x1001);                       // 0x1008
//   bool ok = b->check(p);                                      // false
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>

namespace alloy {

class Alignment {
 public:
  // The largest representable alignment: 2^63 bytes.
  static constexpr std::uint8_t kMaxLog2 = 63;

  constexpr Alignment() = default;  // 1 byte

  // Alignment from a log2 value; values above kMaxLog2 are clamped there.
  static constexpr Alignment from_log2(std::uint8_t log2) {
    Alignment a;
    a.log2_ = log2 > kMaxLog2 ? kMaxLog2 : log2;
    return a;
  }

  // Alignment of a byte count; nullopt unless `bytes` is a non-zero power of two.
  static constexpr std::optional<Alignment> from_bytes(std::size_t bytes) {
    if (bytes == 0 || !std::has_single_bit(bytes)) return std::nullopt;
    return from_log2(static_cast<std::uint8_t>(std::countr_zero(bytes)));
  }

  template <class T>
  static constexpr Alignment of() {
    return from_log2(static_cast<std::uint8_t>(std::countr_zero(alignof(T))));
  }

  constexpr std::uint8_t log2() const { return log2_; }
  constexpr std::size_t bytes() const { return std::size_t{1} << log2_; }

  // Rounds `addr` up to this alignment. Wraps to 0 past the top of the
  // address space; callers that care check `forward(a) >= a`.
  constexpr std::uintptr_t forward(std::uintptr_t addr) const {
    const std::uintptr_t mask = bytes() - 1;
    return (addr + mask) & ~mask;
  }
  constexpr std::uintptr_t backward(std::uintptr_t addr) const {
    return addr & ~(std::uintptr_t{bytes()} - 1);
  }
  constexpr bool check(std::uintptr_t addr) const {
    return (addr & (bytes() - 1)) == 0;
  }
  bool check(const void* p) const {
    return check(reinterpret_cast<std::uintptr_t>(p));
  }

  constexpr Alignment max(Alignment other) const {
    return log2_ >= other.log2_ ? *this : other;
  }

  friend constexpr bool operator==(Alignment, Alignment) = default;
  friend constexpr auto operator<=>(Alignment a, Alignment b) {
    return a.log2_ <=> b.log2_;
  }

 private:
  std::uint8_t log2_ = 0;
};

static_assert(sizeof(Alignment) == 1);

}  // namespace alloy
