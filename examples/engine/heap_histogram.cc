// Heap diagnostics: walk a heap with visit() and print a histogram of its live
// blocks by size class, next to the heap's own statistics.
//
//   bazel build //examples/engine:heap_histogram && bazel-bin/examples/engine/heap_histogram
//
// The workload below stands in for a real program: it builds a few data
// structures in their own heap, frees part of them (some from another
// thread), and asks where the memory is.
#include <fmt/core.h>

#include <map>
#include <random>
#include <thread>
#include <vector>

#include "alloy/allocators/engine/engine.h"
#include "alloy/allocators/engine/heap.h"

namespace {

void print_histogram(alloy::Heap& heap) {
  std::map<std::size_t, std::pair<std::size_t, std::size_t>> by_size;  // size -> blocks, bytes
  heap.visit([&](void*, std::size_t size) {
    auto& [blocks, bytes] = by_size[size];
    ++blocks;
    bytes += size;
  });
  std::size_t total_blocks = 0, total_bytes = 0, widest = 1;
  for (auto& [size, v] : by_size) {
    total_blocks += v.first;
    total_bytes += v.second;
    widest = std::max(widest, v.second);
  }
  fmt::print("{:>10} {:>9} {:>11}  share of live bytes\n", "block", "blocks", "bytes");
  for (auto& [size, v] : by_size) {
    const int bar = static_cast<int>(50.0 * static_cast<double>(v.second) / static_cast<double>(widest));
    fmt::print("{:>10} {:>9} {:>11}  {}\n", size, v.first, v.second, std::string(static_cast<std::size_t>(bar), '#'));
  }
  fmt::print("{:>10} {:>9} {:>11}\n", "total", total_blocks, total_bytes);
}

}  // namespace

int main() {
  auto created = alloy::Heap::create();
  if (!created) return 1;
  alloy::Heap heap = std::move(*created);
  alloy::Allocator a = heap.allocator();

  std::mt19937 rng(5);
  std::vector<std::span<char>> strings, nodes, buffers;
  for (int i = 0; i < 50000; ++i) {  // short strings
    auto s = a.alloc<char>(8 + rng() % 56);
    if (s) strings.push_back(*s);
  }
  for (int i = 0; i < 20000; ++i) {  // tree nodes
    auto n = a.alloc<char>(48);
    if (n) nodes.push_back(*n);
  }
  for (int i = 0; i < 40; ++i) {  // I/O buffers, some large, one huge
    auto b = a.alloc<char>(i == 0 ? (std::size_t{6} << 20) : 4096 + rng() % 300000);
    if (b) buffers.push_back(*b);
  }
  // Drop every other string here and half the nodes from another thread.
  for (std::size_t i = 0; i < strings.size(); i += 2) a.free(strings[i]);
  std::thread t([&] {
    for (std::size_t i = 0; i < nodes.size(); i += 2) a.free(nodes[i]);
  });
  t.join();

  print_histogram(heap);
  const alloy::HeapStats s = heap.stats();
  fmt::print("\nstats: {} live blocks, {} KiB live, {} KiB committed (peak {} KiB), {} segments\n",
             s.live_blocks, s.live_bytes >> 10, s.committed_bytes >> 10,
             s.peak_committed_bytes >> 10, s.segments);
  fmt::print("size classes in use:");
  for (const auto& c : s.classes) {
    if (c.live_blocks != 0) fmt::print(" {}B x{}", c.block_size, c.live_blocks);
  }
  fmt::print("\nlarge: {} blocks {} KiB, huge: {} blocks {} KiB\n", s.large_blocks,
             s.large_bytes >> 10, s.huge_blocks, s.huge_bytes >> 10);
  heap.destroy();  // everything still live goes in one call
  return 0;
}
