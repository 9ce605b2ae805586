// A leak hunt: a small word-counting program with two planted bugs — a leak on
// one path and a double free on another. DebugAllocator names both, with the
// line of code that allocated, first freed, and freed again. Run it:
//   bazel build //examples/debug:leak_hunt && bazel-bin/examples/debug/leak_hunt [--json]
#include <cstdio>
#include <cstring>
#include <string_view>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/alloc_iface/vec.h"
#include "alloy/allocators/c_allocator.h"
#include "alloy/debug/debug_allocator.h"

namespace {

struct Word {
  std::span<char> text;  // owned copy
  int count;
};

// Copies each distinct word once. Planted bug #1: the copy of a word that is
// already present is never freed.
[[gnu::noinline]] alloy::Result<void> count_words(alloy::Allocator a, alloy::Vec<Word>& words,
                                                  std::string_view text) {
  while (!text.empty()) {
    auto end = text.find(' ');
    std::string_view w = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    ALLOY_TRY(auto copy, a.dupe(w));
    bool found = false;
    for (auto& existing : words) {
      if (std::string_view(existing.text.data(), existing.text.size()) == w) {
        ++existing.count;
        found = true;  // BUG: `copy` leaks here
      }
    }
    if (!found) {
      if (auto r = words.try_push(Word{copy, 1}); !r) {
        a.free(copy);
        return r;
      }
    }
  }
  return alloy::Ok();
}

// Planted bug #2: the last word is freed twice.
[[gnu::noinline]] void release_words(alloy::Allocator a, alloy::Vec<Word>& words) {
  for (auto& w : words) a.free(w.text);
  if (!words.empty()) a.free(words.back().text);  // BUG: double free
  words.clear();
}

}  // namespace

int main(int argc, char** argv) {
  alloy::debug::init_symbolizer(argv[0]);
  const bool json = argc > 1 && std::strcmp(argv[1], "--json") == 0;

  alloy::DebugOptions options;
  options.traces = alloy::TraceMode::kAlways;  // full traces: this is a hunt
  options.json_to_stderr = json;
  alloy::DebugAllocator debug(alloy::c_allocator(), options);
  alloy::Allocator a = debug.allocator();

  std::fprintf(stderr, "== counting words (the double free is reported as it happens)\n");
  {
    alloy::Vec<Word> words(a);
    if (!count_words(a, words, "the quick fox jumps over the lazy dog").ok()) return 1;
    for (const auto& w : words) {
      std::printf("%.*s: %d\n", static_cast<int>(w.text.size()), w.text.data(), w.count);
    }
    release_words(a, words);
  }

  std::fprintf(stderr, "== checking for leaks\n");
  const std::size_t leaks = debug.deinit();
  const auto stats = debug.stats();
  std::fprintf(stderr, "== %zu leak(s), %zu misuse report(s), peak %zu bytes in %zu blocks\n",
               leaks, stats.errors, stats.peak_live_bytes, stats.peak_live_count);
  return leaks == 1 && stats.errors == 1 ? 0 : 1;  // exactly the two planted bugs
}
