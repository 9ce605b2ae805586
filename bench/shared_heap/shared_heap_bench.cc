// Micro benchmarks for alloy::SharedHeap: alloc+free pairs against the C
// allocator, a mixed-size batch, and the same lock contended by threads of one
// process or by a second process hammering the heap.
//
//   bazel build --config=opt //bench/shared_heap:shared_heap_bench
//   bazel-bin/bench/shared_heap/shared_heap_bench --benchmark_repetitions=5
#include <benchmark/benchmark.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <string>
#include <vector>

#include "alloy/allocators/c_allocator.h"
#include "alloy/allocators/shared_heap/shared_heap.h"

namespace {

alloy::SharedHeap& shared_heap() {
  static alloy::SharedHeap heap = [] {
    auto r = alloy::SharedHeap::create_anonymous(std::size_t{64} << 20);
    if (!r) std::abort();
    return std::move(*r);
  }();
  return heap;
}

void alloc_free_pairs(benchmark::State& state, alloy::Allocator a) {
  const auto len = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    auto b = a.alloc<std::byte>(len);
    benchmark::DoNotOptimize(b->data());
    a.free(*b);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_SharedHeap_AllocFree(benchmark::State& state) {
  alloc_free_pairs(state, shared_heap().allocator());
}
void BM_CAllocator_AllocFree(benchmark::State& state) {
  alloc_free_pairs(state, alloy::c_allocator());
}
BENCHMARK(BM_SharedHeap_AllocFree)->Arg(64)->Arg(1024)->Arg(16384);
BENCHMARK(BM_CAllocator_AllocFree)->Arg(64)->Arg(1024)->Arg(16384);

// 256 blocks of 16..4096 bytes, freed in a shuffled order.
void batch(benchmark::State& state, alloy::Allocator a) {
  std::mt19937 rng(1);
  std::vector<std::size_t> sizes(256), order(256);
  for (std::size_t i = 0; i < 256; ++i) {
    sizes[i] = 16 + rng() % 4080;
    order[i] = i;
  }
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<std::span<std::byte>> blocks(256);
  for (auto _ : state) {
    for (std::size_t i = 0; i < 256; ++i) blocks[i] = *a.alloc<std::byte>(sizes[i]);
    for (std::size_t i : order) a.free(blocks[i]);
  }
  state.SetItemsProcessed(state.iterations() * 256);
}
void BM_SharedHeap_Batch(benchmark::State& state) { batch(state, shared_heap().allocator()); }
void BM_CAllocator_Batch(benchmark::State& state) { batch(state, alloy::c_allocator()); }
BENCHMARK(BM_SharedHeap_Batch);
BENCHMARK(BM_CAllocator_Batch);

// Threads of one process on one heap: every call takes the same robust lock.
void BM_SharedHeap_Threads(benchmark::State& state) {
  alloc_free_pairs(state, shared_heap().allocator());
}
BENCHMARK(BM_SharedHeap_Threads)->Arg(64)->Threads(1)->Threads(2)->UseRealTime();

// A second process allocating and freeing on the same heap the whole time.
void BM_SharedHeap_OtherProcessBusy(benchmark::State& state) {
  alloy::SharedHeap& heap = shared_heap();
  auto stop = heap.allocator().create<std::atomic<int>>(0);
  if (!stop) {
    state.SkipWithError("heap full");
    return;
  }
  std::atomic<int>* flag = *stop;
  pid_t child = ::fork();
  if (child == 0) {
    alloy::Allocator a = heap.allocator();  // inherited mapping
    while (flag->load(std::memory_order_relaxed) == 0) {
      auto b = a.alloc<std::byte>(64);
      if (b) a.free(*b);
    }
    ::_exit(0);
  }
  alloc_free_pairs(state, heap.allocator());
  flag->store(1);
  ::waitpid(child, nullptr, 0);
  heap.allocator().destroy(flag);
}
BENCHMARK(BM_SharedHeap_OtherProcessBusy)->Arg(64)->UseRealTime();

}  // namespace
