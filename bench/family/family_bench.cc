// Linear allocators and pools against glibc malloc/free and std::pmr, in one
// run, through the alloy::Allocator handle and through each allocator's
// inline API. After the benchmarks a summary prints the ratios the allocator
// family issue sets as targets.
//
//   bazel build --config=opt //bench/family:family_bench
//   bazel-bin/bench/family/family_bench --benchmark_repetitions=5
//
// Every batch benchmark does kBatch allocations of kSize bytes per
// iteration, writes one word into each block, then releases the batch the
// allocator's natural way (free each block for malloc and pools, one reset
// for arenas, bump allocators and monotonic_buffer_resource). So the times
// are "cost per object over its whole life", directly comparable.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <memory_resource>
#include <string>
#include <vector>

#include "alloy/allocators/arena.h"
#include "alloy/allocators/bump_allocator.h"
#include "alloy/allocators/memory_pool.h"
#include "alloy/allocators/page_allocator.h"

namespace {

constexpr std::size_t kBatch = 1000;
constexpr std::size_t kSize = 48;
constexpr std::size_t kAlign = 16;
constexpr alloy::Alignment kAlignment = alloy::Alignment::from_log2(4);

// Writes a double into the new block; a plain store, no compiler barrier.
// (A barrier would force every allocator whose cursor lives in memory to
// reload it after each block, a cost the raw bump baseline, whose cursor is
// a local in a register, never pays.) The remaining gap of the arena's
// inline path to the raw bump is the same effect in milder form: the loop
// contains the (cold) call to the chunk refill, so the compiler keeps the
// cursor in memory — one store and two loads per block.
inline void touch(void* p) { *static_cast<double*>(p) = 1.0; }

void set_items(benchmark::State& state) {
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kBatch));
}

// ---- Linear allocation: allocate a batch, release it all. ----

void BM_GlibcMallocFree(benchmark::State& state) {
  std::vector<void*> blocks(kBatch);
  for (auto _ : state) {
    for (auto& p : blocks) {
      p = std::malloc(kSize);
      touch(p);
    }
    for (void* p : blocks) std::free(p);
  }
  set_items(state);
}
BENCHMARK(BM_GlibcMallocFree);

void BM_MonotonicBufferResource(benchmark::State& state) {
  std::vector<std::byte> storage(1 << 20);
  std::pmr::monotonic_buffer_resource mono(storage.data(), storage.size(),
                                           std::pmr::null_memory_resource());
  std::pmr::memory_resource* r = &mono;
  benchmark::DoNotOptimize(r);  // a real virtual call, as through the handle
  for (auto _ : state) {
    for (std::size_t i = 0; i < kBatch; ++i) touch(r->allocate(kSize, kAlign));
    mono.release();
  }
  set_items(state);
}
BENCHMARK(BM_MonotonicBufferResource);

void BM_ArenaHandle(benchmark::State& state) {
  alloy::Arena arena(alloy::page_allocator(), {.first_chunk = 1 << 20});
  alloy::Allocator a = arena.allocator();
  benchmark::DoNotOptimize(a);
  for (auto _ : state) {
    for (std::size_t i = 0; i < kBatch; ++i) touch(a.raw_alloc(kSize, kAlignment, 0));
    arena.reset(alloy::ResetMode::retain_capacity());
  }
  set_items(state);
}
BENCHMARK(BM_ArenaHandle);

void BM_ArenaInline(benchmark::State& state) {
  alloy::Arena arena(alloy::page_allocator(), {.first_chunk = 1 << 20});
  for (auto _ : state) {
    for (std::size_t i = 0; i < kBatch; ++i) touch(arena.alloc_inline(kSize, kAlign));
    arena.reset(alloy::ResetMode::retain_capacity());
  }
  set_items(state);
}
BENCHMARK(BM_ArenaInline);

void BM_BumpHandle(benchmark::State& state) {
  std::vector<std::byte> storage(1 << 20);
  alloy::BumpAllocator bump({storage.data(), storage.size()});
  alloy::Allocator a = bump.allocator();
  benchmark::DoNotOptimize(a);
  for (auto _ : state) {
    for (std::size_t i = 0; i < kBatch; ++i) touch(a.raw_alloc(kSize, kAlignment, 0));
    bump.reset();
  }
  set_items(state);
}
BENCHMARK(BM_BumpHandle);

void BM_BumpInline(benchmark::State& state) {
  std::vector<std::byte> storage(1 << 20);
  alloy::BumpAllocator bump({storage.data(), storage.size()});
  for (auto _ : state) {
    for (std::size_t i = 0; i < kBatch; ++i) touch(bump.alloc_inline(kSize, kAlign));
    bump.reset();
  }
  set_items(state);
}
BENCHMARK(BM_BumpInline);

// The floor: a hand-written pointer bump with the same bounds check.
void BM_RawPointerBump(benchmark::State& state) {
  std::vector<std::byte> storage(1 << 20);
  const auto base = reinterpret_cast<std::uintptr_t>(storage.data());
  const std::uintptr_t end = base + storage.size();
  for (auto _ : state) {
    std::uintptr_t cur = base;
    for (std::size_t i = 0; i < kBatch; ++i) {
      const std::uintptr_t p = (cur + kAlign - 1) & ~std::uintptr_t{kAlign - 1};
      if (p + kSize > end) std::abort();
      cur = p + kSize;
      touch(reinterpret_cast<void*>(p));
    }
  }
  set_items(state);
}
BENCHMARK(BM_RawPointerBump);

// ---- Pools: create a batch of nodes, destroy them (reverse order). ----

struct Obj {
  std::uint64_t words[kSize / 8];
};

void BM_PoolGlibcMallocFree(benchmark::State& state) {
  std::vector<Obj*> objs(kBatch);
  for (auto _ : state) {
    for (auto& p : objs) {
      p = static_cast<Obj*>(std::malloc(sizeof(Obj)));
      touch(p);
    }
    for (auto it = objs.rbegin(); it != objs.rend(); ++it) std::free(*it);
  }
  set_items(state);
}
BENCHMARK(BM_PoolGlibcMallocFree);

void BM_PoolUnsynchronizedPoolResource(benchmark::State& state) {
  std::pmr::unsynchronized_pool_resource pool;
  std::pmr::memory_resource* r = &pool;
  benchmark::DoNotOptimize(r);  // a real virtual call, as through the handle
  std::vector<void*> objs(kBatch);
  for (auto _ : state) {
    for (auto& p : objs) {
      p = r->allocate(sizeof(Obj), alignof(Obj));
      touch(p);
    }
    for (auto it = objs.rbegin(); it != objs.rend(); ++it) {
      r->deallocate(*it, sizeof(Obj), alignof(Obj));
    }
  }
  set_items(state);
}
BENCHMARK(BM_PoolUnsynchronizedPoolResource);

void BM_PoolHandle(benchmark::State& state) {
  alloy::MemoryPool<Obj> pool(alloy::page_allocator());
  (void)pool.preheat(kBatch);
  alloy::Allocator a = pool.allocator();
  benchmark::DoNotOptimize(a);
  std::vector<void*> objs(kBatch);
  const auto al = alloy::Alignment::of<Obj>();
  for (auto _ : state) {
    for (auto& p : objs) {
      p = a.raw_alloc(sizeof(Obj), al, 0);
      touch(p);
    }
    for (auto it = objs.rbegin(); it != objs.rend(); ++it) {
      a.raw_free(alloy::Bytes(static_cast<std::byte*>(*it), sizeof(Obj)), al, 0);
    }
  }
  set_items(state);
}
BENCHMARK(BM_PoolHandle);

void BM_PoolInline(benchmark::State& state) {
  alloy::MemoryPool<Obj> pool(alloy::page_allocator());
  (void)pool.preheat(kBatch);
  std::vector<Obj*> objs(kBatch);
  for (auto _ : state) {
    for (auto& p : objs) {
      p = pool.allocate();
      touch(p);
    }
    for (auto it = objs.rbegin(); it != objs.rend(); ++it) pool.deallocate(*it);
  }
  set_items(state);
}
BENCHMARK(BM_PoolInline);

// ---- Dropping a one-million-node tree. ----

struct TreeNode {
  TreeNode* left;
  TreeNode* right;
  std::uint64_t value;
  std::uint64_t pad[3];  // a 48-byte node, like a small AST node
};
constexpr int kTreeDepth = 20;  // 2^20 - 1 = 1,048,575 nodes

template <class Alloc>
TreeNode* build_tree(int depth, Alloc&& alloc) {
  if (depth == 0) return nullptr;
  auto* n = static_cast<TreeNode*>(alloc());
  n->value = static_cast<std::uint64_t>(depth);
  n->left = build_tree(depth - 1, alloc);
  n->right = build_tree(depth - 1, alloc);
  return n;
}

void free_tree(TreeNode* n) {
  if (n == nullptr) return;
  free_tree(n->left);
  free_tree(n->right);
  std::free(n);
}

void BM_TreeDropGlibcOneByOne(benchmark::State& state) {
  for (auto _ : state) {
    TreeNode* root = build_tree(kTreeDepth, [] { return std::malloc(sizeof(TreeNode)); });
    const auto t0 = std::chrono::steady_clock::now();
    free_tree(root);
    const auto t1 = std::chrono::steady_clock::now();
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
  }
}
BENCHMARK(BM_TreeDropGlibcOneByOne)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(10);

// Destroying the arena: every chunk goes back to the page allocator (munmap).
// range(0) = 1: big chunks on transparent huge pages (the default); 0: 4 KiB pages.
void BM_TreeDropArenaDestroy(benchmark::State& state) {
  const bool huge = state.range(0) != 0;
  for (auto _ : state) {
    auto arena = std::make_unique<alloy::Arena>(
        alloy::page_allocator(),
        alloy::Arena::Options{.first_chunk = 1 << 16, .huge_pages = huge});
    TreeNode* root = build_tree(kTreeDepth, [&] {
      return arena->alloc_inline(sizeof(TreeNode), alignof(TreeNode));
    });
    benchmark::DoNotOptimize(root);
    const auto t0 = std::chrono::steady_clock::now();
    arena.reset();
    const auto t1 = std::chrono::steady_clock::now();
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
  }
}
BENCHMARK(BM_TreeDropArenaDestroy)->Arg(1)->Arg(0)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(10);

// Resetting with retain_capacity: the memory stays for the next tree.
void BM_TreeDropArenaResetRetain(benchmark::State& state) {
  alloy::Arena arena(alloy::page_allocator(), {.first_chunk = 1 << 16});
  for (auto _ : state) {
    TreeNode* root = build_tree(kTreeDepth, [&] {
      return arena.alloc_inline(sizeof(TreeNode), alignof(TreeNode));
    });
    benchmark::DoNotOptimize(root);
    const auto t0 = std::chrono::steady_clock::now();
    arena.reset(alloy::ResetMode::retain_capacity());
    const auto t1 = std::chrono::steady_clock::now();
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
  }
}
BENCHMARK(BM_TreeDropArenaResetRetain)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(10);

// ---- Summary: remembers each benchmark's time (the median when repeated). ----

class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      std::string name = run.run_name.function_name;
      if (!run.run_name.args.empty()) name += "/" + run.run_name.args;
      // CPU time for the batch benchmarks (less disturbed on a shared
      // machine); wall time for the manually timed tree drops.
      const double t = name.find("Tree") != std::string::npos
                           ? run.GetAdjustedRealTime()
                           : run.GetAdjustedCPUTime();
      const double ns = t *
                        benchmark::GetTimeUnitMultiplier(benchmark::kNanosecond) /
                        benchmark::GetTimeUnitMultiplier(run.time_unit);
      if (run.run_type == Run::RT_Aggregate) {
        if (run.aggregate_name != "median") continue;
        medians_[name] = ns;
      } else if (medians_.count(name) == 0) {
        singles_[name].push_back(ns);
      }
    }
  }

  // Median over the repetitions seen (or the aggregate median).
  double ns(const std::string& name) const {
    if (auto it = medians_.find(name); it != medians_.end()) return it->second;
    auto it = singles_.find(name);
    if (it == singles_.end() || it->second.empty()) return 0;
    std::vector<double> v = it->second;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  }

 private:
  std::map<std::string, double> medians_;
  std::map<std::string, std::vector<double>> singles_;
};

void print_ratio(const SummaryReporter& r, const char* what, const std::string& base,
                 const std::string& subject, double target, bool at_least) {
  const double b = r.ns(base);
  const double s = r.ns(subject);
  if (b == 0 || s == 0) {
    std::printf("  %-58s (not run)\n", what);
    return;
  }
  const double ratio = b / s;  // > 1: subject is faster
  const bool ok = at_least ? ratio >= target : ratio <= target;
  std::printf("  %-58s %8.2fx  (target >= %.2fx)  %s\n", what, ratio, target,
              ok ? "met" : "MISSED");
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  SummaryReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  std::printf("\nRatios (speed-up of the second over the first; per-object times, "
              "batch of %zu x %zu B):\n", kBatch, kSize);
  print_ratio(reporter, "arena handle vs glibc malloc+free", "BM_GlibcMallocFree",
              "BM_ArenaHandle", 5.0, true);
  print_ratio(reporter, "arena handle vs monotonic_buffer_resource",
              "BM_MonotonicBufferResource", "BM_ArenaHandle", 1.0, true);
  print_ratio(reporter, "bump handle vs glibc malloc+free", "BM_GlibcMallocFree",
              "BM_BumpHandle", 5.0, true);
  print_ratio(reporter, "bump handle vs monotonic_buffer_resource",
              "BM_MonotonicBufferResource", "BM_BumpHandle", 1.0, true);
  print_ratio(reporter, "arena inline vs raw pointer bump (>=0.5 = within 2x)",
              "BM_RawPointerBump", "BM_ArenaInline", 0.5, true);
  print_ratio(reporter, "bump inline vs raw pointer bump (>=0.5 = within 2x)",
              "BM_RawPointerBump", "BM_BumpInline", 0.5, true);
  print_ratio(reporter, "pool handle create+destroy vs glibc malloc+free",
              "BM_PoolGlibcMallocFree", "BM_PoolHandle", 3.0, true);
  print_ratio(reporter, "pool inline create+destroy vs glibc malloc+free",
              "BM_PoolGlibcMallocFree", "BM_PoolInline", 3.0, true);
  print_ratio(reporter, "pool handle vs unsynchronized_pool_resource",
              "BM_PoolUnsynchronizedPoolResource", "BM_PoolHandle", 1.0, true);
  print_ratio(reporter, "pool inline vs unsynchronized_pool_resource",
              "BM_PoolUnsynchronizedPoolResource", "BM_PoolInline", 1.0, true);
  print_ratio(reporter, "1M-node tree: arena destroy (huge pages) vs glibc 1-by-1",
              "BM_TreeDropGlibcOneByOne", "BM_TreeDropArenaDestroy/1", 20.0, true);
  print_ratio(reporter, "1M-node tree: arena destroy (4 KiB pages) vs glibc 1-by-1",
              "BM_TreeDropGlibcOneByOne", "BM_TreeDropArenaDestroy/0", 20.0, true);
  print_ratio(reporter, "1M-node tree: arena reset(retain) vs glibc one by one",
              "BM_TreeDropGlibcOneByOne", "BM_TreeDropArenaResetRetain", 20.0, true);
  return 0;
}
