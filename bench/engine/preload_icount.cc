// Instructions per malloc and per free through the exported symbols, as a
// program sees them under LD_PRELOAD (PLT jump, ownership test, owner
// compare, push), counted by valgrind's callgrind: 32-byte blocks allocated
// and freed in batches of 16, as fastpath_icount does for the inline path.
//
//   bazel build --config=opt //bench/engine:preload_icount //adapters:liballoy_malloc.so
//   bazel-out/k8-opt/bin/bench/engine/preload_icount [alloy.so] [NAME=path.so ...]
//
// The binary links no allocator: without arguments it re-runs itself under
//   valgrind --tool=callgrind --collect-atstart=no --toggle-collect=<fn>
// with LD_PRELOAD set to each library (alloy's, Debian's mimalloc, tcmalloc
// and jemalloc; glibc is the plain run), reads the "totals:" line and divides
// by the number of calls. Extra NAME=path.so arguments add rows (for example
// a previous build of alloy to compare against). ALLOY_* variables in the
// environment are passed through, so ALLOY_SECURE=1 counts the secure mode.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "bench/engine/callgrind_count.h"

namespace {
constexpr int kBatch = 16;
constexpr int kRounds = 200000;
void* volatile g_ptrs[kBatch];
}  // namespace

// -fno-builtin (BUILD) keeps the calls: these are calls of the exported
// malloc and free through the PLT, whatever library provides them.
extern "C" __attribute__((noinline)) void picount_alloc() {
  for (int i = 0; i < kBatch; ++i) g_ptrs[i] = std::malloc(32);
}
extern "C" __attribute__((noinline)) void picount_free() {
  for (int i = 0; i < kBatch; ++i) std::free(g_ptrs[i]);
}

namespace {

// Instructions counted inside `fn` over the whole run, or -1.
double count(const char* self, const std::string& lib, const std::string& fn) {
  return alloy::bench::callgrind_count(fn, {self, "--inner"}, [&] {
    if (lib.empty()) {
      unsetenv("LD_PRELOAD");
    } else {
      setenv("LD_PRELOAD", lib.c_str(), 1);
    }
  });
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "--inner") == 0) {
    for (int r = 0; r < kRounds; ++r) {
      picount_alloc();
      picount_free();
    }
    return 0;
  }
  std::vector<std::pair<std::string, std::string>> libs;
  libs.emplace_back("alloy", argc >= 2 && std::strchr(argv[1], '=') == nullptr
                                 ? argv[1]
                                 : "bazel-out/k8-opt/bin/adapters/liballoy_malloc.so");
  for (int i = 1; i < argc; ++i) {
    if (const char* eq = std::strchr(argv[i], '=')) libs.emplace_back(std::string(argv[i], static_cast<std::size_t>(eq - argv[i])), eq + 1);
  }
  const char* dir = "/usr/lib/x86_64-linux-gnu/";
  libs.emplace_back("mimalloc", std::string(dir) + "libmimalloc.so.2");
  libs.emplace_back("tcmalloc", std::string(dir) + "libtcmalloc_minimal.so.4");
  libs.emplace_back("jemalloc", std::string(dir) + "libjemalloc.so.2");
  libs.emplace_back("glibc", "");
  for (auto& [name, path] : libs) {
    if (!path.empty() && path[0] != '/') {
      char buf[4096];
      if (realpath(path.c_str(), buf) != nullptr) path = buf;
    }
  }
  std::printf("instructions per call of the exported malloc/free (LD_PRELOAD), 32-byte blocks in "
              "batches of %d (callgrind)\n", kBatch);
  std::printf("%-10s %8s %8s\n", "allocator", "malloc", "free");
  const double ops = static_cast<double>(kRounds) * kBatch;
  for (const auto& [name, path] : libs) {
    if (!path.empty() && access(path.c_str(), R_OK) != 0) {
      std::printf("%-10s (%s not found)\n", name.c_str(), path.c_str());
      continue;
    }
    const double a = count(argv[0], path, "picount_alloc");
    const double f = count(argv[0], path, "picount_free");
    if (a < 0 || f < 0) {
      std::printf("%-10s (valgrind failed or missing)\n", name.c_str());
      continue;
    }
    // The loop itself (index, store or load of g_ptrs) is counted too, as in
    // fastpath_icount; it is the same few instructions for every library.
    std::printf("%-10s %8.1f %8.1f\n", name.c_str(), a / ops, f / ops);
  }
  return 0;
}
