// Engine vs glibc, jemalloc, tcmalloc and mimalloc in one run, then a table of
// time ratios (engine / peer: below 1.0 means the engine is faster).
//   bazel build --config=opt //bench/engine:engine_bench
//   bazel-bin/bench/engine/engine_bench [--benchmark_repetitions=5]
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench/engine/peers.h"

namespace {

using namespace alloy::bench;

constexpr int kBatch = 64;

// Fixed size: alloc kBatch blocks of 32 bytes, free them in order.
template <class A>
void BM_fixed32(benchmark::State& state) {
  void* ptrs[kBatch];
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) ptrs[i] = A::alloc(32);
    benchmark::DoNotOptimize(ptrs);
    for (int i = 0; i < kBatch; ++i) A::free(ptrs[i], 32);
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

// Mixed small sizes (8..1024, skewed small), freed in shuffled order, with a
// standing population so pages fill and drain.
template <class A>
void BM_mixed_small(benchmark::State& state) {
  constexpr int kPop = 4096;
  std::mt19937 rng(1);
  std::vector<std::size_t> sizes(kPop);
  for (auto& s : sizes) s = (rng() % 4 == 0) ? 8 + rng() % 1017 : 8 + rng() % 120;
  std::vector<int> order(kPop);
  for (int i = 0; i < kPop; ++i) order[static_cast<std::size_t>(i)] = i;
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<void*> live(kPop);
  for (int i = 0; i < kPop; ++i) live[static_cast<std::size_t>(i)] = A::alloc(sizes[static_cast<std::size_t>(i)]);
  std::size_t k = 0;
  for (auto _ : state) {
    for (int j = 0; j < kBatch; ++j) {
      const std::size_t i = static_cast<std::size_t>(order[k++ % kPop]);
      A::free(live[i], sizes[i]);
      live[i] = A::alloc(sizes[i]);
    }
    benchmark::DoNotOptimize(live.data());
  }
  for (int i = 0; i < kPop; ++i) A::free(live[static_cast<std::size_t>(i)], sizes[static_cast<std::size_t>(i)]);
  state.SetItemsProcessed(state.iterations() * kBatch);
}

// Producer/consumer: this thread allocates batches of 64-byte blocks, a
// consumer thread frees them (every free is cross-thread).
template <class A>
void BM_producer_consumer(benchmark::State& state) {
  constexpr std::size_t kSlots = 16;
  struct Slot {
    std::atomic<bool> full{false};
    void* ptrs[kBatch];
  };
  std::vector<Slot> ring(kSlots);
  std::atomic<bool> stop{false};
  std::thread consumer([&] {
    std::size_t t = 0;
    for (;;) {
      Slot& s = ring[t % kSlots];
      while (!s.full.load(std::memory_order_acquire)) {
        if (stop.load(std::memory_order_acquire) && !s.full.load(std::memory_order_acquire)) return;
        std::this_thread::yield();
      }
      for (void* p : s.ptrs) A::free(p, 64);
      s.full.store(false, std::memory_order_release);
      ++t;
    }
  });
  std::size_t h = 0;
  for (auto _ : state) {
    Slot& s = ring[h % kSlots];
    while (s.full.load(std::memory_order_acquire)) std::this_thread::yield();
    for (int i = 0; i < kBatch; ++i) s.ptrs[i] = A::alloc(64);
    s.full.store(true, std::memory_order_release);
    ++h;
  }
  stop.store(true, std::memory_order_release);
  consumer.join();
  state.SetItemsProcessed(state.iterations() * kBatch);
}

// Large blocks: 5..25 MiB alloc, touch one byte per 4 KiB page, free.
template <class A>
void BM_large_5_25MiB(benchmark::State& state) {
  std::size_t i = 0;
  for (auto _ : state) {
    const std::size_t n = (std::size_t{5} + (i++ * 7) % 21) << 20;
    auto* p = static_cast<char*>(A::alloc(n));
    for (std::size_t off = 0; off < n; off += 4096) p[off] = 1;
    benchmark::DoNotOptimize(p);
    A::free(p, n);
  }
  state.SetItemsProcessed(state.iterations());
}

#define ALLOY_BENCH_ALL(fn, ...)                  \
  BENCHMARK_TEMPLATE(fn, Engine) __VA_ARGS__;     \
  BENCHMARK_TEMPLATE(fn, Glibc) __VA_ARGS__;      \
  BENCHMARK_TEMPLATE(fn, Jemalloc) __VA_ARGS__;   \
  BENCHMARK_TEMPLATE(fn, Tcmalloc) __VA_ARGS__;   \
  BENCHMARK_TEMPLATE(fn, Mimalloc) __VA_ARGS__

ALLOY_BENCH_ALL(BM_fixed32);
ALLOY_BENCH_ALL(BM_mixed_small);
BENCHMARK_TEMPLATE(BM_fixed32, UserHeap);
BENCHMARK_TEMPLATE(BM_mixed_small, UserHeap);
// Two threads: wall time is what counts.
ALLOY_BENCH_ALL(BM_producer_consumer, ->UseRealTime());
ALLOY_BENCH_ALL(BM_large_5_25MiB);

// Collects per-benchmark time (median when repeated) for the ratio table:
// CPU time of the benchmark thread for single-threaded benchmarks (the
// machines are shared, so wall time includes other people's work), wall time
// for the two-thread one.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  std::map<std::string, std::map<std::string, double>> times;  // bench -> alloc -> ns
  std::map<std::string, std::vector<double>> samples;

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.run_type == Run::RT_Aggregate && r.aggregate_name != "median") continue;
      const std::string name = r.run_name.function_name;  // BM_x<Engine>
      const auto lt = name.find('<');
      if (lt == std::string::npos) continue;
      const std::string bench = name.substr(0, lt);
      const std::string alloc = name.substr(lt + 1, name.size() - lt - 2);
      const double t = bench == "BM_producer_consumer"
                           ? r.GetAdjustedRealTime()
                           : r.GetAdjustedCPUTime();
      if (r.run_type == Run::RT_Aggregate || times[bench].count(alloc) == 0) times[bench][alloc] = t;
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  std::printf("\nTime ratio engine / peer (< 1.00: engine faster)\n");
  std::printf("%-24s %10s %10s %10s %10s\n", "benchmark", "glibc", "jemalloc", "tcmalloc", "mimalloc");
  for (auto& [bench, m] : reporter.times) {
    if (m.count("Engine") == 0) continue;
    const double e = m["Engine"];
    std::printf("%-24s", bench.c_str());
    for (const char* peer : {"Glibc", "Jemalloc", "Tcmalloc", "Mimalloc"}) {
      if (m.count(peer) && m[peer] > 0) std::printf(" %10.2f", e / m[peer]); else std::printf(" %10s", "-");
    }
    std::printf("\n");
  }
  std::printf("\nalloy::Heap (a first-class heap, allocation under its biased lock) / engine default heap\n");
  for (auto& [bench, m] : reporter.times) {
    if (m.count("UserHeap") && m.count("Engine") && m["Engine"] > 0) {
      std::printf("%-24s %10.2f\n", bench.c_str(), m["UserHeap"] / m["Engine"]);
    }
  }
  benchmark::Shutdown();
  return 0;
}
