// Instructions per alloc+free, counted by callgrind rather than timed (the
// build machine is shared and noisy; instruction counts are not). Runs a
// fixed number of 64-byte pairs and of 64-block batches for one
// configuration inside counted(), which callgrind is told to count alone:
//   bazel build --config=opt //bench/debug:debug_overhead_count
//   valgrind --tool=callgrind --toggle-collect='*counted*'
//       bazel-bin/bench/debug/debug_overhead_count ret_addr pair
// then "Collected" / 100000 is the instructions per pair. With `batch`
// instead of `pair` it counts 2000 batches of 64 allocs then 64 frees
// (divide by 128000 for one alloc+free). bench/debug/count_instructions.sh
// does all of this and prints the ratios.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <thread>

#include "alloy/allocators/c_allocator.h"
#include "bench/debug/debug_configs.h"

namespace {

constexpr int kPairs = 100000;
constexpr int kBatches = 2000;
constexpr int kBatch = 64;

[[gnu::noinline]] void* do_alloc(alloy::Allocator a, std::size_t n) {
  return a.raw_alloc(n, alloy::Alignment::from_log2(3), ALLOY_RETURN_ADDRESS());
}
[[gnu::noinline]] void do_free(alloy::Allocator a, void* p, std::size_t n) {
  a.raw_free(alloy::Bytes(static_cast<std::byte*>(p), n), alloy::Alignment::from_log2(3),
             ALLOY_RETURN_ADDRESS());
}

[[gnu::noinline]] std::size_t run_pairs(alloy::Allocator a, int n) {
  std::size_t sum = 0;
  for (int i = 0; i < n; ++i) {
    void* p = do_alloc(a, 64);
    sum += reinterpret_cast<std::uintptr_t>(p) & 0xff;
    do_free(a, p, 64);
  }
  return sum;
}

[[gnu::noinline]] std::size_t run_batches(alloy::Allocator a, int n) {
  std::size_t sum = 0;
  void* ptrs[kBatch];
  for (int b = 0; b < n; ++b) {
    for (int i = 0; i < kBatch; ++i) ptrs[i] = do_alloc(a, 16 + 16 * (i % 8));
    for (int i = 0; i < kBatch; ++i) {
      sum += reinterpret_cast<std::uintptr_t>(ptrs[i]) & 0xff;
      do_free(a, ptrs[i], 16 + 16 * (i % 8));
    }
  }
  return sum;
}

// The only function callgrind counts (--toggle-collect='*counted*').
[[gnu::noinline]] std::size_t counted(alloy::Allocator a, bool batch) {
  return batch ? run_batches(a, kBatches) : run_pairs(a, kPairs);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace alloy::bench;
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s CONFIG pair|batch [threaded]\n", argv[0]);
    return 2;
  }
  int config = -1;
  for (int c = 0; c < kNumConfigs; ++c) {
    if (std::string_view(argv[1]) == kConfigNames[c]) config = c;
  }
  if (config < 0) {
    std::fprintf(stderr, "unknown config %s\n", argv[1]);
    return 2;
  }
  const bool batch = std::string_view(argv[2]) == "batch";
  // Optional third argument "threaded": start a thread first so the lock is
  // taken on every call (see debug_allocator.h).
  if (argc > 3 && std::string_view(argv[3]) == "threaded") std::thread([] {}).join();
  alloy::DebugAllocator debug(alloy::c_allocator(), options_for(static_cast<Config>(config)));
  alloy::Allocator a = config == kChild ? alloy::c_allocator() : debug.allocator();
  // Warm up (the table grows, the quarantine fills, malloc's caches settle)
  // outside the counted function.
  std::size_t sum = batch ? run_batches(a, kBatches / 4) : run_pairs(a, kPairs / 4);
  sum += counted(a, batch);
  std::printf("%s %s: %d %s (checksum %zu)\n", kConfigNames[config], batch ? "batch" : "pair",
              batch ? kBatches * kBatch : kPairs, batch ? "allocs in batches" : "pairs", sum);
  return 0;
}
