// libFuzzer target: alloy::Heap driven by random alloc/resize/remap/realloc/
// free of random sizes (1 B .. 256 KiB, now and then 2..3 MiB) and
// alignments (1 B .. 64 KiB), with random ceilings. Checks contents,
// alignment, no overlap, the ceiling after every growth, that visit()
// reports exactly the model's live blocks (so a block that left the heap is
// caught), and that wrong frees (interior pointers, double frees) are
// refused. Run: tools/fuzz engine_fuzz
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "alloy/allocators/engine/engine.h"
#include "alloy/allocators/engine/heap.h"
#include "tests/fuzz/shadow.h"

namespace {

using alloy::fuzz::Block;
using alloy::fuzz::Shadow;

constexpr std::size_t kMaxLive = 96;

std::size_t pick_size(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 7)) {
    case 0: return in.ConsumeIntegralInRange<std::size_t>(1, 16);
    case 1: case 2: return in.ConsumeIntegralInRange<std::size_t>(1, 1024);
    case 3: case 4: return in.ConsumeIntegralInRange<std::size_t>(1, 16 << 10);
    case 5: return in.ConsumeIntegralInRange<std::size_t>(16 << 10, 80 << 10);
    case 6:
      if (in.ConsumeIntegralInRange<int>(0, 127) == 0) {  // huge: its own mapping
        return in.ConsumeIntegralInRange<std::size_t>(2 << 20, 3 << 20);
      }
      return std::size_t{1} << in.ConsumeIntegralInRange<int>(0, 17);
    default: return in.ConsumeIntegralInRange<std::size_t>(1, 256 << 10);
  }
}

void check_visit(alloy::Heap& heap, const Shadow& shadow) {
  struct Seen {
    std::byte* p;
    std::size_t size;
  };
  std::vector<Seen> seen;
  seen.reserve(shadow.live.size() + 8);
  heap.visit([&](void* p, std::size_t n) { seen.push_back({static_cast<std::byte*>(p), n}); });
  FUZZ_CHECK(seen.size() == shadow.live.size(), "visit count != live blocks", nullptr,
             seen.size(), shadow.live.size());
  std::sort(seen.begin(), seen.end(), [](auto& a, auto& b) { return a.p < b.p; });
  for (std::size_t i = 1; i < seen.size(); ++i) {
    FUZZ_CHECK(seen[i - 1].p + seen[i - 1].size <= seen[i].p, "visit blocks overlap",
               seen[i].p, seen[i - 1].size, 0);
  }
  for (const Block& b : shadow.live) {
    auto it = std::upper_bound(seen.begin(), seen.end(), b.p,
                               [](std::byte* p, const Seen& s) { return p < s.p; });
    FUZZ_CHECK(it != seen.begin(), "live block not visited", b.p, b.len, 0);
    --it;
    FUZZ_CHECK(b.p + b.len <= it->p + it->size, "visit size short of live block", b.p,
               b.len, it->size);
  }
}

// The engine's own invariants (validate.cc) after every batch of operations.
constexpr std::size_t kOpsPerValidation = 64;
void check_invariants(alloy::Heap& heap) {
  const char* broken = heap.find_broken_invariant();
  FUZZ_CHECK(broken == nullptr, broken, nullptr, 0, 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  alloy::HeapOptions options;
  if (in.ConsumeBool()) options.ceiling = in.ConsumeIntegralInRange<std::size_t>(0, 16 << 20);
  options.eager_purge = in.ConsumeBool();
  auto created = alloy::Heap::create(options);
  if (!created) return 0;
  alloy::Heap heap = std::move(*created);
  alloy::Allocator a = heap.allocator();
  Shadow shadow;
  std::uint8_t seed = 1;
  std::size_t ops = 0;

  while (in.remaining_bytes() > 0) {
    const int op = in.ConsumeIntegralInRange<int>(0, 11);
    if (op <= 3 && shadow.live.size() < kMaxLive) {  // alloc
      const std::size_t len = pick_size(in);
      const auto log2 = static_cast<std::uint8_t>(
          in.ConsumeBool() ? in.ConsumeIntegralInRange<int>(0, 16)
                           : in.ConsumeIntegralInRange<int>(0, 4));
      const auto align = alloy::Alignment::from_log2(log2);
      const std::size_t before = heap.committed();
      void* p = a.raw_alloc(len, align, 0);
      if (p == nullptr) continue;  // out of memory or over the ceiling: allowed
      const std::size_t after = heap.committed();
      FUZZ_CHECK(after <= before || after <= heap.ceiling(), "committed past the ceiling", p,
                 after, heap.ceiling());
      shadow.add(p, len, align.bytes(), seed++);
    } else if (shadow.live.empty()) {
      continue;
    } else if (op <= 5) {  // free
      const std::size_t i = in.ConsumeIntegralInRange<std::size_t>(0, shadow.live.size() - 1);
      Block b = shadow.live[i];
      shadow.check(b);
      a.raw_free(alloy::Bytes(b.p, b.len), alloy::Alignment::from_bytes(b.align).value(), 0);
      shadow.remove(i);
    } else if (op <= 7 || op == 10) {  // resize in place / remap / Heap::realloc
      const std::size_t i = in.ConsumeIntegralInRange<std::size_t>(0, shadow.live.size() - 1);
      Block& b = shadow.live[i];
      shadow.check(b);
      const std::size_t new_len = pick_size(in);
      const auto align = alloy::Alignment::from_bytes(b.align).value();
      const std::size_t before = heap.committed();
      // The block after a resize, remap or realloc to new_len; null: unchanged.
      auto moved = [&](void* q, const char* lost_alignment) {
        shadow.moved(i, q, new_len, lost_alignment);
      };
      if (op == 10) {
        moved(alloy::Heap::realloc(b.p, new_len, b.align), "realloc lost the alignment");
      } else if (op == 6) {  // in place: the same start, or nothing
        const bool resized = a.raw_resize(alloy::Bytes(b.p, b.len), align, new_len, 0);
        moved(resized ? static_cast<void*>(b.p) : nullptr, "resize lost the alignment");
      } else {
        moved(a.raw_remap(alloy::Bytes(b.p, b.len), align, new_len, 0), "remap lost the alignment");
      }
      const std::size_t after = heap.committed();
      FUZZ_CHECK(after <= before || after <= heap.ceiling(), "growth committed past the ceiling",
                 b.p, after, heap.ceiling());
    } else if (op == 11) {  // wrong frees: refused, the model's blocks untouched
      const std::size_t i = in.ConsumeIntegralInRange<std::size_t>(0, shadow.live.size() - 1);
      const Block& b = shadow.live[i];
      if (b.len > 1) {  // a pointer into the block, never another block's start
        alloy::Heap::free(b.p + in.ConsumeIntegralInRange<std::size_t>(1, b.len - 1));
      }
      // A double free of a block just freed (the head of its page's list).
      void* p = heap.alloc(b.len);
      if (p != nullptr) {
        alloy::Heap::free(p);
        alloy::Heap::free(p);
      }
      shadow.check(b);
    } else if (op == 8) {  // new ceiling, sometimes below the current commitment
      if (in.ConsumeBool()) {
        heap.set_ceiling(in.ConsumeIntegralInRange<std::size_t>(0, 32 << 20));
      } else {
        heap.set_ceiling(SIZE_MAX);
      }
      if (in.ConsumeBool()) heap.collect();
    } else {
      shadow.check_all();
      check_visit(heap, shadow);
      auto stats = heap.stats();
      FUZZ_CHECK(stats.live_blocks == shadow.live.size(), "stats.live_blocks wrong", nullptr,
                 stats.live_blocks, shadow.live.size());
    }
    if (++ops % kOpsPerValidation == 0) check_invariants(heap);
  }
  shadow.check_all();
  check_visit(heap, shadow);
  check_invariants(heap);
  for (const Block& b : shadow.live) {
    a.raw_free(alloy::Bytes(b.p, b.len), alloy::Alignment::from_bytes(b.align).value(), 0);
  }
  heap.destroy();
  return 0;
}
