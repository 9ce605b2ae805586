// alloy::debug::internal::Quarantine — DebugAllocator's memory of freed blocks:
// a FIFO of every remembered free, oldest first, whose newer part is the
// quarantine proper (blocks held back, their memory still the owner's, so a
// write after free can be found when they leave) and whose older part is the
// history (blocks already given back, their metadata kept so a late double
// free is still named as one, with its first free).
//
// Bounds, as DebugOptions states them: held bytes at most `bytes` once the
// owner has evicted (over_budget() says when to), blocks above
// min(max_block, bytes) never held; the history keeps at least `history`
// released entries and forgets them in batches of 64 (so at most
// history + 64). The quarantine only does the bookkeeping: filling, checking
// and freeing the memory are the owner's (see debug_allocator.cc).
//
// Not a public API: visible to debug/ and tests/debug only.
//
// Cost: push, take_oldest/released (or evict_oldest) and trim are O(1)
// amortised (the FIFO is a ring that doubles; forgetting touches only the
// trace list, once per 64 frees); find() and trace_of() are O(remembered
// entries), for reports only.
// Thread safety: none; the owner locks.
//
// Example:
//   alloy::debug::internal::Quarantine q({.bytes = 1024, .max_block = 256, .history = 16});
//   if (q.would_hold(64)) q.push_held(addr, alloc_ret, free_ret, 64, alignment);
//   std::uint64_t pos;
//   while (q.over_budget()) {
//     alloy::debug::internal::Freed* f = q.take_oldest(pos);
//     if (f == nullptr) break;
//     check(*f);
//     q.released(*f);
//     give_back(*f);
//   }
//   q.trim(trace_pool);
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "alloy/alloc_iface/alignment.h"
#include "alloy/debug/internal/trace.h"

namespace alloy::debug::internal {

// A freed block: held (memory still kept, pattern-filled) or released
// (memory back in the child, metadata kept for reports). 32 bytes, two to a
// cache line: the free path writes one, evicts one and (once per 64 frees)
// forgets a batch without reading them.
struct Freed {
  static constexpr std::uint64_t kSizeMask = (std::uint64_t{1} << 48) - 1;
  static constexpr std::uint64_t kHeld = std::uint64_t{1} << 56;
  static constexpr std::uint64_t kTraced = std::uint64_t{1} << 57;
  std::uintptr_t addr;
  std::uintptr_t alloc_ret;
  std::uintptr_t free_ret;
  std::uint64_t bits;  // size | alignment log2 << 48 | kHeld | kTraced
  std::size_t size() const { return static_cast<std::size_t>(bits & kSizeMask); }
  Alignment alignment() const {
    return Alignment::from_log2(static_cast<std::uint8_t>((bits >> 48) & 0xff));
  }
  bool held() const { return (bits & kHeld) != 0; }
  bool traced() const { return (bits & kTraced) != 0; }
  static std::uint64_t bits_of(std::size_t size, Alignment alignment) {
    return static_cast<std::uint64_t>(size) | (std::uint64_t{alignment.log2()} << 48);
  }
};
static_assert(sizeof(Freed) == 32);

// FIFO addressed by absolute position (0 = first ever pushed), so positions
// stay valid while it grows; capacity stays a power of two.
template <class T>
class Fifo {
 public:
  std::uint64_t begin() const { return head_; }
  std::uint64_t end() const { return tail_; }
  bool empty() const { return head_ == tail_; }
  T& at(std::uint64_t pos) { return buf_[pos & mask_]; }
  const T& at(std::uint64_t pos) const { return buf_[pos & mask_]; }
  T& front() { return at(head_); }
  T& push_back(const T& v) {
    if (tail_ - head_ == buf_.size()) [[unlikely]] grow();
    T& slot = at(tail_++);
    slot = v;
    return slot;
  }
  void pop_front() { ++head_; }
  void drop_until(std::uint64_t pos) { head_ = pos; }

 private:
  void grow() {
    std::vector<T> bigger(buf_.empty() ? 64 : buf_.size() * 2);
    const std::uint64_t new_mask = bigger.size() - 1;
    for (std::uint64_t i = head_; i != tail_; ++i) bigger[i & new_mask] = at(i);
    buf_ = std::move(bigger);
    mask_ = new_mask;
  }
  std::vector<T> buf_;
  std::uint64_t mask_ = 0;
  std::uint64_t head_ = 0;
  std::uint64_t tail_ = 0;
};

class Quarantine {
 public:
  struct Limits {
    std::size_t bytes = 0;      // held bytes, at most (0: hold nothing)
    std::size_t max_block = 0;  // larger blocks are never held
    std::size_t history = 0;    // released entries kept, at least (0: none)
  };

  explicit Quarantine(Limits limits)
      : limits_(limits), hold_limit_(std::min(limits.max_block, limits.bytes)) {}
  Quarantine(const Quarantine&) = delete;
  Quarantine& operator=(const Quarantine&) = delete;

  const Limits& limits() const { return limits_; }
  // Would a freed block of `size` bytes be held (else given back at once)?
  bool would_hold(std::size_t size) const { return size <= hold_limit_; }
  bool keeps_history() const { return limits_.history != 0; }
  std::size_t held_bytes() const { return held_bytes_; }
  // More bytes held than the bound: the owner evicts until it is not.
  bool over_budget() const { return held_bytes_ > limits_.bytes; }

  // Remembers a block whose memory the owner now holds (would_hold(size)
  // must be true); returns its position.
  std::uint64_t push_held(std::uintptr_t addr, std::uintptr_t alloc_ret, std::uintptr_t free_ret,
                          std::size_t size, Alignment alignment) {
    const std::uint64_t pos = freed_.end();
    freed_.push_back(
        Freed{addr, alloc_ret, free_ret, Freed::bits_of(size, alignment) | Freed::kHeld});
    held_bytes_ += size;
    return pos;
  }
  // Remembers a block already given back (history only); returns its position.
  std::uint64_t push_released(std::uintptr_t addr, std::uintptr_t alloc_ret,
                              std::uintptr_t free_ret, std::size_t size, Alignment alignment) {
    const std::uint64_t pos = freed_.end();
    freed_.push_back(Freed{addr, alloc_ret, free_ret, Freed::bits_of(size, alignment)});
    return pos;
  }
  // Gives entry `pos` (just pushed) the trace of its allocation and free;
  // the quarantine owns it until the entry is forgotten.
  void attach_trace(std::uint64_t pos, StackTrace* t) {
    freed_.at(pos).bits |= Freed::kTraced;
    traces_.push_back(FreedTrace{pos, t});
  }

  // Eviction, in two steps so the owner can check the block in between:
  // take_oldest() moves the history boundary past the oldest held entry and
  // returns it (still counted as held; `pos` set to its position), or null
  // if nothing is held; released() then makes it history and stops counting
  // its bytes. (Two steps rather than a callback: the bookkeeping's values
  // then need not survive the owner's check call, fewer instructions per
  // free.)
  Freed* take_oldest(std::uint64_t& pos) {
    while (released_ != freed_.end()) {
      const std::uint64_t p = released_++;
      Freed& f = freed_.at(p);
      if (f.held()) {
        pos = p;
        return &f;
      }
    }
    return nullptr;
  }
  void released(Freed& f) {
    held_bytes_ -= f.size();
    f.bits &= ~Freed::kHeld;
  }
  // Both steps with no check in between.
  const Freed* evict_oldest(std::uint64_t& pos) {
    Freed* f = take_oldest(pos);
    if (f != nullptr) released(*f);
    return f;
  }

  // After pushes and evictions: moves the history boundary past released
  // entries and, once the history is 64 entries over its bound, forgets the
  // oldest (their traces go back to `pool`).
  void trim(TracePool& pool) {
    while (released_ != freed_.end() && !freed_.at(released_).held()) ++released_;
    // Forgotten in batches of 64: one step per 64 frees instead of per free.
    if (released_ - freed_.begin() > limits_.history + 64) [[unlikely]] forget(pool);
  }

  // --- lookup, for reports and check().
  const Freed& at(std::uint64_t pos) const { return freed_.at(pos); }
  // The newest remembered entry for `addr`, held or released.
  std::optional<std::uint64_t> find(std::uintptr_t addr) const;
  // The trace attached to entry `pos`, or null.
  const StackTrace* trace_of(std::uint64_t pos) const;
  // Calls fn(pos, const Freed&) for every held entry, oldest first.
  template <class F>
  void for_each_held(F&& fn) const {
    for (std::uint64_t pos = released_; pos != freed_.end(); ++pos) {
      if (freed_.at(pos).held()) fn(pos, freed_.at(pos));
    }
  }
  // Remembered entries: released (history) and in all.
  std::size_t history_size() const { return static_cast<std::size_t>(released_ - freed_.begin()); }
  std::size_t remembered() const { return static_cast<std::size_t>(freed_.end() - freed_.begin()); }

  // Every trace still attached goes back to `pool` (the owner's destructor).
  void release_traces(TracePool& pool);

 private:
  // The trace of a freed entry, found by its position in freed_.
  struct FreedTrace {
    std::uint64_t pos;
    StackTrace* trace;
  };
  void forget(TracePool& pool);

  Limits limits_;
  std::size_t hold_limit_;  // min(max_block, bytes)
  std::size_t held_bytes_ = 0;
  // Every remembered free, oldest first. Entries [begin, released_) are
  // history (at most history + 64 of them); later entries are held unless
  // they were pushed released.
  Fifo<Freed> freed_;
  std::uint64_t released_ = 0;
  // The entries of freed_ that own a trace, oldest first, so forgetting
  // history never reads freed_ itself.
  Fifo<FreedTrace> traces_;
};

}  // namespace alloy::debug::internal
