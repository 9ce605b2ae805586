// A program that uses alloy the way the README shows: a handle taken by
// library code, an arena and a debug allocator picked by the caller.
#include <cstdio>
#include <string_view>

#include "alloy/allocators/arena.h"
#include "alloy/allocators/c_allocator.h"
#include "alloy/allocators/page_allocator.h"
#include "alloy/debug/debug_allocator.h"

// Library code: takes a handle, never learns the strategy.
static std::size_t count_words(alloy::Allocator a, std::string_view text) {
  auto copy = a.dupe(text);
  if (!copy) return 0;
  std::size_t words = 0;
  bool in_word = false;
  for (char c : *copy) {
    const bool space = c == ' ';
    words += !space && !in_word;
    in_word = !space;
  }
  a.free(*copy);
  return words;
}

int main() {
  alloy::Arena arena(alloy::page_allocator());
  alloy::DebugAllocator debug(alloy::c_allocator());
  const std::size_t a = count_words(arena.allocator(), "one two three");
  const std::size_t b = count_words(debug.allocator(), "four five");
  std::printf("app: %zu and %zu words, %zu leaks\n", a, b,
              debug.deinit());
  return a == 3 && b == 2 ? 0 : 1;
}
