// A sampled heap profile of an ordinary C++ program whose malloc is alloy's:
// a toy search index keeps its memory in three places (the documents'
// text, the postings lists, and the term table). The program samples one
// allocation per 16 KiB and writes a pprof profile; the same works for any
// program, unmodified, with ALLOY_PROF=/path and LD_PRELOAD (README). Run:
//   bazel build //examples/malloc:heap_profile
//   bazel-bin/examples/malloc/heap_profile /tmp/heap.pb.gz
//   go tool pprof -top -sample_index=alloc_space /tmp/heap.pb.gz
// docs/heap_profile.svg is `go tool pprof -svg` of its in-use bytes.
#include <cstdio>
#include <string>
#include <unordered_map>
#include <vector>

#include "alloy/adapters/malloc/malloc_adapter.h"

namespace search_index {

struct Index {
  std::vector<std::vector<char>> documents;
  std::unordered_map<std::string, std::vector<int>> postings;
};

// The documents' text: the biggest share.
[[gnu::noinline]] void load_documents(Index& index, int n) {
  for (int d = 0; d < n; ++d) {
    std::vector<char> text(8192);
    for (std::size_t i = 0; i < text.size(); ++i) {
      text[i] = (i % 8 == 7) ? ' ' : static_cast<char>('a' + (d * 7 + i / 8) % 23);
    }
    index.documents.push_back(std::move(text));
  }
}

// One postings list per term, one entry per occurrence.
[[gnu::noinline]] void build_postings(Index& index) {
  for (std::size_t d = 0; d < index.documents.size(); ++d) {
    const std::vector<char>& text = index.documents[d];
    for (std::size_t i = 0; i + 8 <= text.size(); i += 8) {
      index.postings[std::string(text.data() + i, 7)].push_back(static_cast<int>(d));
    }
  }
}

// Queries allocate scratch that they free again: alloc_space only.
[[gnu::noinline]] std::size_t run_queries(const Index& index, int n) {
  std::size_t hits = 0;
  for (int q = 0; q < n; ++q) {
    std::vector<int> result;
    for (const auto& [term, docs] : index.postings) {
      if (term[0] == 'a' + q % 23) result.insert(result.end(), docs.begin(), docs.end());
    }
    hits += result.size();
  }
  return hits;
}

}  // namespace search_index

int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : "heap.pb.gz";
  alloy::profile::set_rate(16 * 1024);
  search_index::Index index;
  search_index::load_documents(index, 1000);
  search_index::build_postings(index);
  const std::size_t hits = search_index::run_queries(index, 50);
  if (!alloy::profile::write(path)) {
    std::fprintf(stderr, "could not write %s\n", path);
    return 1;
  }
  std::printf("wrote %s (%zu terms, %zu hits)\n", path, index.postings.size(), hits);
  return 0;
}
