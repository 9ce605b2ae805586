// alloy's main demo: one library function (a tokenizer that takes an
// alloy::Allocator) called with three different strategies, printing what
// each allocator was asked to do. The library never changes; the caller
// picks the memory.
#include <cstdio>
#include <memory_resource>
#include <string>

#include "alloy/adapters/pmr.h"
#include "alloy/allocators/c_allocator.h"
#include "alloy/allocators/page_allocator.h"
#include "alloy/allocators/wrappers/counting_allocator.h"
#include "examples/tokenizer.h"

namespace {

void run(const char* name, alloy::Allocator strategy, std::string_view text) {
  alloy::CountingAllocator counting(strategy, alloy::CountingAllocator::Threading::kSingleThread);
  std::size_t count = 0;
  std::string first, last;
  {
    auto tokens = demo::tokenize(counting.allocator(), text);
    if (!tokens) {
      std::printf("%-28s failed: %s\n", name, std::string(alloy::to_string(tokens.error())).c_str());
      return;
    }
    count = tokens->size();
    first = std::string(tokens->front());
    last = std::string(tokens->back());
  }  // the token Vec frees through its handle here
  const alloy::CountingStats s = counting.stats();
  std::printf("%-28s %6zu tokens ('%s' .. '%s'): %zu allocs, %zu resizes (%zu in place), "
              "%zu remaps, %zu frees, peak %zu bytes\n",
              name, count, first.c_str(), last.c_str(), s.allocs, s.resizes,
              s.resizes - s.resize_failures, s.remaps, s.frees, s.peak_bytes);
}

}  // namespace

int main() {
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "alloy token" + std::to_string(i) + (i % 7 ? " " : "\n");

  std::printf("tokenizing %zu bytes of text with one function and three allocators:\n\n",
              text.size());
  run("c_allocator (malloc)", alloy::c_allocator(), text);
  run("page_allocator (mmap)", alloy::page_allocator(), text);

  static std::byte buffer[1 << 20];
  std::pmr::monotonic_buffer_resource mono(buffer, sizeof buffer);
  run("pmr monotonic_buffer", alloy::resource_allocator(&mono), text);

  // A pmr resource too small for the job: the tokenizer gets an error, not
  // an exception or an abort.
  static std::byte tiny[256];
  std::pmr::monotonic_buffer_resource small(tiny, sizeof tiny, std::pmr::null_memory_resource());
  run("pmr 256-byte buffer", alloy::resource_allocator(&small), text);

  std::printf("\nThe same function ran on each: malloc grew the array with realloc (remap),\n"
              "mmap grew it in place or by moving pages without copying, pmr has neither so\n"
              "Vec allocated and copied, and the full buffer answered with an error.\n");
  return 0;
}
