// alloy::Result<T> — the value of a fallible allocation, or why it failed.
//
// Why: the allocation path never throws. Helpers return a [[nodiscard]]
// Result that holds either a T or an AllocError, in the spirit of Rust's
// Result and C++23's std::expected (alloy targets C++20, so it has its own).
// It has what std::expected users reach for: value_or, transform (alias
// map), and_then, transform_error, or_else, on Result<T> and Result<void>.
// value() on an error and error() on a success are programming mistakes:
// both print a message and abort, in every build.
//
// ALLOY_TRY propagates an error out of a function returning any Result, like
// Rust's `?`: ALLOY_TRY(decl, expr) binds the value, ALLOY_TRY(expr) is for
// Result<void> (every Vec::try_*).
//
// Cost: a T plus one tag byte; no heap, no exceptions. Thread safety: a value.
//
// Example:
//   alloy::Result<std::span<int>> r = a.alloc<int>(n);
//   if (!r) { log(alloy::to_string(r.error())); return; }
//   std::span<int> s = *r;
//   ...
//   a.free(s);
//
//   alloy::Result<void> fill(alloy::Vec<int>& v, std::span<const int> src) {
//     ALLOY_TRY(v.try_reserve(src.size()));        // Result<void>
//     ALLOY_TRY(auto copy, v.allocator().dupe(src)); // Result<std::span<int>>
//     ...
//     return alloy::Ok();
//   }
#pragma once

#include <cstdio>
#include <cstdlib>
#include <functional>
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
[[noreturn]] inline void error_on_success() {
  std::fprintf(stderr, "alloy: Result::error() called on a success\n");
  std::abort();
}

}  // namespace detail

// Tag for constructing an error Result: `return alloy::Err(AllocError::...)`.
struct Err {
  AllocError error;
  constexpr explicit Err(AllocError e) : error(e) {}
};

template <class T>
class Result;

namespace detail {
template <class R>
struct IsResult : std::false_type {};
template <class U>
struct IsResult<Result<U>> : std::true_type {};

// Result<f(args...)>, with a void f giving Result<void>.
template <class F, class... A>
using TransformResult = Result<std::remove_cv_t<std::invoke_result_t<F, A...>>>;

template <class F, class... A>
auto make_transformed(F&& f, A&&... a) -> TransformResult<F, A...> {
  if constexpr (std::is_void_v<std::invoke_result_t<F, A...>>) {
    std::invoke(std::forward<F>(f), std::forward<A>(a)...);
    return {};
  } else {
    return std::invoke(std::forward<F>(f), std::forward<A>(a)...);
  }
}
}  // namespace detail

template <class T>
class [[nodiscard]] Result {
  static_assert(!std::is_reference_v<T>, "Result<T&> is not supported; use Result<T*>");

 public:
  using value_type = T;
  using error_type = AllocError;

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
  bool has_value() const { return has_; }
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

  // The value, or `fallback` converted to T on an error.
  template <class U>
  T value_or(U&& fallback) const& {
    return has_ ? value_ : static_cast<T>(std::forward<U>(fallback));
  }
  template <class U>
  T value_or(U&& fallback) && {
    return has_ ? std::move(value_) : static_cast<T>(std::forward<U>(fallback));
  }

  // The error; calling it on a success aborts with a message.
  AllocError error() const {
    if (has_) detail::error_on_success();
    return error_;
  }

  // f(value) -> U: Result<U> (Result<void> for a void f); errors pass through.
  template <class F>
  auto transform(F&& f) & { return transform_impl(*this, std::forward<F>(f)); }
  template <class F>
  auto transform(F&& f) const& { return transform_impl(*this, std::forward<F>(f)); }
  template <class F>
  auto transform(F&& f) && { return transform_impl(std::move(*this), std::forward<F>(f)); }
  // Rust's name for transform.
  template <class F>
  auto map(F&& f) & { return transform(std::forward<F>(f)); }
  template <class F>
  auto map(F&& f) const& { return transform(std::forward<F>(f)); }
  template <class F>
  auto map(F&& f) && { return std::move(*this).transform(std::forward<F>(f)); }

  // f(value) -> Result<U>: chains a fallible step; errors pass through.
  template <class F>
  auto and_then(F&& f) & { return and_then_impl(*this, std::forward<F>(f)); }
  template <class F>
  auto and_then(F&& f) const& { return and_then_impl(*this, std::forward<F>(f)); }
  template <class F>
  auto and_then(F&& f) && { return and_then_impl(std::move(*this), std::forward<F>(f)); }

  // f(AllocError) -> AllocError: rewrites the error; a value passes through.
  // (alloy has one error type, so the result is still a Result<T>.)
  template <class F>
  Result transform_error(F&& f) const& {
    if (has_) return *this;
    return Err(std::invoke(std::forward<F>(f), error_));
  }
  template <class F>
  Result transform_error(F&& f) && {
    if (has_) return std::move(*this);
    return Err(std::invoke(std::forward<F>(f), error_));
  }

  // f(AllocError) -> Result<T>: recovers from an error; a value passes through.
  template <class F>
  Result or_else(F&& f) const& {
    static_assert(std::is_same_v<std::remove_cvref_t<std::invoke_result_t<F, AllocError>>, Result>,
                  "or_else: f(AllocError) must return the same Result<T>");
    if (has_) return *this;
    return std::invoke(std::forward<F>(f), error_);
  }
  template <class F>
  Result or_else(F&& f) && {
    static_assert(std::is_same_v<std::remove_cvref_t<std::invoke_result_t<F, AllocError>>, Result>,
                  "or_else: f(AllocError) must return the same Result<T>");
    if (has_) return std::move(*this);
    return std::invoke(std::forward<F>(f), error_);
  }

 private:
  template <class Self, class F>
  static auto transform_impl(Self&& self, F&& f)
      -> detail::TransformResult<F, decltype((std::forward<Self>(self).value_))> {
    if (!self.has_) return Err(self.error_);
    return detail::make_transformed(std::forward<F>(f), std::forward<Self>(self).value_);
  }
  template <class Self, class F>
  static auto and_then_impl(Self&& self, F&& f)
      -> std::remove_cvref_t<std::invoke_result_t<F, decltype((std::forward<Self>(self).value_))>> {
    using R =
        std::remove_cvref_t<std::invoke_result_t<F, decltype((std::forward<Self>(self).value_))>>;
    static_assert(detail::IsResult<R>::value, "and_then: f must return an alloy::Result");
    if (!self.has_) return Err(self.error_);
    return std::invoke(std::forward<F>(f), std::forward<Self>(self).value_);
  }

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
  using value_type = void;
  using error_type = AllocError;

  Result() = default;
  Result(Err e) : has_(false), error_(e.error) {}  // NOLINT: implicit
  Result(AllocError e) : has_(false), error_(e) {}  // NOLINT: implicit

  bool ok() const { return has_; }
  bool has_value() const { return has_; }
  explicit operator bool() const { return has_; }
  // Aborts with a message on an error.
  void value() const {
    if (!has_) detail::unwrap_failed(error_);
  }
  // The error; calling it on a success aborts with a message.
  AllocError error() const {
    if (has_) detail::error_on_success();
    return error_;
  }

  // f() -> U: Result<U> (Result<void> for a void f); errors pass through.
  template <class F>
  auto transform(F&& f) const -> detail::TransformResult<F> {
    if (!has_) return Err(error_);
    return detail::make_transformed(std::forward<F>(f));
  }
  template <class F>
  auto map(F&& f) const {
    return transform(std::forward<F>(f));
  }
  // f() -> Result<U>: chains a fallible step; errors pass through.
  template <class F>
  auto and_then(F&& f) const -> std::remove_cvref_t<std::invoke_result_t<F>> {
    using R = std::remove_cvref_t<std::invoke_result_t<F>>;
    static_assert(detail::IsResult<R>::value, "and_then: f must return an alloy::Result");
    if (!has_) return Err(error_);
    return std::invoke(std::forward<F>(f));
  }
  // f(AllocError) -> AllocError: rewrites the error.
  template <class F>
  Result transform_error(F&& f) const {
    if (has_) return *this;
    return Err(std::invoke(std::forward<F>(f), error_));
  }
  // f(AllocError) -> Result<void>: recovers from an error.
  template <class F>
  Result or_else(F&& f) const {
    static_assert(std::is_same_v<std::remove_cvref_t<std::invoke_result_t<F, AllocError>>, Result>,
                  "or_else: f(AllocError) must return Result<void>");
    if (has_) return *this;
    return std::invoke(std::forward<F>(f), error_);
  }

 private:
  bool has_ = true;
  AllocError error_ = AllocError::kOutOfMemory;
};

inline Result<void> Ok() { return {}; }

// Propagates an error out of the enclosing function (which returns any
// alloy::Result), like Rust's `?`:
//   ALLOY_TRY(auto span, a.alloc<int>(n));   // binds the value
//   ALLOY_TRY(v.try_push(x));                // Result<void>
// The one-argument form is for Result<void> only, so that a value (a span
// to free, say) is never dropped silently. As with any macro, commas in
// `expr` outside parentheses (template arguments) need an extra pair.
#define ALLOY_DETAIL_CONCAT2(a, b) a##b
#define ALLOY_DETAIL_CONCAT(a, b) ALLOY_DETAIL_CONCAT2(a, b)
#define ALLOY_DETAIL_TRY_VAR ALLOY_DETAIL_CONCAT(alloy_try_, __LINE__)
#define ALLOY_DETAIL_TRY_DECL(decl, expr)                     \
  auto ALLOY_DETAIL_TRY_VAR = (expr);                         \
  if (!ALLOY_DETAIL_TRY_VAR)                                  \
    return ::alloy::Err(ALLOY_DETAIL_TRY_VAR.error());        \
  decl = std::move(*ALLOY_DETAIL_TRY_VAR)
#define ALLOY_DETAIL_TRY_VOID(expr)                                                  \
  do {                                                                              \
    auto alloy_try_result = (expr);                                                 \
    static_assert(std::is_same_v<decltype(alloy_try_result), ::alloy::Result<void>>, \
                  "ALLOY_TRY(expr) is for Result<void>; use ALLOY_TRY(decl, expr)"); \
    if (!alloy_try_result) return ::alloy::Err(alloy_try_result.error());           \
  } while (0)
#define ALLOY_DETAIL_TRY_PICK(_1, _2, name, ...) name
#define ALLOY_TRY(...)                                                           \
  ALLOY_DETAIL_TRY_PICK(__VA_ARGS__, ALLOY_DETAIL_TRY_DECL, ALLOY_DETAIL_TRY_VOID, \
                        unused)(__VA_ARGS__)

}  // namespace alloy
