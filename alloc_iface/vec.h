// alloy::Vec<T> — a growable array that remembers its allocator and never throws.
//
// Every operation that may allocate is named try_* and returns a [[nodiscard]]
// Result; on error the Vec is exactly as it was (strong guarantee). Growth
// first asks the allocator to resize in place, then (for trivially copyable
// T) to remap, which may move pages without copying, and only then allocates,
// moves and frees. Capacity at least doubles, so push is amortised O(1).
//
// Cost: push is a compare and a store when capacity allows; growth is one
// allocator call (plus a copy when it has to move). Thread safety: none, as
// std::vector.
//
// Example:
//   alloy::Vec<int> v(alloy::c_allocator());
//   for (int i = 0; i < 100; ++i)
//     if (!v.try_push(i)) return;      // out of memory: v still holds 0..i-1
//   int sum = std::accumulate(v.begin(), v.end(), 0);
//   std::span<int> owned = v.to_owned_span().value();  // caller frees it later
#pragma once

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>

#include "alloy/alloc_iface/allocator.h"

namespace alloy {

template <class T>
class Vec {
  static_assert(std::is_nothrow_move_constructible_v<T> || std::is_copy_constructible_v<T>,
                "Vec<T> needs a movable or copyable T");

 public:
  using value_type = T;
  using iterator = T*;
  using const_iterator = const T*;

  explicit Vec(Allocator allocator) : allocator_(allocator) {}
  Vec(Vec&& o) noexcept
      : allocator_(o.allocator_),
        data_(std::exchange(o.data_, nullptr)),
        size_(std::exchange(o.size_, 0)),
        capacity_(std::exchange(o.capacity_, 0)) {}
  Vec& operator=(Vec&& o) noexcept {
    if (this != &o) {
      release_storage();
      allocator_ = o.allocator_;
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      capacity_ = std::exchange(o.capacity_, 0);
    }
    return *this;
  }
  Vec(const Vec&) = delete;  // copying may fail: use try_clone()
  Vec& operator=(const Vec&) = delete;
  ~Vec() { release_storage(); }

  // Adopts a span from allocator.alloc<T>() (plain data only); size ==
  // capacity == span size.
  static Vec from_owned_span(Allocator allocator, std::span<T> s) {
    static_assert(detail::kPlainData<T>, "from_owned_span is for plain data");
    Vec v(allocator);
    if (!s.empty()) {
      v.data_ = s.data();
      v.size_ = v.capacity_ = s.size();
    }
    return v;
  }

  Allocator allocator() const { return allocator_; }
  std::size_t size() const { return size_; }
  std::size_t capacity() const { return capacity_; }
  bool empty() const { return size_ == 0; }
  T* data() { return data_; }
  const T* data() const { return data_; }
  T& operator[](std::size_t i) { return data_[i]; }
  const T& operator[](std::size_t i) const { return data_[i]; }
  // Bounds-checked access: null past the end.
  T* get(std::size_t i) { return i < size_ ? data_ + i : nullptr; }
  const T* get(std::size_t i) const { return i < size_ ? data_ + i : nullptr; }
  T& front() { return data_[0]; }
  T& back() { return data_[size_ - 1]; }
  iterator begin() { return data_; }
  iterator end() { return data_ + size_; }
  const_iterator begin() const { return data_; }
  const_iterator end() const { return data_ + size_; }
  std::span<T> span() { return {data_, size_}; }
  std::span<const T> span() const { return {data_, size_}; }

  // Makes room for at least `additional` more elements.
  Result<void> try_reserve(std::size_t additional) {
    std::size_t needed = 0;
    if (__builtin_add_overflow(size_, additional, &needed)) {
      return Err(AllocError::kSizeOverflow);
    }
    if (needed <= capacity_) return Ok();
    std::size_t grown = capacity_ > SIZE_MAX / 2 ? SIZE_MAX : capacity_ * 2;
    std::size_t target = std::max({needed, grown, min_capacity()});
    // If doubling cannot be had, the exact amount may still be.
    if (auto r = set_capacity(target); r || target == needed) return r;
    return set_capacity(needed);
  }
  // Reserves exactly `additional` more (no doubling).
  Result<void> try_reserve_exact(std::size_t additional) {
    std::size_t needed = 0;
    if (__builtin_add_overflow(size_, additional, &needed)) {
      return Err(AllocError::kSizeOverflow);
    }
    if (needed <= capacity_) return Ok();
    return set_capacity(needed);
  }

  Result<void> try_push(const T& value) { return try_emplace(value); }
  Result<void> try_push(T&& value) { return try_emplace(std::move(value)); }

  template <class... Args>
  Result<void> try_emplace(Args&&... args) {
    if (size_ == capacity_) {
      // Construct first: args may refer into this Vec's own storage.
      if constexpr (sizeof...(Args) == 1 &&
                    (std::is_same_v<std::remove_cvref_t<Args>, T> && ...)) {
        T tmp(std::forward<Args>(args)...);
        if (auto r = try_reserve(1); !r) return r;
        ::new (data_ + size_) T(std::move(tmp));
        ++size_;
        return Ok();
      } else {
        if (auto r = try_reserve(1); !r) return r;
      }
    }
    ::new (data_ + size_) T(std::forward<Args>(args)...);
    ++size_;
    return Ok();
  }

  // Appends copies of `items`.
  Result<void> try_append(std::span<const T> items) {
    if (items.empty()) return Ok();
    // items may alias our own storage, so remember it by index.
    const bool aliases = data_ != nullptr && items.data() >= data_ &&
                         items.data() < data_ + size_;
    const std::size_t offset = aliases ? static_cast<std::size_t>(items.data() - data_) : 0;
    if (auto r = try_reserve(items.size()); !r) return r;
    const T* src = aliases ? data_ + offset : items.data();
    if constexpr (std::is_trivially_copyable_v<T>) {
      std::memmove(static_cast<void*>(data_ + size_), src, items.size() * sizeof(T));
    } else {
      std::uninitialized_copy(src, src + items.size(), data_ + size_);
    }
    size_ += items.size();
    return Ok();
  }

  // Grows with copies of `value` or shrinks (destroying the tail).
  Result<void> try_resize(std::size_t n, const T& value = T()) {
    if (n <= size_) {
      truncate(n);
      return Ok();
    }
    if (auto r = try_reserve(n - size_); !r) return r;
    std::uninitialized_fill(data_ + size_, data_ + n, value);
    size_ = n;
    return Ok();
  }

  // Inserts at `index` (<= size()), shifting the tail right.
  Result<void> try_insert(std::size_t index, T value) {
    if (index > size_) index = size_;
    if (auto r = try_reserve(1); !r) return r;
    if (index == size_) {
      ::new (data_ + size_) T(std::move(value));
    } else {
      ::new (data_ + size_) T(std::move(data_[size_ - 1]));
      std::move_backward(data_ + index, data_ + size_ - 1, data_ + size_);
      data_[index] = std::move(value);
    }
    ++size_;
    return Ok();
  }

  std::optional<T> pop() {
    if (size_ == 0) return std::nullopt;
    std::optional<T> out(std::move(data_[size_ - 1]));
    data_[--size_].~T();
    return out;
  }
  // Removes element `index` keeping order (O(n)).
  T remove(std::size_t index) {
    T out(std::move(data_[index]));
    std::move(data_ + index + 1, data_ + size_, data_ + index);
    data_[--size_].~T();
    return out;
  }
  // Removes element `index` by moving the last one into its place (O(1)).
  T swap_remove(std::size_t index) {
    T out(std::move(data_[index]));
    if (index != size_ - 1) data_[index] = std::move(data_[size_ - 1]);
    data_[--size_].~T();
    return out;
  }
  void truncate(std::size_t n) {
    while (size_ > n) data_[--size_].~T();
  }
  void clear() { truncate(0); }

  // Gives capacity beyond size() back to the allocator (best effort).
  void shrink_to_fit() {
    if (capacity_ == size_) return;
    if (size_ == 0) {
      release_storage();
      return;
    }
    (void)set_capacity(size_);
  }

  Result<Vec> try_clone() const {
    Vec v(allocator_);
    if (auto r = v.try_append(span()); !r) return Err(r.error());
    return v;
  }

  // Hands the elements to the caller as an exactly-sized span (freed later
  // with allocator().free(span)); the Vec is left empty. Plain data only.
  Result<std::span<T>> to_owned_span() {
    static_assert(detail::kPlainData<T>, "to_owned_span is for plain data");
    if (size_ == 0) {
      release_storage();
      return std::span<T>(detail::dangling<T>(Alignment::of<T>()), 0);
    }
    if (auto r = set_capacity(size_); !r) return Err(r.error());
    std::span<T> out(data_, size_);
    data_ = nullptr;
    size_ = capacity_ = 0;
    return out;
  }

 private:
  static constexpr std::size_t min_capacity() {
    return sizeof(T) >= 1024 ? 1 : (sizeof(T) > 8 ? 4 : 8);
  }

  Result<void> set_capacity(std::size_t new_capacity) {
    std::size_t bytes = 0;
    if (__builtin_mul_overflow(new_capacity, sizeof(T), &bytes)) {
      return Err(AllocError::kSizeOverflow);
    }
    const Alignment align = Alignment::of<T>();
    if (data_ == nullptr) {
      void* p = allocator_.raw_alloc(bytes, align, ALLOY_RETURN_ADDRESS());
      if (p == nullptr) return Err(AllocError::kOutOfMemory);
      data_ = static_cast<T*>(p);
      capacity_ = new_capacity;
      return Ok();
    }
    Bytes old(reinterpret_cast<std::byte*>(data_), capacity_ * sizeof(T));
    if (allocator_.raw_resize(old, align, bytes, ALLOY_RETURN_ADDRESS())) {
      capacity_ = new_capacity;
      return Ok();
    }
    if constexpr (std::is_trivially_copyable_v<T>) {
      if (void* p = allocator_.raw_remap(old, align, bytes, ALLOY_RETURN_ADDRESS())) {
        data_ = static_cast<T*>(p);
        capacity_ = new_capacity;
        return Ok();
      }
    }
    void* p = allocator_.raw_alloc(bytes, align, ALLOY_RETURN_ADDRESS());
    if (p == nullptr) return Err(AllocError::kOutOfMemory);
    T* fresh = static_cast<T*>(p);
    if constexpr (std::is_trivially_copyable_v<T>) {
      if (size_ != 0) std::memcpy(static_cast<void*>(fresh), data_, size_ * sizeof(T));
    } else {
      for (std::size_t i = 0; i < size_; ++i) {
        ::new (fresh + i) T(std::move_if_noexcept(data_[i]));
        data_[i].~T();
      }
    }
    allocator_.raw_free(old, align, ALLOY_RETURN_ADDRESS());
    data_ = fresh;
    capacity_ = new_capacity;
    return Ok();
  }

  void release_storage() {
    clear();
    if (data_ != nullptr) {
      allocator_.raw_free(Bytes(reinterpret_cast<std::byte*>(data_), capacity_ * sizeof(T)),
                          Alignment::of<T>(), ALLOY_RETURN_ADDRESS());
      data_ = nullptr;
    }
    capacity_ = 0;
  }

  Allocator allocator_;
  T* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

}  // namespace alloy
