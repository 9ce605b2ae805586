// alloy::TestingAllocator and alloy::check_all_allocation_failures — tests that
// fail when code leaks, misuses memory, or mishandles running out of it.
//
// TestingAllocator is a DebugAllocator set up for tests: full stack traces on
// every block, reports collected (and echoed to stderr) so a test can assert
// on them, leaks counted by deinit(). debug/boost_fixture.h turns it into a
// Boost.Test fixture whose teardown fails a leaking test, naming the leak.
//
// check_all_allocation_failures(fn, args...) is Zig's checkAllAllocationFailures
// for C++: fn(alloy::Allocator, args...) runs once to count its allocations
// and resizes, then once per allocation with that allocation (and every later
// one) failing, then once per resize likewise. A run is a problem if fn leaks,
// misuses the allocator, returns success although an allocation failed (a
// swallowed error), or throws something other than std::bad_alloc. fn reports
// failure by returning something false-y (alloy::Result, bool, pointer,
// optional) or by throwing std::bad_alloc (e.g. through alloy::StdAllocator);
// a void fn is checked for leaks only. A crash (signal) during a run prints
// the index and the failing call's trace before the usual crash handling.
//
// Cost: runs fn (1 + allocations + resizes) times, every call traced: for
// tests only. Thread safety: fn is run on the calling thread; one check at a
// time per process (the crash handler is process-wide).
//
// Example:
//   alloy::Result<void> parse(alloy::Allocator a, std::string_view text);
//   auto check = alloy::check_all_allocation_failures(parse, std::string_view("a=1;b=2"));
//   if (!check.ok()) std::fputs(check.report().c_str(), stderr);
//   // names e.g. "allocation #1 failed ... then fn leaked 1 block(s): ..."
//   assert(check.ok());
#pragma once

#include <absl/synchronization/mutex.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <new>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/debug/debug_allocator.h"
#include "alloy/debug/report.h"

namespace alloy {

// The options TestingAllocator starts from: traces always, small quarantine.
DebugOptions testing_options();

class TestingAllocator {
 public:
  // child defaults to c_allocator(). options.sink is replaced by the
  // collector (reports are echoed to stderr unless echo is false).
  explicit TestingAllocator(DebugOptions options = testing_options(), bool echo = true);
  TestingAllocator(Allocator child, DebugOptions options = testing_options(), bool echo = true);

  Allocator allocator() { return debug_.allocator(); }
  DebugAllocator& debug() { return debug_; }

  // Every report so far (misuse and leaks), in order.
  std::vector<debug::Report> reports() const;
  std::string reports_text() const;
  std::size_t error_count() const;  // reports other than leaks
  void clear_reports();

  std::size_t check_leaks() { return debug_.check_leaks(); }
  std::size_t check() { return debug_.check(); }
  std::size_t deinit() { return debug_.deinit(); }

 private:
  void collect(const debug::Report& r);

  mutable absl::Mutex mu_;
  std::vector<debug::Report> reports_;
  bool echo_;
  DebugAllocator debug_;  // last: its destructor may still report into reports_
};

// ----------------------------------------------------------------------------
// check_all_allocation_failures

struct FailureCheckOptions {
  Allocator backing;                // child of each run's DebugAllocator; default c_allocator()
  bool fail_resizes = true;         // also fail each resize/remap in turn
  std::size_t max_runs = 100000;    // safety bound on the number of runs
  // Success after a failed allocation is accepted (fn has a deliberate
  // fallback, e.g. a smaller request served from memory it already holds);
  // leaks and misuse are still checked.
  bool allow_recovery = false;
  DebugOptions debug = testing_options();
  FailureCheckOptions();
};

// How one run of fn ended.
enum class RunOutcome : std::uint8_t {
  kSuccess,        // returned something true-y
  kError,          // returned something false-y
  kNoValue,        // returned void
  kThrewBadAlloc,  // threw std::bad_alloc
  kThrewOther,     // threw anything else
};

struct FailureCheckProblem {
  enum class Kind : std::uint8_t {
    kFailsUnfailed,    // the run without injected failures did not succeed
    kSwallowedError,   // an allocation failed but fn returned success
    kLeak,             // blocks still live after fn returned
    kMisuse,           // double free, wrong size, overrun, ... (see reports)
    kUnexpectedException,
  };
  Kind kind;
  bool resize = false;         // the injected failure was a resize/remap
  std::int64_t index = -1;     // which call failed (-1: the unfailed run)
  InjectedFailure failure;     // the refused call and its trace
  std::vector<debug::Report> reports;  // leaks / misuse found in that run
  std::string detail;
  std::string text() const;
};

struct FailureCheckResult {
  std::size_t allocations = 0;  // counted in the unfailed run
  std::size_t resizes = 0;
  std::size_t runs = 0;
  std::vector<FailureCheckProblem> problems;

  bool ok() const { return problems.empty(); }
  std::string report() const;
};

namespace debug::internal {

struct RunResult {
  RunOutcome outcome;
  std::string message;
};

FailureCheckResult run_failure_check(const std::function<RunResult(Allocator)>& run,
                                     const FailureCheckOptions& options);

template <class R>
RunOutcome outcome_of(const R& r) {
  if constexpr (requires { static_cast<bool>(r); }) {
    return static_cast<bool>(r) ? RunOutcome::kSuccess : RunOutcome::kError;
  } else {
    return RunOutcome::kNoValue;
  }
}

template <class Fn, class... Args>
RunResult invoke_once(Fn& fn, Allocator a, Args&... args) {
#if defined(__cpp_exceptions)
  try {
#endif
    using R = std::invoke_result_t<Fn&, Allocator, Args&...>;
    if constexpr (std::is_void_v<R>) {
      std::invoke(fn, a, args...);
      return {RunOutcome::kNoValue, {}};
    } else {
      auto r = std::invoke(fn, a, args...);
      return {outcome_of(r), {}};
    }
#if defined(__cpp_exceptions)
  } catch (const std::bad_alloc&) {
    return {RunOutcome::kThrewBadAlloc, {}};
  } catch (const std::exception& e) {
    return {RunOutcome::kThrewOther, e.what()};
  } catch (...) {
    return {RunOutcome::kThrewOther, "a non-std exception"};
  }
#endif
}

}  // namespace debug::internal

// fn(Allocator, args...) is called with `args` as lvalues on every run, so it
// must not depend on changes it made to them in an earlier run.
template <class Fn, class... Args>
FailureCheckResult check_all_allocation_failures_with(const FailureCheckOptions& options,
                                                      Fn&& fn, Args&&... args) {
  return debug::internal::run_failure_check(
      [&](Allocator a) { return debug::internal::invoke_once(fn, a, args...); }, options);
}

template <class Fn, class... Args>
FailureCheckResult check_all_allocation_failures(Fn&& fn, Args&&... args) {
  return check_all_allocation_failures_with(FailureCheckOptions{}, std::forward<Fn>(fn),
                                            std::forward<Args>(args)...);
}

}  // namespace alloy
