// alloy::FixedBufferAllocator and ThreadSafeFixedBufferAllocator — Zig's
// FixedBufferAllocator: a caller's buffer handed out front to back by index.
//
// Same contract as BumpAllocator (last allocation grows/shrinks/rewinds in
// place, older ones are left alone, full means null), but the position is an
// index into the buffer, so the thread-safe variant can keep it in one
// atomic word: its alloc is a compare-and-swap loop (lock-free, no mutex),
// and free/resize of the last allocation are single CASes that fail
// harmlessly if another thread got there first.
//
// Wrong frees, caught in every build: a pointer outside the buffer
// (foreign), and a block that reaches at or above the end index (freed, rewound
// or reset already: a double free; or longer than was handed out). They are
// REFUSED (nothing moves), counted in refused_frees() and reported on stderr
// with the caller's address. Not caught (no headers to tell): an interior
// pointer or a short length that happens to end at the end index rewinds to it,
// and a double free after the same place was handed out again frees the new
// block. Frees of older blocks are no-ops either way.
//
// Cost: plain variant as BumpAllocator; the thread-safe one adds one CAS per
// call (retried only under contention). Thread safety: FixedBufferAllocator
// none; ThreadSafeFixedBufferAllocator every call, except reset(), which
// must not race with anything.
//
// Example:
//   static std::byte slab[1 << 20];
//   alloy::ThreadSafeFixedBufferAllocator shared(slab);
//   alloy::Allocator a = shared.allocator();            // hand to N threads
//   auto msg = a.alloc<char>(256);                       // CAS loop inside
//   if (!msg) drop_message();                            // full: null, no abort
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "alloy/alloc_iface/allocator.h"

namespace alloy {

class FixedBufferAllocator {
 public:
  explicit FixedBufferAllocator(Bytes buffer) : buffer_(buffer) {}
  FixedBufferAllocator(const FixedBufferAllocator&) = delete;
  FixedBufferAllocator& operator=(const FixedBufferAllocator&) = delete;

  Allocator allocator();

  void* alloc(std::size_t len, Alignment alignment);
  bool resize(Bytes memory, std::size_t new_len);
  void free(Bytes memory, std::uintptr_t ret_addr = 0);
  std::size_t refused_frees() const { return refused_; }
  bool is_last_allocation(Bytes memory) const {
    return memory.data() + memory.size() == buffer_.data() + end_index_;
  }

  void reset() { end_index_ = 0; }
  bool owns(const void* p) const;
  std::size_t used() const { return end_index_; }
  std::size_t capacity() const { return buffer_.size(); }

 private:
  Bytes buffer_;
  std::size_t end_index_ = 0;
  std::size_t refused_ = 0;
};

class ThreadSafeFixedBufferAllocator {
 public:
  explicit ThreadSafeFixedBufferAllocator(Bytes buffer) : buffer_(buffer) {}
  ThreadSafeFixedBufferAllocator(const ThreadSafeFixedBufferAllocator&) = delete;
  ThreadSafeFixedBufferAllocator& operator=(const ThreadSafeFixedBufferAllocator&) = delete;

  Allocator allocator();

  void* alloc(std::size_t len, Alignment alignment);
  bool resize(Bytes memory, std::size_t new_len);
  void free(Bytes memory, std::uintptr_t ret_addr = 0);
  std::size_t refused_frees() const { return refused_.load(std::memory_order_relaxed); }

  // Not thread-safe: call only when no other thread uses the allocator.
  void reset() { end_index_.store(0, std::memory_order_relaxed); }
  bool owns(const void* p) const;
  std::size_t used() const { return end_index_.load(std::memory_order_relaxed); }
  std::size_t capacity() const { return buffer_.size(); }
  // How many CAS attempts lost a race (a contention gauge for benchmarks).
  std::size_t cas_retries() const { return retries_.load(std::memory_order_relaxed); }

 private:
  Bytes buffer_;
  std::atomic<std::size_t> end_index_{0};
  std::atomic<std::size_t> retries_{0};
  std::atomic<std::size_t> refused_{0};
};

}  // namespace alloy
