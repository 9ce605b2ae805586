// A program linked with the static malloc adapter that misuses malloc on
// purpose; the end-to-end test runs it with and without ALLOY_VERBOSE /
// ALLOY_STATS and checks what it reports. Exits 0 when every call behaved.
#include <errno.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {
std::size_t opaque(std::size_t n) {
  asm volatile("" : "+r"(n));
  return n;
}
void* opaque_ptr(void* p) {
  asm volatile("" : "+r"(p));
  return p;
}
}  // namespace

// `verbose_probe purge`: fills 96 MiB with small blocks, frees them all and
// prints the resident set size (MiB) right after (ALLOY_EAGER_PURGE test).
int purge() {
  constexpr int kBlocks = 96 * 1024;
  static void* blocks[kBlocks];
  for (auto& b : blocks) {
    b = std::malloc(1000);
    static_cast<char*>(b)[0] = 1;
    static_cast<char*>(b)[999] = 1;
  }
  for (auto& b : blocks) std::free(b);
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr || std::fscanf(f, "%ld %ld", &pages, &resident) != 2) return 1;
  std::fclose(f);
  std::printf("%ld\n", resident * sysconf(_SC_PAGESIZE) / (1024 * 1024));
  return 0;
}

// `verbose_probe flood`: 100k impossible requests (issue 13: 2.6 million
// verbose lines once); each must still fail with ENOMEM.
int flood() {
  int failures = 0;
  for (int i = 0; i < 100000; ++i) {
    errno = 0;
    if (std::malloc(opaque(SIZE_MAX / 2 + 1)) != nullptr || errno != ENOMEM) ++failures;
  }
  return failures == 0 ? 0 : 1;
}

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "purge") == 0) return purge();
  if (argc > 1 && std::strcmp(argv[1], "flood") == 0) return flood();
  int failures = 0;
  errno = 0;
  if (std::malloc(opaque(SIZE_MAX / 2 + 1)) != nullptr || errno != ENOMEM) ++failures;
  static char not_heap[32];
  std::free(opaque_ptr(not_heap));  // ignored (reported when verbose)
  void* p = nullptr;
  if (posix_memalign(&p, opaque(24), 8) != EINVAL) ++failures;
  void* q = pvalloc(100);  // where Debian's jemalloc has no pvalloc
  if (q == nullptr) ++failures;
  std::free(q);
  std::printf("probe done: %d failures\n", failures);
  return failures == 0 ? 0 : 1;
}
