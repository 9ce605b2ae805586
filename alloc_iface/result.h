// alloy::Result<T> — the value of a fallible allocation, or why it failed.
//
// Why: the allocation path never throws. Helpers return a [[nodiscard]]
// Result that holds either a T or an AllocError, in the spirit of Rust's
// Result and C++23's std::expected (alloy targets C++20, so it has its own).
//
// Cost: a T plus one tag byte; no heap, no exceptions. Thread safety: a value.
//
// Example:
//   alloy::Result<std::span<int>> r = a.alloc<int>(n);
//   if (!r) { log(alloy::to_string(r.error())); return; }
//   std::span<int> s = *r;
//   ...
//   a.free(s);
#pragma once

#include <cstdio>
#include <cstdlib>
#include <new>
#include <string_view>
#include <type_traits>
#include <utility>

namespace alloy {

enum class AllocError : unsigned char {
  kOutOfMemory,        // the allocator could not serve the request
  kSizeOverflow,       // n * sizeof(T) (or a size computation) overflowed
  kInvalidAlignment,   // not a power of two, or larger than supported
};

constexpr std::string_view to_string(AllocError e) {
  switch (e) {
    case AllocError::kOutOfMemory:
      return "out of memory";
    case AllocError::kSizeOverflow:
      return "size overflow";
    case AllocError::kInvalidAlignment:
      return "invalid alignment";
  }
  return "unknown allocation error";
}

namespace detail {
[[noreturn]] inline void unwrap_failed(AllocError e) {
  // Unwrapping an error is a programming mistake, as in Rust's unwrap().
  std::fprintf(stderr, "alloy: Result::value() called on an error: %.*s\n",
               static_cast<int>(to_string(e).size()), to_string(e).data());
  std::abort();
}
}  // namespace detail

// Tag for constructing an error Result: `return alloy::Err(AllocError::...)`.
struct Err {
  AllocError error;
  constexpr explicit Err(AllocError e) : error(e) {}
};

template <class T>
class [[nodiscard]] Result {
 public:
  using value_type = T;

  Result(const T& v) : has_(true) { ::new (&value_) T(v); }  // NOLINT: implicit
  Result(T&& v) : has_(true) { ::new (&value_) T(std::move(v)); }  // NOLINT
  Result(Err e) : has_(false), error_(e.error) {}  // NOLINT: implicit
  Result(AllocError e) : has_(false), error_(e) {}  // NOLINT: implicit

  Result(const Result& o) : has_(o.has_) {
    if (has_) ::new (&value_) T(o.value_); else error_ = o.error_;
  }
  Result(Result&& o) noexcept(std::is_nothrow_move_constructible_v<T>)
      : has_(o.has_) {
    if (has_) ::new (&value_) T(std::move(o.value_)); else error_ = o.error_;
  }
  Result& operator=(Result o) noexcept(std::is_nothrow_move_constructible_v<T>) {
    this->~Result();
    ::new (this) Result(std::move(o));
    return *this;
  }
  ~Result() {
    if (has_) value_.~T();
  }

  bool ok() const { return has_; }
  explicit operator bool() const { return has_; }

  // The value; calling these on an error aborts with a message.
  T& value() & {
    if (!has_) detail::unwrap_failed(error_);
    return value_;
  }
  const T& value() const& {
    if (!has_) detail::unwrap_failed(error_);
    return value_;
  }
  T&& value() && {
    if (!has_) detail::unwrap_failed(error_);
    return std::move(value_);
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  template <class U>
  T value_or(U&& fallback) const& {
    return has_ ? value_ : static_cast<T>(std::forward<U>(fallback));
  }

  // The error; only meaningful when !ok().
  AllocError error() const { return has_ ? AllocError::kOutOfMemory : error_; }

 private:
  bool has_;
  union {
    T value_;
    AllocError error_;
  };
};

// Result<void>: success, or an AllocError.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Err e) : has_(false), error_(e.error) {}  // NOLINT: implicit
  Result(AllocError e) : has_(false), error_(e) {}  // NOLINT: implicit

  bool ok() const { return has_; }
  explicit operator bool() const { return has_; }
  void value() const {
    if (!has_) detail::unwrap_failed(error_);
  }
  AllocError error() const { return error_; }

 private:
  bool has_ = true;
  AllocError error_ = AllocError::kOutOfMemory;
};

inline Result<void> Ok() { return {}; }

// Propagates an error out of the enclosing function, like Rust's `?`:
//   ALLOY_TRY(auto span, a.alloc<int>(n));
#define ALLOY_DETAIL_CONCAT2(a, b) a##b
#define ALLOY_DETAIL_CONCAT(a, b) ALLOY_DETAIL_CONCAT2(a, b)
#define ALLOY_TRY(decl, expr)                                            \
  auto ALLOY_DETAIL_CONCAT(alloy_try_, __LINE__) = (expr);               \
  if (!ALLOY_DETAIL_CONCAT(alloy_try_, __LINE__))                        \
    return ::alloy::Err(ALLOY_DETAIL_CONCAT(alloy_try_, __LINE__).error()); \
  decl = std::move(*ALLOY_DETAIL_CONCAT(alloy_try_, __LINE__))

}  // namespace alloy
