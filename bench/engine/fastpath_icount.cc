// Instructions per malloc and per free on the fast path, counted by
// valgrind's callgrind: 32-byte blocks allocated and freed in batches of 16.
//
//   bazel build --config=opt //bench/engine:fastpath_icount
//   bazel-bin/bench/engine/fastpath_icount          # runs callgrind on itself
//
// Without arguments the binary re-runs itself under
//   valgrind --tool=callgrind --collect-atstart=no --toggle-collect=<fn>
// once per allocator and operation (so only instructions inside the batch
// function count, including whatever it calls), reads the "totals:" line and
// divides by the number of calls. `--inner <allocator>` is the workload.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "bench/engine/callgrind_count.h"
#include "bench/engine/peers.h"

namespace {
constexpr int kBatch = 16;
constexpr int kRounds = 200000;
void* g_ptrs[kBatch];
}  // namespace

#define ALLOY_ICOUNT_FNS(A, tag)                                                      \
  extern "C" __attribute__((noinline)) void icount_alloc_##tag() {                   \
    for (int i = 0; i < kBatch; ++i) g_ptrs[i] = alloy::bench::A::alloc(32);          \
    __asm__ volatile("" ::: "memory");                                                \
  }                                                                                   \
  extern "C" __attribute__((noinline)) void icount_free_##tag() {                    \
    for (int i = 0; i < kBatch; ++i) alloy::bench::A::free(g_ptrs[i], 32);            \
    __asm__ volatile("" ::: "memory");                                                \
  }                                                                                   \
  void run_##tag() {                                                                  \
    for (int r = 0; r < kRounds; ++r) {                                               \
      icount_alloc_##tag();                                                           \
      icount_free_##tag();                                                            \
    }                                                                                 \
  }

ALLOY_ICOUNT_FNS(Engine, engine)
ALLOY_ICOUNT_FNS(Mimalloc, mimalloc)
ALLOY_ICOUNT_FNS(Tcmalloc, tcmalloc)
ALLOY_ICOUNT_FNS(Jemalloc, jemalloc)
ALLOY_ICOUNT_FNS(Glibc, glibc)

namespace {

int inner(const std::string& which) {
  if (which == "engine") run_engine();
  else if (which == "mimalloc") run_mimalloc();
  else if (which == "tcmalloc") run_tcmalloc();
  else if (which == "jemalloc") run_jemalloc();
  else if (which == "glibc") run_glibc();
  else return 2;
  return 0;
}

// Instructions counted inside `fn` over the whole run, or -1.
double count(const char* self, const std::string& which, const std::string& fn) {
  return alloy::bench::callgrind_count(fn, {self, "--inner", which}, [] {});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::strcmp(argv[1], "--inner") == 0) return inner(argv[2]);
  std::printf("instructions per operation, 32-byte blocks in batches of %d (callgrind)\n", kBatch);
  std::printf("%-10s %8s %8s\n", "allocator", "malloc", "free");
  const double ops = static_cast<double>(kRounds) * kBatch;
  double engine_a = 0, engine_f = 0;
  for (const char* which : {"engine", "mimalloc", "tcmalloc", "jemalloc", "glibc"}) {
    const double a = count(argv[0], which, std::string("icount_alloc_") + which);
    const double f = count(argv[0], which, std::string("icount_free_") + which);
    if (a < 0 || f < 0) {
      std::printf("%-10s (valgrind failed or missing)\n", which);
      continue;
    }
    std::printf("%-10s %8.1f %8.1f\n", which, a / ops, f / ops);
    if (std::strcmp(which, "engine") == 0) {
      engine_a = a / ops;
      engine_f = f / ops;
    } else if (engine_a > 0) {
      std::printf("%-10s %8.2f %8.2f   (engine / %s)\n", "", engine_a / (a / ops), engine_f / (f / ops), which);
    }
  }
  return 0;
}
