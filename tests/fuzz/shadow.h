// Shadow model shared by the libFuzzer targets in tests/fuzz.
//
// Every live block the fuzzer holds gets a fill pattern derived from a
// per-block seed; check() proves the allocator preserved it, no_overlap()
// proves a new block does not intersect any live one, and CheckingChild is a
// child allocator that remembers what it handed out so a parent that frees or
// resizes anything else is caught at once. A violated invariant prints what
// went wrong and aborts, which libFuzzer reports as a crash with the input.
//
// Cost: O(block bytes) per fill/check, O(live blocks) per overlap check; the
// targets keep both bounded. Thread safety: none (one fuzzer thread).
//
// Example:
//   alloy::fuzz::Shadow shadow;
//   auto& b = shadow.add(p, len, align, seed);   // fills, checks alignment/overlap
//   shadow.check(b);                              // contents intact?
//   shadow.remove(i);                              // before handing it back
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <vector>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/alloc_iface/make_vtable.h"

namespace alloy::fuzz {

[[noreturn]] inline void fail(const char* what, const void* p, std::size_t a,
                              std::size_t b) {
  std::fprintf(stderr, "FUZZ INVARIANT BROKEN: %s (p=%p, %zu, %zu)\n", what, p, a, b);
  std::abort();
}

#define FUZZ_CHECK(cond, what, p, a, b) \
  do {                                  \
    if (!(cond)) ::alloy::fuzz::fail(what, p, a, b); \
  } while (0)

inline std::byte pattern(std::uint8_t seed, std::size_t i) {
  return static_cast<std::byte>(seed + i * 167 + (i >> 8));
}

struct Block {
  std::byte* p = nullptr;
  std::size_t len = 0;
  std::size_t align = 1;
  std::uint8_t seed = 0;
};

inline void fill(std::byte* p, std::size_t from, std::size_t to, std::uint8_t seed) {
  for (std::size_t i = from; i < to; ++i) p[i] = pattern(seed, i);
}

inline void check_prefix(const std::byte* p, std::size_t n, std::uint8_t seed) {
  for (std::size_t i = 0; i < n; ++i) {
    FUZZ_CHECK(p[i] == pattern(seed, i), "block contents changed", p, i, n);
  }
}

class Shadow {
 public:
  std::vector<Block> live;

  // Records a block the allocator just returned: aligned, disjoint, filled.
  Block& add(void* p, std::size_t len, std::size_t align, std::uint8_t seed) {
    auto* b = static_cast<std::byte*>(p);
    FUZZ_CHECK(reinterpret_cast<std::uintptr_t>(p) % align == 0, "misaligned block", p,
               len, align);
    no_overlap(b, len, live.size());
    fill(b, 0, len, seed);
    live.push_back(Block{b, len, align, seed});
    return live.back();
  }
  // `skip` = index of a block allowed to overlap (the one being resized).
  void no_overlap(const std::byte* p, std::size_t len, std::size_t skip) const {
    for (std::size_t i = 0; i < live.size(); ++i) {
      if (i == skip) continue;
      const Block& o = live[i];
      FUZZ_CHECK(p + len <= o.p || o.p + o.len <= p, "blocks overlap", p, len, o.len);
    }
  }
  void check(const Block& b) const { check_prefix(b.p, b.len, b.seed); }
  // Block i after a resize, remap or realloc to new_len that returned q (its
  // new or unchanged address; null: the call failed and the block must be
  // intact): aligned as before, disjoint, the common prefix kept, the growth
  // filled.
  void moved(std::size_t i, void* q, std::size_t new_len, const char* lost_alignment) {
    Block& b = live[i];
    if (q == nullptr) {
      check(b);
      return;
    }
    auto* nb = static_cast<std::byte*>(q);
    FUZZ_CHECK(reinterpret_cast<std::uintptr_t>(q) % b.align == 0, lost_alignment, q, new_len,
               b.align);
    no_overlap(nb, new_len, i);
    check_prefix(nb, std::min(b.len, new_len), b.seed);
    if (new_len > b.len) fill(nb, b.len, new_len, b.seed);
    b.p = nb;
    b.len = new_len;
  }
  void check_all() const {
    for (const Block& b : live) check(b);
  }
  void remove(std::size_t i) {
    live[i] = live.back();
    live.pop_back();
  }
};

// A child allocator over c_allocator-like storage (malloc'd, over-aligned by
// hand) that verifies every free/resize/remap names exactly a block it handed
// out, with the same length and alignment, and counts the bytes outstanding.
class CheckingChild {
 public:
  struct Given {
    std::size_t len;
    std::uint8_t align_log2;
    void* raw;
  };
  std::map<std::uintptr_t, Given> given;
  std::size_t outstanding = 0;
  std::size_t fail_after = SIZE_MAX;  // allocations left before refusing

  ~CheckingChild() {
    for (auto& [addr, g] : given) std::free(g.raw);
  }
  Allocator allocator() { return Allocator{this, &vtable_for<CheckingChild>}; }

 private:
  ALLOY_VTABLE_ENTRIES;
  static CheckingChild* self(void* ctx) { return static_cast<CheckingChild*>(ctx); }
  Given& find(Bytes m, Alignment a, const char* op) {
    auto it = given.find(reinterpret_cast<std::uintptr_t>(m.data()));
    FUZZ_CHECK(it != given.end(), op, m.data(), m.size(), 0);
    FUZZ_CHECK(it->second.len == m.size(), op, m.data(), m.size(), it->second.len);
    FUZZ_CHECK(it->second.align_log2 == a.log2(), op, m.data(), a.log2(),
               it->second.align_log2);
    return it->second;
  }
  static void* vt_alloc(void* ctx, std::size_t len, Alignment a, std::uintptr_t) {
    CheckingChild* c = self(ctx);
    FUZZ_CHECK(len > 0, "zero-length request reached the child", nullptr, 0, 0);
    if (c->fail_after == 0) return nullptr;
    if (c->fail_after != SIZE_MAX) --c->fail_after;
    if (len > (std::size_t{1} << 32) || a.log2() > 21) return nullptr;
    void* raw = std::malloc(len + a.bytes());
    if (raw == nullptr) return nullptr;
    auto addr = a.forward(reinterpret_cast<std::uintptr_t>(raw));
    c->given[addr] = Given{len, a.log2(), raw};
    c->outstanding += len;
    return reinterpret_cast<void*>(addr);
  }
  static bool vt_resize(void* ctx, Bytes m, Alignment a, std::size_t new_len,
                        std::uintptr_t) {
    CheckingChild* c = self(ctx);
    Given& g = c->find(m, a, "child resize of a block it never handed out");
    if (new_len > g.len) return false;  // shrink in place only
    c->outstanding -= g.len - new_len;
    g.len = new_len;
    return true;
  }
  static void* vt_remap(void*, Bytes, Alignment, std::size_t, std::uintptr_t) {
    return nullptr;
  }
  static void vt_free(void* ctx, Bytes m, Alignment a, std::uintptr_t) {
    CheckingChild* c = self(ctx);
    Given& g = c->find(m, a, "child free of a block it never handed out");
    c->outstanding -= g.len;
    std::free(g.raw);
    c->given.erase(reinterpret_cast<std::uintptr_t>(m.data()));
  }
};

}  // namespace alloy::fuzz
