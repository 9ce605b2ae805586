// A parser that builds a million-node AST in an arena and drops it in one call.
//
// The input is a generated arithmetic expression of ~1M nodes; every node is
// allocated with Arena::make (a pointer bump). Evaluating the tree proves it
// is intact; then the whole AST is released by one reset — no walk over the
// nodes, no per-node free — and the time is compared with building the same
// AST with new/delete and deleting it node by node.
//
//   bazel build --config=opt //examples/family:ast_parser
//   bazel-bin/examples/family/ast_parser
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

#include "alloy/allocators/arena.h"
#include "alloy/allocators/page_allocator.h"

namespace {

struct Node {
  enum class Kind : std::uint8_t { kNumber, kAdd, kSub, kMul } kind;
  std::int64_t value = 0;  // kNumber
  Node* lhs = nullptr;
  Node* rhs = nullptr;
};

// A fully parenthesised expression tree of the given depth: 2^depth - 1 nodes.
void generate(std::string& out, int depth, std::uint32_t& seed) {
  seed = seed * 1664525u + 1013904223u;
  if (depth == 1) {
    out += std::to_string(seed % 10);
    return;
  }
  static constexpr char kOps[] = {'+', '-', '*'};
  out += '(';
  generate(out, depth - 1, seed);
  out += kOps[(seed >> 8) % 3];
  generate(out, depth - 1, seed);
  out += ')';
}

// Recursive descent over "(expr op expr)" | digit. `make` allocates a Node.
template <class Make>
class Parser {
 public:
  Parser(std::string_view text, Make make) : text_(text), make_(make) {}

  Node* parse() {
    if (pos_ >= text_.size()) return nullptr;
    if (text_[pos_] != '(') {
      Node* n = make_();
      if (n == nullptr) return nullptr;
      n->kind = Node::Kind::kNumber;
      n->value = text_[pos_++] - '0';
      return n;
    }
    ++pos_;  // '('
    Node* lhs = parse();
    const char op = text_[pos_++];
    Node* rhs = parse();
    ++pos_;  // ')'
    Node* n = make_();
    if (n == nullptr || lhs == nullptr || rhs == nullptr) return nullptr;
    n->kind = op == '+' ? Node::Kind::kAdd : op == '-' ? Node::Kind::kSub : Node::Kind::kMul;
    n->lhs = lhs;
    n->rhs = rhs;
    return n;
  }

 private:
  std::string_view text_;
  std::size_t pos_ = 0;
  Make make_;
};

std::int64_t eval(const Node* n) {
  switch (n->kind) {
    case Node::Kind::kNumber: return n->value;
    case Node::Kind::kAdd: return eval(n->lhs) + eval(n->rhs);
    case Node::Kind::kSub: return eval(n->lhs) - eval(n->rhs);
    case Node::Kind::kMul: return (eval(n->lhs) * eval(n->rhs)) % 1000003;
  }
  return 0;
}

void delete_tree(Node* n) {
  if (n == nullptr) return;
  delete_tree(n->lhs);
  delete_tree(n->rhs);
  delete n;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
      .count();
}

}  // namespace

int main() {
  constexpr int kDepth = 20;  // 1,048,575 nodes
  std::string text;
  std::uint32_t seed = 7;
  generate(text, kDepth, seed);
  std::printf("input: %zu bytes, %zu nodes\n", text.size(), (std::size_t{1} << kDepth) - 1);

  // --- Arena: bump-allocate every node, drop them all with one call. ---
  alloy::Arena arena(alloy::page_allocator());
  std::size_t made = 0;
  auto t0 = std::chrono::steady_clock::now();
  Parser arena_parser(text, [&] {
    ++made;
    return arena.make<Node>();
  });
  Node* root = arena_parser.parse();
  const double arena_build = ms_since(t0);
  if (root == nullptr) {
    std::fprintf(stderr, "out of memory while parsing\n");
    return 1;
  }
  const std::int64_t value = eval(root);
  std::printf("arena:      %zu nodes in %zu chunks (%.1f MiB), value %lld, built in %.1f ms\n",
              made, arena.chunk_count(), arena.query_capacity() / 1048576.0,
              static_cast<long long>(value), arena_build);
  t0 = std::chrono::steady_clock::now();
  arena.reset(alloy::ResetMode::free_all());  // the whole AST, one call
  const double arena_drop = ms_since(t0);
  std::printf("arena:      dropped in %.3f ms (one reset, %zu chunks left)\n", arena_drop,
              arena.chunk_count());

  // --- The same with new/delete, freed node by node. ---
  t0 = std::chrono::steady_clock::now();
  Parser heap_parser(text, [] { return new Node(); });
  Node* heap_root = heap_parser.parse();
  const double heap_build = ms_since(t0);
  const std::int64_t heap_value = eval(heap_root);
  t0 = std::chrono::steady_clock::now();
  delete_tree(heap_root);
  const double heap_drop = ms_since(t0);
  std::printf("new/delete: value %lld, built in %.1f ms, deleted node by node in %.1f ms\n",
              static_cast<long long>(heap_value), heap_build, heap_drop);
  std::printf("drop speed-up: %.0fx   build speed-up: %.1fx\n",
              heap_drop / (arena_drop > 0 ? arena_drop : 1e-6), heap_build / arena_build);
  return value == heap_value ? 0 : 1;
}
