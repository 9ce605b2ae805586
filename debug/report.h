// alloy::debug::Report — one finding of a debug allocator, with its call sites.
//
// Why: a report must name *where* things happened, not only what. Each report
// carries up to three call sites (this call, where the block was allocated,
// where it was first freed); each site is a return address (always) plus a
// full stack trace when one was captured. Traces are kept as raw program
// counters and symbolized only when text or JSON is asked for, so recording
// stays cheap: each frame as its function (demangled, template arguments
// shown) and, when the binary carries DWARF (built with -g), file:line, read
// with elfutils' libdw. The debug allocator's own frames, the handle's and
// the other alloy library frames are dropped from the top of each trace, and
// std::invoke / std::function plumbing wherever it appears, so frame #0 is
// the user's call:
//   #0 0x55d0c1a2b3c4 parse_config(alloy::Allocator) at src/config.cc:42
//
// Cost: building a report allocates (std::string, std::vector) through the
// process's malloc, never through the allocator being debugged; reports only
// exist on the error path. Thread safety: a value; the sinks below are
// thread-safe only if the callback they wrap is.
//
// Example:
//   std::vector<alloy::debug::Report> seen;
//   alloy::DebugOptions opts;
//   opts.sink = alloy::debug::collect_into(&seen);
//   ... provoke a double free ...
//   fmt::print("{}\n{}\n", seen[0].text(), seen[0].json());
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "alloy/alloc_iface/alignment.h"

namespace alloy::debug {

enum class ErrorKind : std::uint8_t {
  kLeak,             // still live at check_leaks()/deinit()
  kDoubleFree,       // free of a block that was already freed
  kInvalidPointer,   // free/resize/remap of a pointer never handed out
  kUseOfFreed,       // resize/remap of a block that was already freed
  kWrongSize,        // free/resize with a length other than the block's
  kWrongAlignment,   // free/resize with an alignment other than the block's
  kOverrun,          // canary bytes after the block were overwritten
  kUseAfterFree,     // freed (quarantined) memory was written to
};

// The operation during which a finding was made.
enum class Operation : std::uint8_t { kAlloc, kResize, kRemap, kFree, kCheck, kLeakCheck };

std::string_view to_string(ErrorKind kind);   // "double_free", ...
std::string_view to_string(Operation op);     // "free", ...
inline std::ostream& operator<<(std::ostream& os, ErrorKind k) { return os << to_string(k); }
inline std::ostream& operator<<(std::ostream& os, Operation op) { return os << to_string(op); }

// One symbolized frame.
struct FrameInfo {
  std::uintptr_t pc = 0;  // as recorded (a return address)
  std::string function;   // demangled, with template arguments; empty if unknown
  std::string file;       // as compiled ("tests/debug/x_test.cc"); empty without DWARF
  int line = 0;           // 0 if unknown
  // "function at file:line", "function", or "??".
  std::string text() const;
};

// Where something happened: the caller's return address and, when captured,
// the full stack (innermost first, allocator-internal frames included; they
// are dropped when printing).
struct CallSite {
  std::uintptr_t ret_addr = 0;
  std::vector<void*> frames;

  bool empty() const { return ret_addr == 0 && frames.empty(); }
  // The frames as printed: symbolized, alloy's own frames dropped from the
  // top, std::invoke/std::function plumbing dropped. Just the return address
  // if no full trace was taken.
  std::vector<FrameInfo> symbolized_frames() const;
  // One line per printed frame ("#0 0x55d0... my_test::test_method() at
  // tests/my_test.cc:12"); "ret 0x55d0... ..." without a full trace.
  std::vector<std::string> symbolized() const;
  // True if some printed frame's text (or the return address's) contains
  // `needle`: a function name or "file.cc:LINE".
  bool mentions(std::string_view needle) const;
};

struct Report {
  ErrorKind kind = ErrorKind::kLeak;
  Operation operation = Operation::kLeakCheck;
  std::uintptr_t address = 0;        // the pointer passed by the caller
  std::uintptr_t block_address = 0;  // start of the block concerned (0: none known)
  std::size_t block_size = 0;        // the block's recorded length
  std::size_t passed_size = 0;       // the length the caller passed (free/resize)
  std::size_t new_size = 0;          // resize/remap target length
  Alignment block_alignment;
  Alignment passed_alignment;
  std::size_t offset = 0;            // overrun / use-after-free: first bad byte, from block start
  std::size_t bad_bytes = 0;         // overrun / use-after-free: how many bytes changed
  CallSite this_call;                // the call that found it (empty for leaks)
  CallSite alloc_site;               // where the block was allocated
  CallSite free_site;                // where it was (first) freed
  std::string note;                  // extra words, e.g. "points 8 bytes into ..."

  // Multi-line human-readable text, symbolized.
  std::string text() const;
  // One JSON object, symbolized.
  std::string json() const;
  // Whether any of the three sites mentions `needle` (e.g. a test's name).
  bool mentions(std::string_view needle) const {
    return this_call.mentions(needle) || alloc_site.mentions(needle) ||
           free_site.mentions(needle);
  }
};

// Where reports go.
using ReportSink = std::function<void(const Report&)>;

ReportSink stderr_text_sink();
ReportSink stderr_json_sink();
// Appends each report to `*out` (the caller keeps `out` alive and, if the
// allocator is shared between threads, serialises access itself).
ReportSink collect_into(std::vector<Report>* out);
// Appends each report's text to `*out`.
ReportSink append_text_to(std::string* out);

// Calls absl::InitializeSymbolizer once (the crash handler of
// check_all_allocation_failures symbolizes with it, async-signal-safely).
// Done automatically before the first symbolization; call it early in main
// with argv[0] if you prefer.
void init_symbolizer(const char* argv0 = nullptr);

// Symbolizes one program counter; `is_return_address` looks up pc-1 so the
// call instruction, not the next line, is named.
FrameInfo symbolize_frame(const void* pc, bool is_return_address = true);
// symbolize_frame(pc).text(), or empty if nothing is known.
std::string symbolize(const void* pc, bool is_return_address = true);

}  // namespace alloy::debug
