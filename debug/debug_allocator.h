// alloy::DebugAllocator — wraps any allocator and names every misuse of it.
//
// Records each live block (address, length, alignment, the caller's return
// address, and a full stack trace always / 1-in-N / never) in a hash map that
// lives on the process heap, never in the allocator being tracked. It finds:
// double frees, frees of pointers it never handed out, free/resize with the
// wrong size or alignment, writes past the end (canary bytes after every
// block, checked on free, resize and check()), writes after free (freed
// blocks are filled with a pattern and held in a bounded quarantine, checked
// when they leave it and on check()), and leaks (check_leaks()/deinit()).
// Each finding becomes a debug::Report sent to DebugOptions::sink (stderr
// text by default) with the relevant call sites. The bad call is refused (not
// forwarded to the child) and the program goes on, unless abort_on_error. An
// overrun found during a free/resize is reported and the call still goes
// ahead: the call itself is right, the earlier write was wrong.
//
// Cost per call: an address-map insert or find+tombstone, a 16-byte canary
// write/compare, on free a pattern fill and (when a block leaves the
// quarantine) a pattern compare; absl::GetStackTrace only for sampled
// blocks. Against glibc malloc+free of 64 bytes, defaults (bench/debug,
// 2026-11): ~530 instructions per alloc+free pair vs 173 (3.1x, callgrind),
// 2.8-2.9x in CPU time; sampled 1-in-64 about the same; 64 mixed-size blocks
// at a time 2.9x instructions, 3.0-3.2x time. Thread safety: with
// `thread_safe` (default) every call takes a BiasedLock, skipped entirely
// while the process has never started a thread (glibc's
// __libc_single_threaded). Once one has, the first thread to use the
// allocator still pays no atomic read-modify-write (plain stores, ~30 more
// instructions per pair: pair 3.3x, batch 2.9-3.0x its child, against
// 3.4-3.5x and 3.0-3.2x with a plain spin lock) until a second thread calls
// it; from then on it is a test-and-set spin lock (~6 ns more per pair). Without
// `thread_safe` the allocator must stay on one thread.
//
// Example:
//   alloy::DebugAllocator debug(alloy::c_allocator());
//   alloy::Allocator a = debug.allocator();
//   auto s = a.alloc<int>(10);
//   a.free(*s); a.free(*s);              // reported as a double free, refused
//   std::size_t leaks = debug.deinit();  // prints and counts leaked blocks
#pragma once


#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <atomic>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/allocators/engine/biased_lock.h"
#include "alloy/debug/address_map.h"
#include "alloy/debug/report.h"

namespace alloy {

enum class TraceMode : std::uint8_t {
  kNever,    // return address only (one word per block)
  kSampled,  // plus a full trace for 1 block in `sample_every`
  kAlways,   // plus a full trace for every block
};

struct InjectedFailure;

struct DebugOptions {
  TraceMode traces = TraceMode::kSampled;
  std::uint32_t sample_every = 64;
  // Guard bytes after each block (0 turns overrun detection off).
  std::size_t canary_bytes = 16;
  // Freed blocks held back, pattern-filled, to catch writes after free.
  // 0 bytes turns the quarantine off. Blocks above `quarantine_max_block`
  // are released at once (filling them would cost more than it finds).
  std::size_t quarantine_bytes = 256 * 1024;
  std::size_t quarantine_max_block = 64 * 1024;
  // Metadata of blocks already given back to the child, kept so a late
  // double free is still named as one, with its first free.
  std::size_t freed_history = 1024;
  // Live bytes above this make alloc/resize fail (return null/false).
  std::size_t memory_limit = std::numeric_limits<std::size_t>::max();
  // Off: no lock at all, for single-threaded speed.
  bool thread_safe = true;
  // std::abort() after reporting a misuse (not after leak reports).
  bool abort_on_error = false;
  // Logs every call (op, sizes, result, symbolized caller) to `log` (stderr
  // if empty). `log` runs under the allocator's lock: it must not call it.
  bool verbose = false;
  std::function<void(std::string_view)> log;
  // Where reports go; empty means stderr, as text (or one JSON object per
  // line with json_to_stderr). The sink runs outside the allocator's lock.
  debug::ReportSink sink;
  bool json_to_stderr = false;
  // deinit() gives leaked blocks back to the child after reporting them.
  bool free_leaks_on_deinit = true;
  // Failure injection (used by check_all_allocation_failures): the alloc
  // call with this index, and every later one, returns null; likewise the
  // resize/remap calls (counted together) for fail_resize_from. -1 = never.
  std::int64_t fail_alloc_from = -1;
  std::int64_t fail_resize_from = -1;
  // Called (under the allocator's lock) when the first failure is injected.
  std::function<void(const InjectedFailure&)> on_injected_failure;
};

struct DebugStats {
  std::size_t live_bytes = 0;
  std::size_t peak_live_bytes = 0;
  std::size_t total_bytes = 0;       // sum of every successful alloc's length
  std::size_t live_count = 0;
  std::size_t peak_live_count = 0;
  std::size_t total_allocs = 0;      // successful allocs
  std::size_t total_frees = 0;       // accepted frees
  std::size_t alloc_calls = 0;       // alloc calls reaching this allocator
  std::size_t resize_calls = 0;      // resize + remap calls
  std::size_t failed_allocs = 0;     // null returned (child, limit or injected)
  std::size_t errors = 0;            // reports other than leaks
  std::size_t quarantined_bytes = 0;
};

// One live block, as visit() shows it.
struct AllocationInfo {
  void* address;
  std::size_t size;
  Alignment alignment;
  std::uintptr_t ret_addr;
  std::span<void* const> frames;  // empty if no full trace was taken
};

// The call that an injected failure refused (see DebugOptions::fail_*).
struct InjectedFailure {
  bool resize = false;             // false: an alloc; true: a resize/remap
  std::int64_t index = -1;
  std::size_t len = 0;
  debug::CallSite site;            // full trace of the refused call
};

class DebugAllocator {
 public:
  explicit DebugAllocator(Allocator child, DebugOptions options = {});
  ~DebugAllocator();  // deinit() unless already done
  DebugAllocator(const DebugAllocator&) = delete;
  DebugAllocator& operator=(const DebugAllocator&) = delete;

  Allocator allocator() { return Allocator{this, &kVTable}; }
  Allocator child() const { return child_; }
  const DebugOptions& options() const { return options_; }

  // Reports every live block as a leak; returns how many there are.
  std::size_t check_leaks();
  // Checks every live block's canary and every quarantined block's pattern
  // now; returns the number of problems reported.
  std::size_t check();
  // check_leaks(), then empties the quarantine (checking it), then (if
  // free_leaks_on_deinit) frees leaked blocks. Returns the leak count. The
  // allocator may be used again afterwards.
  std::size_t deinit();

  // Calls fn for every live block, in allocation order. fn must not call
  // this allocator.
  void visit(const std::function<void(const AllocationInfo&)>& fn) const;
  DebugStats stats() const;
  // The first failure injected since construction, if any.
  std::optional<InjectedFailure> injected_failure() const;

 private:
  struct StackTrace;  // allocation frames and, once freed, free frames
  struct Record {
    std::size_t size = 0;
    std::uintptr_t ret_addr = 0;
    StackTrace* trace = nullptr;  // null unless sampled
    std::uint64_t seq = 0;
    Alignment alignment;
  };
  // A freed block: in the quarantine (memory still held, pattern-filled) or
  // in the history (memory back in the child, metadata kept for reports).
  // 32 bytes, two to a cache line: the free path writes one, evicts one and
  // (once per 64 frees) forgets a batch without reading them.
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
  };
  static_assert(sizeof(Freed) == 32);
  // FIFO addressed by absolute position (0 = first ever pushed), so
  // positions stay valid while it grows; capacity stays a power of two.
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
  // The trace of a freed entry, found by its position in freed_.
  struct FreedTrace {
    std::uint64_t pos;
    StackTrace* trace;
  };
  // One lock per call when thread_safe: a BiasedLock. The first
  // thread to use the allocator takes it with plain stores (no atomic
  // read-modify-write) until another thread calls; from then on it is a
  // test-and-set spin lock for everyone. (Hence the callbacks run under the
  // lock -- log, on_injected_failure -- must not start a thread that calls
  // this allocator and wait for it.)
  class Guard;

  static void* vt_alloc(void* ctx, std::size_t len, Alignment alignment, std::uintptr_t ret);
  static bool vt_resize(void* ctx, Bytes memory, Alignment alignment, std::size_t new_len,
                        std::uintptr_t ret);
  static void* vt_remap(void* ctx, Bytes memory, Alignment alignment, std::size_t new_len,
                        std::uintptr_t ret);
  static void vt_free(void* ctx, Bytes memory, Alignment alignment, std::uintptr_t ret);
  static const VTable kVTable;

  void* do_alloc(std::size_t len, Alignment alignment, std::uintptr_t ret);
  [[gnu::noinline]] void inject_failure_locked(bool resize, std::int64_t index, std::size_t len,
                                               std::uintptr_t ret);
  void* do_resize(Bytes memory, Alignment alignment, std::size_t new_len, std::uintptr_t ret,
                  bool may_move);
  void do_free(Bytes memory, Alignment alignment, std::uintptr_t ret);
  [[gnu::noinline]] void free_slow(Bytes memory, Alignment alignment, std::uintptr_t ret);

  // Helpers; the *_locked ones expect the lock held (if any).
  StackTrace* new_trace_locked();
  void capture_free_trace_locked(StackTrace* t);
  void release_trace_locked(StackTrace* t);
  bool should_sample_locked() {
    if (options_.traces == TraceMode::kNever) return false;
    if (options_.traces == TraceMode::kAlways) return true;
    if (--sample_countdown_ != 0) return false;
    sample_countdown_ = options_.sample_every;
    return true;
  }
  void write_canary(std::byte* block, std::size_t size) const {
    static constexpr std::uint64_t kWord = 0xCACACACACACACACAull;  // debug::internal::kCanaryByte
    std::byte* p = block + size;
    if (options_.canary_bytes == 16) {  // the default: two stores
      std::memcpy(p, &kWord, 8);
      std::memcpy(p + 8, &kWord, 8);
    } else {
      std::memset(p, 0xCA, options_.canary_bytes);
    }
  }
  bool canary_intact(const std::byte* block, std::size_t size) const {
    static constexpr std::uint64_t kWord = 0xCACACACACACACACAull;
    if (options_.canary_bytes == 16) {  // the default: two loads
      std::uint64_t a, b;
      std::memcpy(&a, block + size, 8);
      std::memcpy(&b, block + size + 8, 8);
      return ((a ^ kWord) | (b ^ kWord)) == 0;
    }
    return check_canary(block, size).second == 0;
  }
  // Returns (first bad offset, count) of changed canary bytes, or count 0.
  std::pair<std::size_t, std::size_t> check_canary(const std::byte* block,
                                                   std::size_t size) const;
  std::pair<std::size_t, std::size_t> check_pattern(const std::byte* block,
                                                    std::size_t size) const;
  // Finds a pointer's report for a call on memory that is not live.
  debug::Report not_live_report_locked(std::uintptr_t addr, std::size_t len,
                                       Alignment alignment, debug::Operation op);
  debug::CallSite site_of(std::uintptr_t ret, const StackTrace* t) const;
  debug::CallSite free_site_of(std::uintptr_t ret, const StackTrace* t) const;
  void fill_block_report(debug::Report& r, std::uintptr_t addr, const Record& rec) const;
  void fill_freed_report(debug::Report& r, std::uint64_t pos) const;
  const StackTrace* trace_of_freed(std::uint64_t pos) const;
  // Ends a correct free: remembers it, fills and holds the block (or gives
  // it back to the child at once if too big), evicts what no longer fits.
  void quarantine_locked(std::uintptr_t addr, const Record& rec, std::uintptr_t free_ret,
                         std::vector<debug::Report>& out);
  // Gives the oldest held block back to the child, checking its pattern.
  bool evict_one_locked(std::vector<debug::Report>& out);
  void release_held_locked(std::uint64_t pos, std::vector<debug::Report>& out);
  [[gnu::noinline]] void report_use_after_free_locked(std::uint64_t pos,
                                                      std::vector<debug::Report>& out);
  void trim_history_locked() {
    while (released_ != freed_.end() && !freed_.at(released_).held()) ++released_;
    // Forgotten in batches of 64: one step per 64 frees instead of per free.
    if (released_ - freed_.begin() > options_.freed_history + 64) [[unlikely]] {
      forget_history_locked();
    }
  }
  void forget_history_locked();
  BiasedLock* lock_ptr() const { return lock_if_thread_safe_; }
  void emit(debug::Report r);
  void emit_all(std::vector<debug::Report>& reports);
  void log_call(std::string_view op, std::size_t len, std::size_t new_len, Alignment alignment,
                const void* in, const void* out, std::uintptr_t ret);

  Allocator child_;
  DebugOptions options_;
  mutable BiasedLock lock_;  // unused when !thread_safe
  BiasedLock* lock_if_thread_safe_ = nullptr;
  debug::AddressMap<Record> live_;
  // Every remembered free, oldest first. Entries [begin, released_) have
  // gone back to the child (history, at most freed_history + 64 of them);
  // later entries are held in the quarantine unless they were too big to
  // hold.
  Fifo<Freed> freed_;
  std::uint64_t released_ = 0;
  // The entries of freed_ that own a trace, oldest first (1 in sample_every
  // frees), so forgetting history never reads freed_ itself.
  Fifo<FreedTrace> freed_traces_;
  std::vector<StackTrace*> trace_pool_;
  // Reports found under the lock by the free fast path, emitted after it.
  std::vector<debug::Report> pending_;
  // live_count and total_allocs are derived in stats().
  DebugStats stats_;
  std::uint64_t next_seq_ = 0;
  std::uint32_t sample_countdown_ = 1;
  // min(quarantine_max_block, quarantine_bytes): larger blocks are not held.
  std::size_t hold_limit_ = 0;
  // options_.fail_alloc_from as the first alloc_calls value to fail.
  std::uint64_t fail_alloc_at_ = std::numeric_limits<std::uint64_t>::max();
  std::optional<InjectedFailure> injected_;
  bool deinit_done_ = false;
};

}  // namespace alloy
