// DebugAllocator overhead against its own child (c_allocator): one alloc+free
// pair per iteration ("pair") and 64 allocs then 64 frees of mixed sizes
// ("batch"). Prints the ratio of each debug configuration to the child; the
// targets are <= 3x with return addresses only and <= 5x with full traces
// sampled 1 in 64. Unless a suffix says otherwise a configuration has the
// defaults: thread-safe, 16 canary bytes, 256 KiB quarantine, 1024 frees of
// history.
//   bazel build --config=opt //bench/debug:debug_overhead_bench
//   bazel-bin/bench/debug/debug_overhead_bench --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true [--with_thread]
// Time on a shared machine is noisy: debug_overhead_count.cc counts
// instructions with callgrind instead (count_instructions.sh prints ratios).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "alloy/allocators/c_allocator.h"
#include "bench/debug/debug_configs.h"
#include "alloy/debug/debug_allocator.h"

namespace {

using alloy::bench::Config;
using alloy::bench::options_for;
using alloy::bench::kChild;
using alloy::bench::kRetAddr;
using alloy::bench::kSampled64;
using alloy::bench::kAlways;
const auto& kNames = alloy::bench::kConfigNames;

// Keeps the call sites out of line, as real callers would be.
[[gnu::noinline]] void* do_alloc(alloy::Allocator a, std::size_t n) {
  return a.raw_alloc(n, alloy::Alignment::from_log2(3), ALLOY_RETURN_ADDRESS());
}
[[gnu::noinline]] void do_free(alloy::Allocator a, void* p, std::size_t n) {
  a.raw_free(alloy::Bytes(static_cast<std::byte*>(p), n), alloy::Alignment::from_log2(3),
             ALLOY_RETURN_ADDRESS());
}

void BM_pair(benchmark::State& state) {
  const auto config = static_cast<Config>(state.range(0));
  alloy::DebugAllocator debug(alloy::c_allocator(), options_for(config));
  alloy::Allocator a = config == kChild ? alloy::c_allocator() : debug.allocator();
  for (auto _ : state) {
    void* p = do_alloc(a, 64);
    benchmark::DoNotOptimize(p);
    do_free(a, p, 64);
  }
  state.SetLabel(kNames[config]);
  state.SetItemsProcessed(state.iterations());
}

void BM_batch(benchmark::State& state) {
  const auto config = static_cast<Config>(state.range(0));
  alloy::DebugAllocator debug(alloy::c_allocator(), options_for(config));
  alloy::Allocator a = config == kChild ? alloy::c_allocator() : debug.allocator();
  constexpr int kBatch = 64;
  void* ptrs[kBatch];
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) ptrs[i] = do_alloc(a, 16 + 16 * (i % 8));
    benchmark::DoNotOptimize(ptrs);
    for (int i = 0; i < kBatch; ++i) do_free(a, ptrs[i], 16 + 16 * (i % 8));
  }
  state.SetLabel(kNames[config]);
  state.SetItemsProcessed(state.iterations() * kBatch);
}

BENCHMARK(BM_pair)->DenseRange(kChild, kAlways);
BENCHMARK(BM_batch)->DenseRange(kChild, kAlways);

// Collects each run's time per item so main can print ratios.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const auto& r : runs) {
      if (r.error_occurred || r.iterations == 0) continue;
      // Plain runs and the median aggregate; ignore mean/stddev/cv.
      if (r.run_type == Run::RT_Aggregate && r.aggregate_name != "median") continue;
      const std::string name = r.run_name.function_name + "/" + r.report_label;
      for (int cpu = 0; cpu < 2; ++cpu) {
        const double ns = cpu ? r.GetAdjustedCPUTime() : r.GetAdjustedRealTime();
        auto& slot = times_[name + (cpu ? "#cpu" : "")];
        if (r.run_type == Run::RT_Aggregate) {
          slot.median = ns;
        } else {
          slot.samples.push_back(ns);
        }
      }
    }
  }
  // Wall-clock and CPU-time ratios: on a shared machine the CPU column is
  // the steadier one.
  void print_ratios() const {
    std::printf("\nratio to the child (median of repetitions):      wall     cpu\n");
    for (const char* bench : {"BM_pair", "BM_batch"}) {
      const double child = time_of(std::string(bench) + "/child");
      const double child_cpu = time_of(std::string(bench) + "/child#cpu");
      if (child <= 0 || child_cpu <= 0) continue;
      for (int c = kRetAddr; c <= kAlways; ++c) {
        const double t = time_of(std::string(bench) + "/" + kNames[c]);
        const double t_cpu = time_of(std::string(bench) + "/" + kNames[c] + "#cpu");
        if (t <= 0) continue;
        const char* target = c < kSampled64 ? "  (target <= 3x)"
                             : c < kAlways  ? "  (target <= 5x)"
                                            : "";
        std::printf("  %-9s %-16s %18.2fx %6.2fx%s\n", bench, kNames[c], t / child,
                    t_cpu / child_cpu, target);
      }
    }
  }

 private:
  struct Times {
    double median = 0;
    std::vector<double> samples;
  };
  double time_of(const std::string& name) const {
    auto it = times_.find(name);
    if (it == times_.end()) return 0;
    if (it->second.median > 0) return it->second.median;
    if (it->second.samples.empty()) return 0;
    auto s = it->second.samples;
    std::sort(s.begin(), s.end());
    return s[s.size() / 2];
  }
  std::map<std::string, Times> times_;
};

}  // namespace

int main(int argc, char** argv) {
  // --with_thread: start (and join) a thread first, so that the lock is
  // really taken on every call, as in any program that has ever had a
  // second thread. Without it the process is single-threaded and
  // DebugAllocator skips the lock (see debug_allocator.h).
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--with_thread") {
      std::thread([] {}).join();
      std::printf("(a thread was started: the lock is taken on every call)\n");
      for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
      --argc;
      break;
    }
  }
  benchmark::Initialize(&argc, argv);
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.print_ratios();
  benchmark::Shutdown();
  return 0;
}
