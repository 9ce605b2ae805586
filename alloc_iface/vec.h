// alloy::Vec<T> — a growable array that remembers its allocator and never throws.
//
// Every operation that may allocate is named try_* and returns a [[nodiscard]]
// Result; on error the Vec is exactly as it was (strong guarantee). Growth
// first asks the allocator to resize in place, then (for trivially copyable
// T) to remap, which may move pages without copying, and only then allocates,
// moves and frees. Capacity at least doubles, so push is amortised O(1). New
// storage comes from alloc_at_least: capacity() is what the block really
// holds (a size class, a pool node, whole pages), so the next growth comes
// later; the block is freed with capacity() elements, within the
// freed-length rule.
//
// Values and constructor arguments may refer to the Vec's own elements
// (v.try_push(v[0]), v.try_resize(n, v[k]), v.try_append(v.span()),
// v.try_assign(v.span().subspan(1)), ...), as with std::vector: the new
// elements are built while the old storage is still alive, before it is moved
// or freed (a trivially copyable element for push/emplace is built first, and
// copies of the Vec's own elements skip remap). Every member that allocates records the
// address of the user's call (see ALLOY_HELPER in allocator.h), so a leak or
// a misuse is reported at the user's line, in every build mode.
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
#include "alloy/base/assert.h"

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
  // Unchecked with NDEBUG; ALLOY_ASSERT (base/assert.h) checks i < size() otherwise.
  T& operator[](std::size_t i) {
    ALLOY_ASSERT_MSG(i < size_, "alloy::Vec index past the end");
    return data_[i];
  }
  const T& operator[](std::size_t i) const {
    ALLOY_ASSERT_MSG(i < size_, "alloy::Vec index past the end");
    return data_[i];
  }
  // Bounds-checked access: null past the end.
  T* get(std::size_t i) { return i < size_ ? data_ + i : nullptr; }
  const T* get(std::size_t i) const { return i < size_ ? data_ + i : nullptr; }
  T& front() {
    ALLOY_ASSERT_MSG(size_ != 0, "alloy::Vec::front of an empty Vec");
    return data_[0];
  }
  T& back() {
    ALLOY_ASSERT_MSG(size_ != 0, "alloy::Vec::back of an empty Vec");
    return data_[size_ - 1];
  }
  iterator begin() { return data_; }
  iterator end() { return data_ + size_; }
  const_iterator begin() const { return data_; }
  const_iterator end() const { return data_ + size_; }
  std::span<T> span() { return {data_, size_}; }
  std::span<const T> span() const { return {data_, size_}; }

  // Makes room for at least `additional` more elements.
  ALLOY_HELPER Result<void> try_reserve(std::size_t additional) {
    return with_room(additional, ALLOY_RETURN_ADDRESS(), true, [](T*) {});
  }
  // Reserves exactly `additional` more (no doubling).
  ALLOY_HELPER Result<void> try_reserve_exact(std::size_t additional) {
    std::size_t needed = 0;
    if (__builtin_add_overflow(size_, additional, &needed)) {
      return Err(AllocError::kSizeOverflow);
    }
    if (needed <= capacity_) return Ok();
    return set_capacity_at(needed, ALLOY_RETURN_ADDRESS(), true, [](T*) {});
  }

  ALLOY_INLINE_ENTRY Result<void> try_push(const T& value) { return try_emplace(value); }
  ALLOY_INLINE_ENTRY Result<void> try_push(T&& value) { return try_emplace(std::move(value)); }

  // Constructs T(args...) at the end. args may refer into this Vec.
  template <class... Args>
  ALLOY_INLINE_ENTRY Result<void> try_emplace(Args&&... args) {
    if (size_ == capacity_) [[unlikely]] return emplace_grow(std::forward<Args>(args)...);
    ::new (data_ + size_) T(std::forward<Args>(args)...);
    ++size_;
    return Ok();
  }

  // Appends copies of `items` (which may be part of this Vec).
  ALLOY_HELPER Result<void> try_append(std::span<const T> items) {
    return append_at(items, ALLOY_RETURN_ADDRESS());
  }

  // Grows with copies of `value` (which may be an element of this Vec) or
  // shrinks (destroying the tail).
  ALLOY_HELPER Result<void> try_resize(std::size_t n, const T& value = T()) {
    if (n <= size_) {
      truncate(n);
      return Ok();
    }
    const std::size_t count = n - size_;
    // The old storage stays alive while the copies are made, unless a remap
    // moves it first: no remap when value lives in it.
    if (auto r = with_room(count, ALLOY_RETURN_ADDRESS(), !in_storage(&value),
                           [&](T* slot) { std::uninitialized_fill(slot, slot + count, value); });
        !r) {
      return r;
    }
    size_ = n;
    return Ok();
  }

  // Replaces the contents with copies of `items`, which may be part of this
  // Vec (then nothing is allocated). On error the Vec is as it was.
  ALLOY_HELPER Result<void> try_assign(std::span<const T> items) {
    const std::uintptr_t ret = ALLOY_RETURN_ADDRESS();
    const std::size_t count = items.size();
    if (count != 0 && in_storage(items.data())) {
      // A run of our own elements: slide it to the front, drop the rest.
      const auto offset = static_cast<std::size_t>(items.data() - data_);
      if (offset != 0) {
        if constexpr (std::is_trivially_copyable_v<T>) {
          std::memmove(static_cast<void*>(data_), data_ + offset, count * sizeof(T));
        } else {
          for (std::size_t i = 0; i < count; ++i) data_[i] = data_[offset + i];
        }
      }
      truncate(count);
      return Ok();
    }
    if (count <= capacity_) {
      clear();
      std::uninitialized_copy(items.begin(), items.end(), data_);
      size_ = count;
      return Ok();
    }
    // Build the new contents first, then drop the old.
    Vec fresh(allocator_);
    if (auto r = fresh.append_at(items, ret); !r) return r;
    adopt(std::move(fresh), ret);
    return Ok();
  }
  // Replaces the contents with n copies of `value` (which may be an element
  // of this Vec). On error the Vec is as it was.
  ALLOY_HELPER Result<void> try_assign(std::size_t n, const T& value) {
    const std::uintptr_t ret = ALLOY_RETURN_ADDRESS();
    if (in_storage(&value)) {
      T copy(value);  // clear() or the move would destroy it
      return assign_fill_at(n, copy, ret);
    }
    return assign_fill_at(n, value, ret);
  }

  // Inserts at `index` (<= size()), shifting the tail right. `value` is taken
  // by value, so an element of this Vec is copied before anything moves.
  ALLOY_HELPER Result<void> try_insert(std::size_t index, T value) {
    if (index > size_) index = size_;
    if (auto r = with_room(1, ALLOY_RETURN_ADDRESS(), true, [](T*) {}); !r) return r;
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
  ALLOY_HELPER void shrink_to_fit() {
    if (capacity_ == size_) return;
    if (size_ == 0) {
      release_storage();
      return;
    }
    (void)set_capacity_at(size_, ALLOY_RETURN_ADDRESS(), true, [](T*) {});
  }

  ALLOY_HELPER Result<Vec> try_clone() const {
    Vec v(allocator_);
    if (auto r = v.append_at(span(), ALLOY_RETURN_ADDRESS()); !r) return Err(r.error());
    return v;
  }

  // Hands the elements to the caller as an exactly-sized span (freed later
  // with allocator().free(span)); the Vec is left empty. Plain data only.
  ALLOY_HELPER Result<std::span<T>> to_owned_span() {
    static_assert(detail::kPlainData<T>, "to_owned_span is for plain data");
    if (size_ == 0) {
      release_storage();
      return std::span<T>(detail::dangling<T>(Alignment::of<T>()), 0);
    }
    if (auto r = set_capacity_at(size_, ALLOY_RETURN_ADDRESS(), true, [](T*) {}); !r) {
      return Err(r.error());
    }
    std::span<T> out(data_, size_);
    data_ = nullptr;
    size_ = capacity_ = 0;
    return out;
  }

 private:
  static constexpr std::size_t min_capacity() {
    return sizeof(T) >= 1024 ? 1 : (sizeof(T) > 8 ? 4 : 8);
  }

  // Whether p points at one of the live elements.
  bool in_storage(const T* p) const {
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    return data_ != nullptr && a >= reinterpret_cast<std::uintptr_t>(data_) &&
           a < reinterpret_cast<std::uintptr_t>(data_ + size_);
  }

  // The slow path of try_emplace (full): kept out of line, and reached only
  // from the always-inlined entry, so its return address is the user's call.
  template <class... Args>
  ALLOY_HELPER Result<void> emplace_grow(Args&&... args) {
    const std::uintptr_t ret = ALLOY_RETURN_ADDRESS();
    if constexpr (std::is_trivially_copyable_v<T>) {
      // Build the element first (args may refer into the storage a remap
      // moves); a trivially copyable T is then copied in.
      T tmp(std::forward<Args>(args)...);
      if (auto r = with_room(1, ret, true, [&](T* slot) { ::new (slot) T(tmp); }); !r) return r;
    } else {
      // No remap for these: the element is built in the new storage while the
      // old one, which args may refer into, is still alive.
      if (auto r = with_room(1, ret, false,
                             [&](T* slot) { ::new (slot) T(std::forward<Args>(args)...); });
          !r) {
        return r;
      }
    }
    ++size_;
    return Ok();
  }

  Result<void> append_at(std::span<const T> items, std::uintptr_t ret) {
    if (items.empty()) return Ok();
    const T* src = items.data();
    const std::size_t count = items.size();
    // Copies are made before the old storage is freed; no remap if they
    // come from it.
    if (auto r = with_room(count, ret, !in_storage(src),
                           [&](T* slot) {
                             if constexpr (std::is_trivially_copyable_v<T>) {
                               std::memcpy(static_cast<void*>(slot), src, count * sizeof(T));
                             } else {
                               std::uninitialized_copy(src, src + count, slot);
                             }
                           });
        !r) {
      return r;
    }
    size_ += count;
    return Ok();
  }

  Result<void> assign_fill_at(std::size_t n, const T& value, std::uintptr_t ret) {
    if (n <= capacity_) {
      clear();
      std::uninitialized_fill(data_, data_ + n, value);
      size_ = n;
      return Ok();
    }
    Vec fresh(allocator_);
    if (auto r = fresh.with_room(
            n, ret, true, [&](T* slot) { std::uninitialized_fill(slot, slot + n, value); });
        !r) {
      return r;
    }
    fresh.size_ = n;
    adopt(std::move(fresh), ret);
    return Ok();
  }

  // Frees our storage (recording ret) and takes over `fresh`'s.
  void adopt(Vec&& fresh, std::uintptr_t ret) {
    release_storage_at(ret);
    data_ = std::exchange(fresh.data_, nullptr);
    size_ = std::exchange(fresh.size_, 0);
    capacity_ = std::exchange(fresh.capacity_, 0);
  }

  // Makes room for `additional` more elements (growing at least to double),
  // then calls make(data() + size()) to construct them; the caller then
  // counts them into size_. When storage moves, make runs on the new storage
  // while the old is still alive (and before the old elements move), unless
  // allow_remap lets a remap move it first. On error nothing changed.
  template <class Make>
  Result<void> with_room(std::size_t additional, std::uintptr_t ret, bool allow_remap,
                         Make&& make) {
    std::size_t needed = 0;
    if (__builtin_add_overflow(size_, additional, &needed)) {
      return Err(AllocError::kSizeOverflow);
    }
    if (needed <= capacity_) {
      make(data_ + size_);
      return Ok();
    }
    std::size_t grown = capacity_ > SIZE_MAX / 2 ? SIZE_MAX : capacity_ * 2;
    std::size_t target = std::max({needed, grown, min_capacity()});
    // If doubling cannot be had, the exact amount may still be.
    if (auto r = set_capacity_at(target, ret, allow_remap, make); r || target == needed) {
      return r;
    }
    return set_capacity_at(needed, ret, allow_remap, make);
  }

  // Moves the storage to `new_capacity` (>= size_) elements and runs
  // make(data_ + size_) as with_room describes; make runs only on success.
  template <class Make>
  Result<void> set_capacity_at(std::size_t new_capacity, std::uintptr_t ret,
                               bool allow_remap, Make&& make) {
    std::size_t bytes = 0;
    const Alignment align = Alignment::of<T>();
    if (__builtin_mul_overflow(new_capacity, sizeof(T), &bytes) ||
        !detail::size_fits(bytes, align)) {
      return Err(AllocError::kSizeOverflow);
    }
    if (data_ == nullptr) {
      Bytes got = allocator_.raw_alloc_at_least(bytes, align, ret);
      if (got.data() == nullptr) return Err(AllocError::kOutOfMemory);
      data_ = reinterpret_cast<T*>(got.data());
      capacity_ = got.size() / sizeof(T);  // size feedback: >= new_capacity
      construct_or_undo(make, data_, nullptr);
      return Ok();
    }
    Bytes old(reinterpret_cast<std::byte*>(data_), capacity_ * sizeof(T));
    if (allocator_.raw_resize(old, align, bytes, ret)) {
      capacity_ = new_capacity;
      make(data_ + size_);
      return Ok();
    }
    if constexpr (std::is_trivially_copyable_v<T>) {
      if (allow_remap) {
        if (void* p = allocator_.raw_remap(old, align, bytes, ret)) {
          data_ = static_cast<T*>(p);
          capacity_ = new_capacity;
          make(data_ + size_);
          return Ok();
        }
      }
    } else {
      (void)allow_remap;
    }
    Bytes fresh_bytes = allocator_.raw_alloc_at_least(bytes, align, ret);
    if (fresh_bytes.data() == nullptr) return Err(AllocError::kOutOfMemory);
    T* fresh = reinterpret_cast<T*>(fresh_bytes.data());
    // The new elements first: their sources may be old elements.
    construct_or_undo(make, fresh + size_, &fresh_bytes);
    if constexpr (std::is_trivially_copyable_v<T>) {
      if (size_ != 0) std::memcpy(static_cast<void*>(fresh), data_, size_ * sizeof(T));
    } else {
      for (std::size_t i = 0; i < size_; ++i) {
        ::new (fresh + i) T(std::move_if_noexcept(data_[i]));
        data_[i].~T();
      }
    }
    allocator_.raw_free(old, align, ret);
    data_ = fresh;
    capacity_ = fresh_bytes.size() / sizeof(T);  // size feedback: >= new_capacity
    return Ok();
  }

  // Runs make(slot); if it throws, frees `fresh` (or, for a first block, the
  // Vec's own new storage) so the Vec is as it was, and rethrows.
  template <class Make>
  void construct_or_undo(Make& make, T* slot, Bytes* fresh) {
#if defined(__cpp_exceptions)
    try {
      make(slot);
    } catch (...) {
      if (fresh != nullptr) {
        allocator_.raw_free(*fresh, Alignment::of<T>(), 0);
      } else {
        release_storage();
      }
      throw;
    }
#else
    (void)fresh;
    make(slot);
#endif
  }

  void release_storage() { release_storage_at(ALLOY_RETURN_ADDRESS()); }
  void release_storage_at(std::uintptr_t ret) {
    clear();
    if (data_ != nullptr) {
      allocator_.raw_free(Bytes(reinterpret_cast<std::byte*>(data_), capacity_ * sizeof(T)),
                          Alignment::of<T>(), ret);
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
