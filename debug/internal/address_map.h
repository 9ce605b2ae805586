// alloy::debug::AddressMap<V> — a small open-addressing map from block address to V.
//
// Not a public API: visible to debug/ and tests/debug only.
//
// Why: DebugAllocator does one insert per alloc and one find + erase per free;
// this linear-probing table with Fibonacci hashing does that trio in about a
// third of the time Debian's absl::flat_hash_map takes (figures in
// bench/README.md), which is the difference between meeting the overhead
// budget and not. Erase leaves a tombstone (one store) rather than shifting the
// cluster back: the shift loop's exit depended on the neighbours and
// mispredicted about once per free; tombstones are swept by an occasional
// same-size rebuild instead. Its storage comes
// from the process heap (std::vector), never from the allocator being tracked.
//
// Cost: O(1) expected per operation at load <= 1/2 (tombstones counted);
// growth doubles and rehashes, amortised O(1). Thread safety: none; the owner locks.
//
// Example:
//   alloy::debug::AddressMap<std::size_t> sizes;
//   sizes.insert(reinterpret_cast<std::uintptr_t>(p), 64);
//   if (std::size_t* n = sizes.find(reinterpret_cast<std::uintptr_t>(p))) use(*n);
//   sizes.erase(reinterpret_cast<std::uintptr_t>(p));
//   sizes.for_each([](std::uintptr_t addr, std::size_t& n) { ... });
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

namespace alloy::debug {

template <class V>
class AddressMap {
 public:
  std::size_t size() const { return count_; }
  bool empty() const { return count_ == 0; }

  V* find(std::uintptr_t key) {
    if (key <= kTombstone || capacity_ == 0) return nullptr;
    for (std::size_t i = home(key);; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.key == key) [[likely]] return &s.value;
      if (s.key == kEmpty) return nullptr;
    }
  }

  // Inserts or overwrites. `key` must be above 1.
  void insert(std::uintptr_t key, const V& value) {
    if (V* v = find(key)) {
      *v = value;
      return;
    }
    insert_new(key, value);
  }

  // Inserts a key known to be absent (a block the child just returned):
  // one probe for the first free or erased slot, no search for the key.
  void insert_new(std::uintptr_t key, const V& value) { *claim_new(key) = value; }

  // insert_new() that returns the value's slot (holding whatever it held)
  // for the caller to fill field by field: copying a whole struct built on
  // the stack compiled to 8-byte stores read back as 16-byte loads, a
  // store-forwarding stall on every alloc.
  V* claim_new(std::uintptr_t key) {
    if ((used_ + 1) * 2 > capacity_) [[unlikely]] rehash();
    for (std::size_t i = home(key);; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.key <= kTombstone) [[likely]] {
        used_ += s.key == kEmpty;
        s.key = key;
        ++count_;
        return &s.value;
      }
    }
  }

  // Removes `key`; returns false if absent.
  bool erase(std::uintptr_t key) {
    V* v = find(key);
    if (v == nullptr) return false;
    erase_value(v);
    return true;
  }

  // Removes the entry whose value find() returned (saves a second probe).
  // Leaves a tombstone, or an empty slot when the next slot is empty (no
  // probe can run through it then): a conditional move, no branch on the
  // neighbours (backward-shift deletion mispredicted about once per free).
  void erase_value(V* value) {
    static_assert(std::is_standard_layout_v<Slot>);
    auto* slot = reinterpret_cast<Slot*>(reinterpret_cast<char*>(value) - offsetof(Slot, value));
    Slot* next = slot + 1;
    next = next == slots_.data() + capacity_ ? slots_.data() : next;
    const bool reclaim = next->key == kEmpty;
    slot->key = reclaim ? kEmpty : kTombstone;
    used_ -= reclaim;
    --count_;
  }

  template <class F>
  void for_each(F&& f) {
    for (Slot& s : slots_) {
      if (s.key > kTombstone) f(s.key, s.value);
    }
  }
  template <class F>
  void for_each(F&& f) const {
    for (const Slot& s : slots_) {
      if (s.key > kTombstone) f(s.key, s.value);
    }
  }

  void clear() {
    slots_.clear();
    spare_.clear();
    count_ = 0;
    used_ = 0;
    capacity_ = 0;
    mask_ = 0;
    shift_ = 63;
  }

 private:
  static constexpr std::uintptr_t kEmpty = 0;
  static constexpr std::uintptr_t kTombstone = 1;  // never a block address

  struct Slot {
    std::uintptr_t key = kEmpty;
    V value{};
  };

  std::size_t home(std::uintptr_t key) const {
    return static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_);
  }

  // Called when live + erased slots would pass half the table: doubles it
  // when live entries fill more than a quarter, else rebuilds it at the same
  // size without the tombstones (amortised O(1): at least a quarter of the
  // table was inserted since the last rebuild).
  // The old slots go through `spare_`, kept between calls, so a same-size
  // rebuild allocates nothing.
  void rehash() {
    std::size_t n = slots_.empty() ? 64 : slots_.size();
    if ((count_ + 1) * 4 > n) n *= 2;
    spare_.swap(slots_);
    slots_.assign(n, Slot{});
    capacity_ = n;
    mask_ = n - 1;
    shift_ = 64 - static_cast<unsigned>(std::countr_zero(n));
    count_ = 0;
    used_ = 0;
    for (Slot& s : spare_) {
      if (s.key > kTombstone) insert_new(s.key, s.value);
    }
    spare_.clear();
  }

  std::vector<Slot> slots_;
  std::vector<Slot> spare_;
  std::size_t count_ = 0;     // live entries
  std::size_t used_ = 0;      // live entries + tombstones
  std::size_t capacity_ = 0;  // slots_.size(), kept to skip a division
  std::size_t mask_ = 0;
  unsigned shift_ = 63;
};

}  // namespace alloy::debug
