// alloy::Box<T> — a single owner of one T, freed through the handle it came from.
//
// Like Rust's Box or a std::unique_ptr whose deleter is an alloy::Allocator:
// created with Box<T>::make(handle, args...), which returns a Result instead of
// throwing, moved but never copied, destroyed (and freed, sized) on scope exit.
//
// Cost: three words (handle + pointer); make is one alloc, the destructor one
// free. Thread safety: as any owning value; the handle's allocator decides
// whether boxes from it may be freed on other threads.
//
// Example:
//   auto box = alloy::Box<Config>::make(alloc, "service", 8);
//   if (!box) return box.error();
//   (*box)->threads = 16;
//   consume(std::move(*box));   // ownership moves; the handle travels along
//   // freed when the last owner goes out of scope
#pragma once

#include <utility>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/base/assert.h"

namespace alloy {

template <class T>
class Box {
 public:
  // Out of line, so the allocation is recorded at the user's call.
  template <class... Args>
  ALLOY_HELPER static Result<Box> make(Allocator allocator, Args&&... args) {
    auto r = allocator.create_at<T>(ALLOY_RETURN_ADDRESS(), std::forward<Args>(args)...);
    if (!r) return Err(r.error());
    return Box(allocator, *r);
  }

  // Adopts `p`, which must come from allocator.create<T>().
  static Box adopt(Allocator allocator, T* p) { return Box(allocator, p); }

  Box(Box&& o) noexcept : allocator_(o.allocator_), ptr_(std::exchange(o.ptr_, nullptr)) {}
  Box& operator=(Box&& o) noexcept {
    if (this != &o) {
      reset();
      allocator_ = o.allocator_;
      ptr_ = std::exchange(o.ptr_, nullptr);
    }
    return *this;
  }
  Box(const Box&) = delete;
  Box& operator=(const Box&) = delete;
  ~Box() { reset(); }

  T* get() const { return ptr_; }
  T& operator*() const {
    ALLOY_ASSERT_MSG(ptr_ != nullptr, "alloy::Box: dereference of an empty Box");
    return *ptr_;
  }
  T* operator->() const { return ptr_; }
  explicit operator bool() const { return ptr_ != nullptr; }
  Allocator allocator() const { return allocator_; }

  // Gives up ownership; the caller must destroy() it with allocator().
  T* release() { return std::exchange(ptr_, nullptr); }
  // Destroys and frees the object now.
  void reset() {
    if (ptr_ != nullptr) allocator_.destroy(std::exchange(ptr_, nullptr));
  }

 private:
  Box(Allocator allocator, T* p) : allocator_(allocator), ptr_(p) {}

  Allocator allocator_;
  T* ptr_ = nullptr;
};

}  // namespace alloy
