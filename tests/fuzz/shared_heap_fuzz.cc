// libFuzzer target: alloy::SharedHeap's handle (alloc, resize, remap, free of
// every size and alignment it serves, under a moving ceiling) against the shadow
// model, with SharedHeap::verify() -- the heap's own validator of its header,
// block chain, free lists, bitmap and counters -- after every batch of
// operations and at the end. Run: tools/fuzz shared_heap_fuzz
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>

#include "alloy/allocators/shared_heap/shared_heap.h"
#include "tests/fuzz/shadow.h"

namespace {

using alloy::Alignment;
using alloy::Bytes;
using alloy::fuzz::Block;
using alloy::fuzz::Shadow;

constexpr std::size_t kMaxLive = 96;
constexpr std::size_t kOpsPerVerify = 32;

std::size_t pick_len(FuzzedDataProvider& in) {
  const int kind = in.ConsumeIntegralInRange<int>(0, 9);
  if (kind <= 6) return in.ConsumeIntegralInRange<std::size_t>(1, 256);
  if (kind <= 8) return in.ConsumeIntegralInRange<std::size_t>(257, 16 << 10);
  return in.ConsumeIntegralInRange<std::size_t>(16 << 10, 300 << 10);
}
Alignment pick_align(FuzzedDataProvider& in) {
  return Alignment::from_log2(static_cast<std::uint8_t>(
      in.ConsumeBool() ? in.ConsumeIntegralInRange<int>(0, 4)
                       : in.ConsumeIntegralInRange<int>(0, 12)));  // 4 KiB: kMaxAlignment
}
Alignment align_of(const Block& b) { return Alignment::from_bytes(b.align).value(); }

void verify(const alloy::SharedHeap& heap, const Shadow& shadow) {
  auto ok = heap.verify();
  FUZZ_CHECK(ok.ok(), "SharedHeap::verify found the heap corrupt", nullptr, 0, 0);
  auto stats = heap.stats();
  FUZZ_CHECK(stats.ok() && stats->live_blocks == shadow.live.size(),
             "stats().live_blocks disagrees with the live blocks", nullptr,
             stats.ok() ? stats->live_blocks : 0, shadow.live.size());
  shadow.check_all();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  const std::size_t capacity = in.ConsumeIntegralInRange<std::size_t>(
      alloy::SharedHeap::kMinCapacity, 4 << 20);
  auto created = alloy::SharedHeap::create_anonymous(capacity);
  if (!created) return 0;
  alloy::SharedHeap heap = std::move(*created);
  alloy::Allocator a = heap.allocator();
  Shadow shadow;
  std::uint8_t seed = 1;
  std::size_t ops = 0;
  while (in.remaining_bytes() > 0) {
    const int op = in.ConsumeIntegralInRange<int>(0, 9);
    if (op <= 3 && shadow.live.size() < kMaxLive) {
      const std::size_t len = pick_len(in);
      const Alignment align = pick_align(in);
      void* p = a.raw_alloc(len, align, 0);
      if (p != nullptr) {
        FUZZ_CHECK(heap.contains(p), "block outside the mapping", p, len, 0);
        shadow.add(p, len, align.bytes(), seed++);
      }
    } else if (op == 4) {
      auto stats = heap.stats();
      const std::size_t in_use = stats.ok() ? stats->bytes_in_use : 0;
      (void)heap.set_ceiling(in.ConsumeBool()
                                 ? in_use + in.ConsumeIntegralInRange<std::size_t>(0, 1 << 20)
                                 : alloy::kNoCeiling);
    } else if (shadow.live.empty()) {
      continue;
    } else if (op <= 6) {  // free
      const std::size_t i = in.ConsumeIntegralInRange<std::size_t>(0, shadow.live.size() - 1);
      Block b = shadow.live[i];
      shadow.check(b);
      a.raw_free(Bytes(b.p, b.len), align_of(b), 0);
      shadow.remove(i);
    } else {  // resize in place (7) or remap (8, 9)
      const std::size_t i = in.ConsumeIntegralInRange<std::size_t>(0, shadow.live.size() - 1);
      Block& b = shadow.live[i];
      shadow.check(b);
      const std::size_t new_len = in.ConsumeBool()
          ? in.ConsumeIntegralInRange<std::size_t>(1, b.len)
          : pick_len(in);
      if (op == 7) {
        const bool in_place = a.raw_resize(Bytes(b.p, b.len), align_of(b), new_len, 0);
        shadow.moved(i, in_place ? b.p : nullptr, new_len, "resize moved the block");
      } else {
        shadow.moved(i, a.raw_remap(Bytes(b.p, b.len), align_of(b), new_len, 0), new_len,
                     "remap lost the alignment");
      }
    }
    if (++ops % kOpsPerVerify == 0) verify(heap, shadow);
  }
  verify(heap, shadow);
  for (const Block& b : shadow.live) a.raw_free(Bytes(b.p, b.len), align_of(b), 0);
  auto empty = heap.stats();
  FUZZ_CHECK(empty.ok() && empty->live_blocks == 0, "blocks left after freeing all", nullptr,
             empty.ok() ? empty->live_blocks : 0, 0);
  return 0;
}
