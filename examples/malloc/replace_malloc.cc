// Linking //adapters/malloc:alloy_malloc replaces the program's malloc and
// operator new: every allocation below, including those made inside libc
// (strdup) and libstdc++ (std::string, std::map), is served by alloy's
// engine. Run: bazel run //examples/malloc:replace_malloc
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "alloy/adapters/malloc/malloc_adapter.h"
#include "alloy/allocators/engine/engine.h"

int main() {
  void* block = std::malloc(100);
  char* copy = strdup("made by libc's strdup");
  auto* words = new std::map<std::string, int>{{"alloy", 1}, {"malloc", 2}};
  std::printf("malloc'd block owned by alloy: %s\n",
              alloy::engine::owns(block) ? "yes" : "no");
  std::printf("strdup'd string owned by alloy: %s\n",
              alloy::engine::owns(copy) ? "yes" : "no");
  std::printf("operator new'd map owned by alloy: %s\n",
              alloy::engine::owns(words) ? "yes" : "no");
  delete words;
  std::free(copy);
  std::free(block);
  // What ALLOY_STATS=1 would print at exit (written with write(2)):
  std::fflush(stdout);
  alloy::malloc_adapter::write_stats(1);
  return 0;
}
