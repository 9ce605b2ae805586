// What each wrapper adds to one alloc + free pair, over a child that costs
// almost nothing (an inline bump that rewinds on LIFO free), so the wrapper's
// own work is what shows. Prints ns per pair and the ratio to the bare child.
//
//   bazel build --config=opt //bench/wrappers:wrapper_overhead
//   bazel-out/k8-opt/bin/bench/wrappers/wrapper_overhead
#include <benchmark/benchmark.h>

#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "alloy/allocators/c_allocator.h"
#include "alloy/allocators/wrappers/counting_allocator.h"
#include "alloy/allocators/wrappers/failing_allocator.h"
#include "alloy/allocators/wrappers/fallback_allocator.h"
#include "alloy/allocators/wrappers/limit_allocator.h"
#include "alloy/allocators/wrappers/segregator.h"
#include "alloy/allocators/wrappers/thread_safe_allocator.h"

namespace {

constexpr std::size_t kLen = 64;
constexpr alloy::Alignment kAlign = alloy::Alignment::of<std::max_align_t>();

struct Child {
  alignas(64) std::byte buffer[4096];
  alloy::detail::InlineBump bump{buffer, sizeof buffer};
};

void pair_loop(benchmark::State& state, alloy::Allocator a) {
  for (auto _ : state) {
    void* p = a.raw_alloc(kLen, kAlign, 0);
    benchmark::DoNotOptimize(p);
    a.raw_free(alloy::Bytes(static_cast<std::byte*>(p), kLen), kAlign, 0);
  }
}

void BM_bare_child(benchmark::State& state) {
  auto c = std::make_unique<Child>();
  pair_loop(state, c->bump.allocator());
}
void BM_counting(benchmark::State& state) {
  auto c = std::make_unique<Child>();
  alloy::CountingAllocator w(c->bump.allocator());
  pair_loop(state, w.allocator());
}
void BM_counting_single_thread(benchmark::State& state) {
  auto c = std::make_unique<Child>();
  alloy::CountingAllocator w(c->bump.allocator(),
                             alloy::CountingAllocator::Threading::kSingleThread);
  pair_loop(state, w.allocator());
}
void BM_limit_single_thread(benchmark::State& state) {
  auto c = std::make_unique<Child>();
  alloy::LimitAllocator w(c->bump.allocator(), 1 << 20,
                          alloy::LimitAllocator::Threading::kSingleThread);
  pair_loop(state, w.allocator());
}
void BM_limit(benchmark::State& state) {
  auto c = std::make_unique<Child>();
  alloy::LimitAllocator w(c->bump.allocator(), 1 << 20);
  pair_loop(state, w.allocator());
}
void BM_failing(benchmark::State& state) {
  auto c = std::make_unique<Child>();
  alloy::FailingAllocator w(c->bump.allocator());
  pair_loop(state, w.allocator());
}
void BM_thread_safe(benchmark::State& state) {
  auto c = std::make_unique<Child>();
  alloy::ThreadSafeAllocator w(c->bump.allocator());
  pair_loop(state, w.allocator());
}
// Debian's abseil is built with deadlock detection on (a debug default); most
// of the mutex cost above is that bookkeeping. Same wrapper with it off:
void BM_thread_safe_no_deadlock_detection(benchmark::State& state) {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  auto c = std::make_unique<Child>();
  alloy::ThreadSafeAllocator w(c->bump.allocator());
  pair_loop(state, w.allocator());
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kAbort);
}
void BM_thread_safe_std_mutex(benchmark::State& state) {
  auto c = std::make_unique<Child>();
  alloy::ThreadSafeAllocator w(c->bump.allocator(), alloy::ThreadSafeAllocator::Lock::kStdMutex);
  pair_loop(state, w.allocator());
}
// Reference point, not a wrapper: the bare child with a std::mutex around
// each call.
void BM_std_mutex_reference(benchmark::State& state) {
  auto c = std::make_unique<Child>();
  alloy::Allocator a = c->bump.allocator();
  std::mutex mutex;
  for (auto _ : state) {
    void* p;
    {
      std::lock_guard<std::mutex> lock(mutex);
      p = a.raw_alloc(kLen, kAlign, 0);
    }
    benchmark::DoNotOptimize(p);
    std::lock_guard<std::mutex> lock(mutex);
    a.raw_free(alloy::Bytes(static_cast<std::byte*>(p), kLen), kAlign, 0);
  }
}
void BM_segregator(benchmark::State& state) {
  auto c = std::make_unique<Child>();
  alloy::Segregator w(256, c->bump.allocator(), alloy::c_allocator());
  pair_loop(state, w.allocator());
}
void BM_fallback(benchmark::State& state) {
  auto c = std::make_unique<Child>();
  alloy::FallbackAllocator w(c->bump.allocator(), alloy::Owner::of(c->bump),
                             alloy::c_allocator());
  pair_loop(state, w.allocator());
}
void BM_stack_fallback(benchmark::State& state) {
  auto w = std::make_unique<alloy::StackFallback<4096>>(alloy::c_allocator());
  pair_loop(state, w->allocator());
}
void BM_malloc_child(benchmark::State& state) {
  pair_loop(state, alloy::c_allocator());
}
void BM_counting_over_malloc(benchmark::State& state) {
  alloy::CountingAllocator w(alloy::c_allocator());
  pair_loop(state, w.allocator());
}

BENCHMARK(BM_bare_child);
BENCHMARK(BM_counting);
BENCHMARK(BM_counting_single_thread);
BENCHMARK(BM_limit);
BENCHMARK(BM_limit_single_thread);
BENCHMARK(BM_failing);
BENCHMARK(BM_thread_safe);
BENCHMARK(BM_thread_safe_no_deadlock_detection);
BENCHMARK(BM_thread_safe_std_mutex);
BENCHMARK(BM_std_mutex_reference);
BENCHMARK(BM_segregator);
BENCHMARK(BM_fallback);
BENCHMARK(BM_stack_fallback);
BENCHMARK(BM_malloc_child);
BENCHMARK(BM_counting_over_malloc);

// Console output as usual, plus a ratio table at the end.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.run_type == Run::RT_Iteration || r.aggregate_name == "median") {
        ns_[r.run_name.function_name] = r.GetAdjustedRealTime();
      }
    }
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    const double bare = ns_["BM_bare_child"];
    const double malloc_ns = ns_["BM_malloc_child"];
    std::printf("\nalloc+free pair, ns (x bare bump child; + ns added)\n");
    for (const auto& [name, ns] : ns_) {
      const double base = name.find("malloc") != std::string::npos ? malloc_ns : bare;
      std::printf("  %-26s %7.2f ns  %5.2fx  %+6.2f ns\n", name.c_str(), ns, ns / base,
                  ns - base);
    }
  }

 private:
  std::map<std::string, double> ns_;
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
