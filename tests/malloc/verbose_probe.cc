// A program linked with the static malloc adapter that misuses malloc on
// purpose; the end-to-end test runs it with and without ALLOY_VERBOSE /
// ALLOY_STATS and checks what it reports. Exits 0 when every call behaved.
#include <errno.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

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

int main() {
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
