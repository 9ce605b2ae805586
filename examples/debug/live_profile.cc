// Where does the memory go? A toy document index keeps its memory in three
// places; DebugAllocator writes what is live as a pprof profile, which
// `go tool pprof` shows as a table, a call graph or a flame graph. Run it:
//   bazel build //examples/debug:live_profile
//   bazel-bin/examples/debug/live_profile /tmp/live.pb.gz
//   go tool pprof -top /tmp/live.pb.gz     (or -svg > live.svg, or -http=:8080)
// docs/live_profile.svg was made from it this way.
#include <cstdio>
#include <cstring>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/alloc_iface/vec.h"
#include "alloy/allocators/c_allocator.h"
#include "alloy/debug/debug_allocator.h"

namespace index_demo {

struct Document {
  std::span<char> text;
  std::span<std::uint32_t> tokens;  // word start offsets
};

// Each document's text, copied in: the biggest share.
[[gnu::noinline]] alloy::Result<void> load_documents(alloy::Allocator a,
                                                     alloy::Vec<Document>& docs, int n) {
  char text[4096];
  for (int i = 0; i < n; ++i) {
    for (std::size_t k = 0; k < sizeof text; ++k) text[k] = (k % 7 == 0) ? ' ' : 'a' + (i + k) % 26;
    ALLOY_TRY(auto copy, a.dupe(std::string_view(text, sizeof text)));
    ALLOY_TRY(docs.try_push(Document{copy, {}}));
  }
  return alloy::Ok();
}

// One offset per word of each document.
[[gnu::noinline]] alloy::Result<void> tokenize(alloy::Allocator a, alloy::Vec<Document>& docs) {
  for (Document& d : docs) {
    std::size_t words = 0;
    for (char c : d.text) words += c == ' ';
    ALLOY_TRY(auto tokens, a.alloc<std::uint32_t>(words));
    std::size_t w = 0;
    for (std::size_t k = 0; k < d.text.size(); ++k) {
      if (d.text[k] == ' ') tokens[w++] = static_cast<std::uint32_t>(k);
    }
    d.tokens = tokens;
  }
  return alloy::Ok();
}

// A posting table: one bucket array and one small node per document.
[[gnu::noinline]] alloy::Result<void> build_postings(alloy::Allocator a,
                                                     alloy::Vec<std::span<int>>& nodes, int n) {
  ALLOY_TRY(auto buckets, a.alloc<int>(16384));
  ALLOY_TRY(nodes.try_push(buckets));
  for (int i = 0; i < n; ++i) {
    ALLOY_TRY(auto node, a.alloc<int>(24));
    ALLOY_TRY(nodes.try_push(node));
  }
  return alloy::Ok();
}

}  // namespace index_demo

int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : "live.pb.gz";
  alloy::DebugOptions options;
  options.traces = alloy::TraceMode::kAlways;  // every block by its full stack
  alloy::DebugAllocator debug(alloy::c_allocator(), options);
  alloy::Allocator a = debug.allocator();
  {
    alloy::Vec<index_demo::Document> docs(a);
    alloy::Vec<std::span<int>> nodes(a);
    if (!index_demo::load_documents(a, docs, 200).ok() || !index_demo::tokenize(a, docs).ok() ||
        !index_demo::build_postings(a, nodes, 200).ok()) {
      return 1;
    }
    if (!debug.write_profile(path)) {
      std::fprintf(stderr, "could not write %s\n", path);
      return 1;
    }
    std::printf("wrote %s: %zu live blocks, %zu bytes\n", path, debug.stats().live_count,
                debug.stats().live_bytes);
    for (auto& d : docs) {
      a.free(d.text);
      a.free(d.tokens);
    }
    for (auto& n : nodes) a.free(n);
  }
  return debug.deinit() == 0 ? 0 : 1;
}
