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
// Size feedback: alloc_at_least asks the child for len + canary with its
// alloc_at_least and reports the child's extra, less the canary, as the
// user's; the record keeps both lengths, and free/resize/remap accept any
// length between them (the freed-length rule; others are kWrongSize). The
// canary sits after the reported length. alloc_zeroed uses the child's.
// owns() is kYes for live blocks; a free of a pointer that is not live says
// whether the child owns it (when the child can tell).
// Each finding becomes a debug::Report sent to DebugOptions::sink (stderr
// text by default) with the relevant call sites. The bad call is refused (not
// forwarded to the child) and the program goes on, unless abort_on_error. An
// overrun found during a free/resize is reported and the call still goes
// ahead: the call itself is right, the earlier write was wrong.
//
// Cost per call: O(1) expected -- an address-map insert or find+tombstone, a
// 16-byte canary write/compare, on free an O(size) pattern fill and (when a
// block leaves the quarantine) an O(size) pattern compare; absl::GetStackTrace
// only for sampled blocks. With the defaults that is about three times its
// child (glibc malloc+free) per alloc+free pair, in instructions and in time,
// sampled 1-in-64 about the same; figures and how to measure them in
// bench/README.md. Thread safety: with `thread_safe` (default) every call takes
// a BiasedLock, skipped entirely while the process has never started a thread
// (glibc's __libc_single_threaded). Once one has, the first thread to use the
// allocator still pays no atomic read-modify-write (plain stores, a few dozen
// instructions more per pair) until a second thread calls it; from then on it
// is a test-and-set spin lock. Without `thread_safe` the allocator must stay
// on one thread.
//
// Example:
//   alloy::DebugAllocator debug(alloy::c_allocator());
//   alloy::Allocator a = debug.allocator();
//   auto s = a.alloc<int>(10);
//   a.free(*s); a.free(*s);              // reported as a double free, refused
//   debug.write_profile("/tmp/live.pb.gz"); // go tool pprof -top /tmp/live.pb.gz
//   std::size_t leaks = debug.deinit();  // prints and counts leaked blocks
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/alloc_iface/ceiling.h"
#include "alloy/alloc_iface/make_vtable.h"
#include "alloy/allocators/engine/biased_lock.h"
#include "alloy/debug/internal/quarantine.h"
#include "alloy/debug/internal/records.h"
#include "alloy/debug/internal/trace.h"
#include "alloy/debug/report.h"

namespace alloy {

enum class TraceMode : std::uint8_t {
  kNever,    // return address only (one word per block)
  kSampled,  // plus a full trace for 1 block in `sample_every`
  kAlways,   // plus a full trace for every block
};

struct InjectedFailure;

// The pragmas keep the synthesized constructors of a struct with
// [[deprecated]] fields quiet (GCC 12 flags them); user code that names
// memory_limit or fail_*_from still gets the warning.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
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
  // Live bytes above this make alloc/resize fail (return null/false);
  // kNoCeiling (alloc_iface/ceiling.h) = none. set_ceiling() moves it.
  std::size_t ceiling = kNoCeiling;
  // The old name, for one release: the lower of the two applies.
  [[deprecated("use ceiling")]] std::size_t memory_limit = kNoCeiling;
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
  // Failure injection (used by check_all_allocation_failures), spelled as
  // FailingAllocator's: the 0-based alloc call with this index, and every
  // later one, returns null (FailingAllocator's keep_failing = true);
  // likewise the resize/remap calls (counted together) for
  // fail_resize_index. kNever = none.
  static constexpr std::size_t kNever = SIZE_MAX;
  std::size_t fail_alloc_index = kNever;
  std::size_t fail_resize_index = kNever;
  // The old names, for one release (-1 = never; the lower index applies).
  [[deprecated("use fail_alloc_index")]] std::int64_t fail_alloc_from = -1;
  [[deprecated("use fail_resize_index")]] std::int64_t fail_resize_from = -1;
  // Called (under the allocator's lock) when the first failure is injected.
  // Like `log`, it must not call this allocator, nor wait for a thread that does.
  std::function<void(const InjectedFailure&)> on_injected_failure;
};
#pragma GCC diagnostic pop

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

  Allocator allocator() { return Allocator{this, &vtable_for<DebugAllocator>}; }
  Allocator child() const { return child_; }
  const DebugOptions& options() const { return options_; }
  // The ceiling on live bytes (DebugOptions::ceiling; kNoCeiling = none).
  // Lowering it below what is live refuses growth; live blocks stay valid.
  std::size_t ceiling() const;
  void set_ceiling(std::size_t bytes);

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
  // Writes the live blocks as a pprof heap profile (gzip'd profile.proto,
  // see alloy/profile/pprof_writer.h) to `path`: one sample per block, by
  // the frames its reports would print (the full trace if one was taken,
  // else the call site), with functions and file:line, so
  // `go tool pprof -top path` needs no binary. Exact, not sampled (period 1).
  // False if the file could not be written. Allocates from the process heap.
  bool write_profile(const char* path) const;
  // The first failure injected since construction, if any.
  std::optional<InjectedFailure> injected_failure() const;

 private:
  // Private machinery lives in debug/internal/: the live-block table
  // (records.h), the freed-block FIFO (quarantine.h), traces (trace.h) and
  // the byte patterns (pattern.h). Guard (debug_allocator.cc) takes the lock.
  class Guard;
  using Record = debug::internal::Record;

  static void* vt_alloc(void* ctx, std::size_t len, Alignment alignment, std::uintptr_t ret);
  static bool vt_resize(void* ctx, Bytes memory, Alignment alignment, std::size_t new_len,
                        std::uintptr_t ret);
  static void* vt_remap(void* ctx, Bytes memory, Alignment alignment, std::size_t new_len,
                        std::uintptr_t ret);
  static void vt_free(void* ctx, Bytes memory, Alignment alignment, std::uintptr_t ret);
  static Bytes vt_alloc_at_least(void* ctx, std::size_t len, Alignment alignment,
                                 std::uintptr_t ret);
  static void* vt_alloc_zeroed(void* ctx, std::size_t len, Alignment alignment,
                               std::uintptr_t ret);
  static Ownership vt_owns(void* ctx, const void* ptr);
  ALLOY_VTABLE_ENTRIES;

  enum class AllocKind : std::uint8_t { kPlain, kAtLeast, kZeroed };
  // One copy per kind (defined and used in debug_allocator.cc only), so the
  // plain alloc pays no branch for the other two.
  template <AllocKind kKind>
  Bytes do_alloc(std::size_t len, Alignment alignment, std::uintptr_t ret);
  [[gnu::noinline]] void inject_failure_locked(bool resize, std::int64_t index, std::size_t len,
                                               std::uintptr_t ret);
  void* do_resize(Bytes memory, Alignment alignment, std::size_t new_len, std::uintptr_t ret,
                  bool may_move);
  void do_free(Bytes memory, Alignment alignment, std::uintptr_t ret);
  [[gnu::noinline]] void free_slow(Bytes memory, Alignment alignment, std::uintptr_t ret);

  // Helpers, defined in debug_allocator.cc; the *_locked ones expect the
  // lock held (if any).
  bool should_sample_locked();
  debug::Report not_live_report_locked(std::uintptr_t addr, std::size_t len,
                                       Alignment alignment, debug::Operation op);
  void fill_block_report(debug::Report& r, std::uintptr_t addr, const Record& rec) const;
  void fill_freed_report(debug::Report& r, std::uint64_t pos) const;
  void quarantine_locked(std::uintptr_t addr, const Record& rec, std::uintptr_t free_ret,
                         std::vector<debug::Report>& out);
  bool evict_one_locked(std::vector<debug::Report>& out);
  [[gnu::noinline]] void report_use_after_free_locked(std::uint64_t pos,
                                                      std::vector<debug::Report>& out);
  BiasedLock* lock_ptr() const { return lock_if_thread_safe_; }
  void emit(debug::Report r);
  void emit_all(std::vector<debug::Report>& reports);
  void log_call(std::string_view op, std::size_t len, std::size_t new_len, Alignment alignment,
                const void* in, const void* out, std::uintptr_t ret);

  Allocator child_;
  DebugOptions options_;
  mutable BiasedLock lock_;  // unused when !thread_safe
  BiasedLock* lock_if_thread_safe_ = nullptr;
  debug::internal::RecordTable live_;
  debug::internal::Quarantine quarantine_;
  debug::internal::TracePool traces_;
  // Reports found under the lock by the free fast path, emitted after it.
  std::vector<debug::Report> pending_;
  // live_count, total_allocs and quarantined_bytes are derived in stats().
  DebugStats stats_;
  std::uint64_t next_seq_ = 0;
  std::uint32_t sample_countdown_ = 1;
  // options_.fail_alloc_index (or the deprecated fail_alloc_from) as the
  // first alloc_calls value to fail; the same for resize_calls.
  std::uint64_t fail_alloc_at_ = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t fail_resize_at_ = std::numeric_limits<std::uint64_t>::max();
  std::optional<InjectedFailure> injected_;
  bool deinit_done_ = false;
};

}  // namespace alloy
