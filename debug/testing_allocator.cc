#include "alloy/debug/testing_allocator.h"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "alloy/allocators/c_allocator.h"

namespace alloy {

DebugOptions testing_options() {
  DebugOptions o;
  o.traces = TraceMode::kAlways;
  o.quarantine_bytes = 64 * 1024;
  o.freed_history = 256;
  return o;
}

// ---------------------------------------------------------------- TestingAllocator

namespace {
DebugOptions with_sink(DebugOptions o, debug::ReportSink sink) {
  o.sink = std::move(sink);
  return o;
}
}  // namespace

TestingAllocator::TestingAllocator(DebugOptions options, bool echo)
    : TestingAllocator(c_allocator(), std::move(options), echo) {}

TestingAllocator::TestingAllocator(Allocator child, DebugOptions options, bool echo)
    : echo_(echo),
      debug_(child, with_sink(std::move(options),
                              [this](const debug::Report& r) { collect(r); })) {}

void TestingAllocator::collect(const debug::Report& r) {
  if (echo_) {
    std::string t = r.text();
    std::fwrite(t.data(), 1, t.size(), stderr);
  }
  absl::MutexLock lock(&mu_);
  reports_.push_back(r);
}

std::vector<debug::Report> TestingAllocator::reports() const {
  absl::MutexLock lock(&mu_);
  return reports_;
}

std::string TestingAllocator::reports_text() const {
  absl::MutexLock lock(&mu_);
  std::string out;
  for (const auto& r : reports_) out += r.text();
  return out;
}

std::size_t TestingAllocator::error_count() const {
  absl::MutexLock lock(&mu_);
  return static_cast<std::size_t>(std::count_if(reports_.begin(), reports_.end(), [](const auto& r) {
    return r.kind != debug::ErrorKind::kLeak;
  }));
}

void TestingAllocator::clear_reports() {
  absl::MutexLock lock(&mu_);
  reports_.clear();
}

// ---------------------------------------------------------------- failure check

FailureCheckOptions::FailureCheckOptions() : backing(c_allocator()) {}

namespace {

std::string_view kind_name(FailureCheckProblem::Kind k) {
  switch (k) {
    case FailureCheckProblem::Kind::kFailsUnfailed: return "fails without injected failures";
    case FailureCheckProblem::Kind::kSwallowedError: return "swallowed error";
    case FailureCheckProblem::Kind::kLeak: return "leak";
    case FailureCheckProblem::Kind::kMisuse: return "allocator misuse";
    case FailureCheckProblem::Kind::kUnexpectedException: return "unexpected exception";
  }
  return "unknown";
}

// ---- crash reporting: process-wide state written before each run.
constexpr int kCrashSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
constexpr int kNumCrashSignals = sizeof(kCrashSignals) / sizeof(kCrashSignals[0]);
struct sigaction g_old_actions[kNumCrashSignals];
volatile sig_atomic_t g_run_index = -1;
volatile sig_atomic_t g_run_is_resize = 0;
// The failing call's trace, symbolized when the failure is injected (the
// handler cannot symbolize: libdw allocates), one frame a line.
char g_fail_text[8192];
volatile sig_atomic_t g_fail_text_len = 0;

void write_str(const char* s) {
  ssize_t ignored = ::write(STDERR_FILENO, s, std::strlen(s));
  (void)ignored;
}

void write_num(long v) {
  char buf[32];
  int i = 31;
  buf[i] = '\0';
  bool neg = v < 0;
  unsigned long u = neg ? static_cast<unsigned long>(-v) : static_cast<unsigned long>(v);
  do {
    buf[--i] = static_cast<char>('0' + u % 10);
    u /= 10;
  } while (u != 0 && i > 1);
  if (neg) buf[--i] = '-';
  write_str(buf + i);
}

void restore_crash_handlers() {
  for (int i = 0; i < kNumCrashSignals; ++i) sigaction(kCrashSignals[i], &g_old_actions[i], nullptr);
}

// Async-signal-safe: write(2) of text prepared before the run only.
void on_crash(int sig) {
  write_str("\nalloy check_all_allocation_failures: crashed (signal ");
  write_num(sig);
  if (g_run_index < 0) {
    write_str(") in the run without injected failures\n");
  } else {
    write_str(g_run_is_resize ? ") after failing resize #" : ") after failing allocation #");
    write_num(g_run_index);
    write_str("; the failing call:\n");
    ssize_t ignored = ::write(STDERR_FILENO, g_fail_text, static_cast<std::size_t>(g_fail_text_len));
    (void)ignored;
  }
  // Hand over to whatever handled the signal before (a sanitizer, or the
  // default action): returning re-runs the faulting instruction, and abort()
  // re-raises by itself.
  restore_crash_handlers();
  if (sig != SIGSEGV && sig != SIGBUS && sig != SIGFPE && sig != SIGILL) raise(sig);
}

class CrashHandlerScope {
 public:
  CrashHandlerScope() {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_crash;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_NODEFER;
    for (int i = 0; i < kNumCrashSignals; ++i) sigaction(kCrashSignals[i], &sa, &g_old_actions[i]);
  }
  ~CrashHandlerScope() {
    restore_crash_handlers();
    g_run_index = -1;
  }
  CrashHandlerScope(const CrashHandlerScope&) = delete;
  CrashHandlerScope& operator=(const CrashHandlerScope&) = delete;
};

struct RunRecord {
  debug::internal::RunResult result;
  std::size_t leaks = 0;
  std::vector<debug::Report> reports;
  std::optional<InjectedFailure> injected;
  DebugStats stats;
};

RunRecord run_once(const std::function<debug::internal::RunResult(Allocator)>& run,
                   const FailureCheckOptions& options, std::int64_t fail_alloc,
                   std::int64_t fail_resize) {
  RunRecord rec;
  DebugOptions o = options.debug;
  o.fail_alloc_index =
      fail_alloc < 0 ? DebugOptions::kNever : static_cast<std::size_t>(fail_alloc);
  o.fail_resize_index =
      fail_resize < 0 ? DebugOptions::kNever : static_cast<std::size_t>(fail_resize);
  o.abort_on_error = false;
  o.sink = debug::collect_into(&rec.reports);
  g_fail_text_len = 0;
  g_run_index = fail_alloc >= 0 ? fail_alloc : fail_resize;
  g_run_is_resize = fail_resize >= 0 ? 1 : 0;
  // The crash handler reads only plain memory: the failing call's trace is
  // symbolized into it when the failure is injected (the same frames and
  // file:line as reports show).
  o.on_injected_failure = [](const InjectedFailure& f) {
    std::size_t n = 0;
    for (const std::string& line : f.site.symbolized()) {
      const std::string l = "    " + line + "\n";
      if (n + l.size() > sizeof g_fail_text) break;
      std::memcpy(g_fail_text + n, l.data(), l.size());
      n += l.size();
    }
    g_fail_text_len = static_cast<sig_atomic_t>(n);
  };
  {
    DebugAllocator d(options.backing, o);
    rec.result = run(d.allocator());
    rec.injected = d.injected_failure();
    rec.stats = d.stats();
    rec.leaks = d.deinit();
  }
  return rec;
}

}  // namespace

std::string FailureCheckProblem::text() const {
  std::string out;
  if (index < 0) {
    out += fmt::format("check_all_allocation_failures: {} (run without injected failures)",
                       kind_name(kind));
  } else {
    out += fmt::format("check_all_allocation_failures: {} after failing {} #{} ({} bytes)",
                       kind_name(kind), resize ? "resize" : "allocation", index, failure.len);
  }
  if (!detail.empty()) out += fmt::format(": {}", detail);
  out += '\n';
  if (index >= 0) {
    out += "  the failing call:\n";
    for (const auto& line : failure.site.symbolized()) out += fmt::format("    {}\n", line);
  }
  for (const auto& r : reports) out += r.text();
  return out;
}

std::string FailureCheckResult::report() const {
  std::string out = fmt::format(
      "check_all_allocation_failures: {} allocation(s), {} resize(s), {} run(s), {} problem(s)\n",
      allocations, resizes, runs, problems.size());
  for (const auto& p : problems) out += p.text();
  return out;
}

namespace debug::internal {

FailureCheckResult run_failure_check(const std::function<RunResult(Allocator)>& run,
                                     const FailureCheckOptions& options) {
  using Kind = FailureCheckProblem::Kind;
  FailureCheckResult result;
  CrashHandlerScope crash_scope;

  auto judge = [&](RunRecord& rec, std::int64_t index, bool resize) {
    FailureCheckProblem base;
    base.resize = resize;
    base.index = index;
    if (rec.injected) base.failure = *rec.injected;
    const bool injected = rec.injected.has_value();
    if (index < 0 && rec.result.outcome != RunOutcome::kSuccess &&
        rec.result.outcome != RunOutcome::kNoValue) {
      FailureCheckProblem p = base;
      p.kind = Kind::kFailsUnfailed;
      p.detail = rec.result.outcome == RunOutcome::kError ? "fn returned an error"
                                                          : "fn threw " + rec.result.message;
      result.problems.push_back(std::move(p));
    } else if (rec.result.outcome == RunOutcome::kThrewOther) {
      FailureCheckProblem p = base;
      p.kind = Kind::kUnexpectedException;
      p.detail = rec.result.message;
      result.problems.push_back(std::move(p));
    } else if (index >= 0 && !resize && injected && !options.allow_recovery &&
               rec.result.outcome == RunOutcome::kSuccess) {
      FailureCheckProblem p = base;
      p.kind = Kind::kSwallowedError;
      p.detail = "fn returned success although this allocation failed";
      result.problems.push_back(std::move(p));
    }
    std::vector<debug::Report> leaks, misuse;
    for (auto& r : rec.reports) {
      (r.kind == debug::ErrorKind::kLeak ? leaks : misuse).push_back(std::move(r));
    }
    if (!misuse.empty()) {
      FailureCheckProblem p = base;
      p.kind = Kind::kMisuse;
      p.detail = fmt::format("{} report(s)", misuse.size());
      p.reports = std::move(misuse);
      result.problems.push_back(std::move(p));
    }
    if (!leaks.empty()) {
      FailureCheckProblem p = base;
      p.kind = Kind::kLeak;
      std::size_t bytes = 0;
      for (const auto& r : leaks) bytes += r.block_size;
      p.detail = fmt::format("fn leaked {} block(s), {} bytes", leaks.size(), bytes);
      p.reports = std::move(leaks);
      result.problems.push_back(std::move(p));
    }
  };

  RunRecord first = run_once(run, options, -1, -1);
  ++result.runs;
  result.allocations = first.stats.alloc_calls;
  result.resizes = first.stats.resize_calls;
  judge(first, -1, false);
  if (!result.problems.empty() && result.problems.front().kind == Kind::kFailsUnfailed) {
    return result;
  }

  for (std::size_t i = 0; i < result.allocations && result.runs < options.max_runs; ++i) {
    RunRecord rec = run_once(run, options, static_cast<std::int64_t>(i), -1);
    ++result.runs;
    judge(rec, static_cast<std::int64_t>(i), false);
  }
  if (options.fail_resizes) {
    for (std::size_t i = 0; i < result.resizes && result.runs < options.max_runs; ++i) {
      RunRecord rec = run_once(run, options, -1, static_cast<std::int64_t>(i));
      ++result.runs;
      judge(rec, static_cast<std::int64_t>(i), true);
    }
  }
  return result;
}

}  // namespace debug::internal

}  // namespace alloy
