// Memory accounts: what a scope, a charging wrapper and a shared parent cost.
// Linked with the malloc adapter, so malloc/free below are alloy's.
//   bazel build --config=opt //bench/accounts:account_bench
//   bazel-out/k8-opt/bin/bench/accounts/account_bench
// Prints ns per alloc+free pair (best of 7 runs) and the ratios the issue
// sets targets for: scoped / unscoped malloc+free (target <= 1.5), wrapper
// minus child (target <= ~10 ns), and 2 threads charging one parent vs 1.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "alloy/allocators/engine/account.h"
#include "alloy/allocators/engine/heap.h"

namespace {

constexpr int kBatch = 64;
// ACCOUNT_BENCH_ROUNDS=N shortens the run (e.g. under valgrind).
const int kRounds = std::getenv("ACCOUNT_BENCH_ROUNDS") ? std::atoi(std::getenv("ACCOUNT_BENCH_ROUNDS")) : 20000;
constexpr int kReps = 7;

template <class F>
double best_ns_per_pair(F&& body) {
  double best = 1e30;
  for (int rep = 0; rep < kReps; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < kRounds; ++r) body();
    const auto t1 = std::chrono::steady_clock::now();
    const double ns = std::chrono::duration<double, std::nano>(t1 - t0).count() / (kRounds * kBatch);
    if (ns < best) best = ns;
  }
  return best;
}

void* volatile g_sink;

[[gnu::noinline]] void malloc_free_batch() {
  void* p[kBatch];
  for (int i = 0; i < kBatch; ++i) p[i] = std::malloc(32);
  g_sink = p[kBatch - 1];
  for (int i = 0; i < kBatch; ++i) std::free(p[i]);
}
// The same body under another name, so callgrind can count the scoped runs
// apart: valgrind --tool=callgrind --toggle-collect=*scoped_batch* ...
[[gnu::noinline]] void scoped_batch() {
  void* p[kBatch];
  for (int i = 0; i < kBatch; ++i) p[i] = std::malloc(32);
  g_sink = p[kBatch - 1];
  for (int i = 0; i < kBatch; ++i) std::free(p[i]);
}

// One instance per measurement (Tag), so callgrind can count each apart:
// --toggle-collect='*handle_batch<1>*' (0 child alone, 1 depth 2, 2 depth 4).
volatile int g_tag;

template <int Tag>
[[gnu::noinline]] void handle_batch(alloy::Allocator a) {
  g_tag = Tag;  // keeps the instances apart (identical bodies are folded otherwise)
  void* p[kBatch];
  const alloy::Alignment al = alloy::Alignment::of<std::max_align_t>();
  for (int i = 0; i < kBatch; ++i) p[i] = a.raw_alloc(32, al, 0);
  g_sink = p[kBatch - 1];
  for (int i = 0; i < kBatch; ++i) a.raw_free({static_cast<std::byte*>(p[i]), 32}, al, 0);
}

}  // namespace

int main() {
  alloy::Account root = alloy::Account::root();
  alloy::Account server = *root.create("server", {.limit = std::size_t{1} << 40});
  alloy::Account requests = *server.create("requests", {.limit = std::size_t{1} << 38});
  alloy::Account req = *requests.create("1");
  alloy::Account flat = *root.create("flat");

  const double unscoped = best_ns_per_pair(malloc_free_batch);
  double scoped1, scoped4;
  {
    alloy::AccountScope s(flat);  // path flat -> root: 2 levels
    scoped1 = best_ns_per_pair(scoped_batch);
  }
  {
    alloy::AccountScope s(req);  // req -> requests -> server -> root: 4 levels
    scoped4 = best_ns_per_pair(scoped_batch);
  }
  std::printf("malloc+free pair, 32 B, single thread (ns, best of %d)\n", kReps);
  std::printf("  unscoped                          %7.2f\n", unscoped);
  std::printf("  scoped, account depth 2           %7.2f   ratio %.2f (target <= 1.5)\n", scoped1,
              scoped1 / unscoped);
  std::printf("  scoped, account depth 4           %7.2f   ratio %.2f (target <= 1.5)\n", scoped4,
              scoped4 / unscoped);

  // The wrapper over the default heap's handle vs that handle alone.
  alloy::Allocator child = alloy::Heap::default_allocator();
  alloy::ChargingAllocator w1(flat, child);
  alloy::ChargingAllocator w4(req, child);
  const double bare = best_ns_per_pair([&] { handle_batch<0>(child); });
  const double wrapped1 = best_ns_per_pair([&] { handle_batch<1>(w1.allocator()); });
  const double wrapped4 = best_ns_per_pair([&] { handle_batch<2>(w4.allocator()); });
  std::printf("\nChargingAllocator over Heap::default_allocator(), alloc+free pair (ns)\n");
  std::printf("  child alone                       %7.2f\n", bare);
  std::printf("  wrapper, depth 2                  %7.2f   +%.2f ns (target <= ~10)\n", wrapped1,
              wrapped1 - bare);
  std::printf("  wrapper, depth 4                  %7.2f   +%.2f ns (target <= ~10)\n", wrapped4,
              wrapped4 - bare);

  // Two threads, each with its own child account of one parent, charging
  // through wrappers at once: the parent's counters are shared cache lines.
  alloy::Account shared = *root.create("shared");
  alloy::Account a = *shared.create("a");
  alloy::Account b = *shared.create("b");
  auto run_threads = [&](int n) {
    std::atomic<int> go{0};
    std::vector<double> ns(static_cast<std::size_t>(n));
    std::vector<std::thread> ts;
    for (int t = 0; t < n; ++t) {
      ts.emplace_back([&, t] {
        alloy::ChargingAllocator w(t == 0 ? a : b, alloy::Heap::default_allocator());
        go.fetch_add(1);
        while (go.load() < n) {
        }
        ns[static_cast<std::size_t>(t)] = best_ns_per_pair([&] { handle_batch<3>(w.allocator()); });
      });
    }
    for (auto& th : ts) th.join();
    double worst = 0;
    for (double x : ns) worst = x > worst ? x : worst;
    return worst;
  };
  const double one = run_threads(1);
  const double two = run_threads(2);
  std::printf("\nTwo threads charging one parent through wrappers, alloc+free pair (ns, slowest thread)\n");
  std::printf("  1 thread                          %7.2f\n", one);
  std::printf("  2 threads                         %7.2f   ratio %.2f\n", two, two / one);

  // Scoped malloc from 2 threads in sibling accounts of one parent.
  auto run_scoped = [&](int n) {
    std::atomic<int> go{0};
    std::vector<double> ns(static_cast<std::size_t>(n));
    std::vector<std::thread> ts;
    for (int t = 0; t < n; ++t) {
      ts.emplace_back([&, t] {
        alloy::AccountScope s(t == 0 ? a : b);
        go.fetch_add(1);
        while (go.load() < n) {
        }
        ns[static_cast<std::size_t>(t)] = best_ns_per_pair(scoped_batch);
      });
    }
    for (auto& th : ts) th.join();
    double worst = 0;
    for (double x : ns) worst = x > worst ? x : worst;
    return worst;
  };
  const double s1 = run_scoped(1);
  const double s2 = run_scoped(2);
  std::printf("\nTwo threads, scoped malloc+free in sibling accounts of one parent (ns, slowest thread)\n");
  std::printf("  1 thread                          %7.2f\n", s1);
  std::printf("  2 threads                         %7.2f   ratio %.2f\n", s2, s2 / s1);
  return 0;
}
