// alloy::WrongFree — how the allocator family refuses and reports a wrong free.
//
// A wrong free is one the allocator did not hand out in that form: a foreign
// pointer, a block freed twice, an interior (or misaligned) pointer, or a
// length the block never had. Each allocator's header says which of these it
// catches in every build, which only in a checked build, and which it cannot
// see. What it catches it REFUSES (nothing changes: the block is not reused,
// no counter moves) and reports: the refusal is counted, remembered
// (last_wrong_free()) and printed to stderr as one line naming the allocator,
// what was wrong and the caller's return address in hex:
//
//   alloy::NodePool: refused free of 0x7f1c2a001040 (24 bytes): double free
//   (the node is already free); called from 0x55d0c1a4b2f3
//
// A checked build is one without NDEBUG, or any sanitizer build; kCheckedFrees
// says which this is (override with -DALLOY_CHECKED_FREES=0/1).
//
// Cost: nothing on the success path; a refusal takes a mutex and an fprintf.
// Thread safety: WrongFreeLog may be used from any number of threads.
//
// Example (inside an allocator's free):
//   if (!owns(p)) {
//     log_.refuse("alloy::Mine", WrongFree::kForeign, p, len, ret_addr);
//     return;
//   }
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>

#include "alloy/base/config.h"

#if !defined(ALLOY_CHECKED_FREES)
#if !defined(NDEBUG) || defined(ALLOY_HAVE_SANITIZER)
#define ALLOY_CHECKED_FREES 1
#endif
#endif
#if !defined(ALLOY_CHECKED_FREES)
#define ALLOY_CHECKED_FREES 0
#endif

namespace alloy {

// True in checked builds (see above): the extra, costlier checks are on.
inline constexpr bool kCheckedFrees = ALLOY_CHECKED_FREES != 0;

enum class WrongFree : unsigned char {
  kNone,
  kForeign,     // not memory this allocator handed out
  kDouble,      // already freed (or dropped by a reset/unwind)
  kInterior,    // inside a block, not its start (or misaligned)
  kWrongSize,   // a length (or alignment) the block does not have
  kCounterUnderflow,  // more bytes freed than are counted as live
};

// A short phrase for reports: "double free (already freed)".
const char* to_string(WrongFree kind);

struct WrongFreeRecord {
  WrongFree kind = WrongFree::kNone;
  const void* pointer = nullptr;
  std::size_t length = 0;
  std::uintptr_t ret_addr = 0;  // where the refused free came from
};

// Counts, remembers and prints refusals.
class WrongFreeLog {
 public:
  // Counts the refusal, keeps it as last(), and prints one stderr line
  // ("<allocator>: refused free of <p> (<len> bytes): <what>[; <detail>];
  // called from 0x<ret_addr>") unless reporting is off.
  void refuse(const char* allocator, WrongFree kind, const void* p, std::size_t len,
              std::uintptr_t ret_addr, const char* detail = nullptr);

  std::size_t count() const { return count_.load(std::memory_order_relaxed); }
  WrongFreeRecord last() const;
  // stderr lines are on by default; tests of the refusal path may mute them.
  void set_report(bool on) { report_.store(on, std::memory_order_relaxed); }

 private:
  std::atomic<std::size_t> count_{0};
  std::atomic<bool> report_{true};
  mutable std::mutex mutex_;  // guards last_
  WrongFreeRecord last_;
};

// Prints the report line alone (for allocators with their own bookkeeping).
void report_wrong_free(const char* allocator, const char* what, const void* p,
                       std::size_t len, std::uintptr_t ret_addr,
                       const char* detail = nullptr);

// The report line of a bump-style allocator's refused free (kForeign, or
// kDouble: the block reaches at or above the cursor).
void refuse_bump_free(const char* allocator, WrongFree wrong, const void* p, std::size_t len,
                      std::uintptr_t ret_addr);

}  // namespace alloy
