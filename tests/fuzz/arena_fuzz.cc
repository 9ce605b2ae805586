// libFuzzer target: alloy::Arena (over a child that checks every call),
// alloy::BumpAllocator and alloy::StackAllocator (markers, unwind, refused
// frees) driven by random operation sequences. Checks contents, alignment, no
// overlap, blocks inside their buffer, the arena's ceiling and that the arena
// gives its child back exactly the chunks it took. Run: tools/fuzz arena_fuzz
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "alloy/allocators/arena.h"
#include "alloy/allocators/bump_allocator.h"
#include "alloy/allocators/stack_allocator.h"
#include "tests/fuzz/shadow.h"

namespace {

using alloy::Alignment;
using alloy::Bytes;
using alloy::fuzz::Block;
using alloy::fuzz::check_prefix;
using alloy::fuzz::fill;
using alloy::fuzz::Shadow;

constexpr std::size_t kMaxLive = 128;
constexpr std::size_t kBufferBytes = 64 << 10;
alignas(4096) std::byte g_buffer[kBufferBytes];

std::size_t pick_len(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 0: return in.ConsumeIntegralInRange<std::size_t>(1, 32);
    case 1: return in.ConsumeIntegralInRange<std::size_t>(1, 512);
    case 2: return in.ConsumeIntegralInRange<std::size_t>(1, 8192);
    default: return in.ConsumeIntegralInRange<std::size_t>(1, 96 << 10);
  }
}
Alignment pick_align(FuzzedDataProvider& in) {
  return Alignment::from_log2(static_cast<std::uint8_t>(
      in.ConsumeBool() ? in.ConsumeIntegralInRange<int>(0, 4)
                       : in.ConsumeIntegralInRange<int>(0, 12)));
}
Alignment align_of(const Block& b) { return Alignment::from_bytes(b.align).value(); }

// Applies a successful in-place resize to the model.
void resized(Shadow& shadow, std::size_t i, std::size_t new_len) {
  shadow.moved(i, shadow.live[i].p, new_len, "resize moved the block");
}

void fuzz_arena(FuzzedDataProvider& in) {
  alloy::fuzz::CheckingChild child;
  {
    alloy::Arena::Options options;
    options.first_chunk = in.ConsumeIntegralInRange<std::size_t>(0, 1 << 16);
    options.ceiling = in.ConsumeBool() ? in.ConsumeIntegralInRange<std::size_t>(0, 1 << 20) : alloy::kNoCeiling;
    options.huge_pages = in.ConsumeBool();
    if (in.ConsumeIntegralInRange<int>(0, 7) == 0) {
      child.fail_after = in.ConsumeIntegralInRange<std::size_t>(0, 8);
    }
    alloy::Arena arena(child.allocator(), options);
    alloy::Allocator a = arena.allocator();
    Shadow shadow;
    std::uint8_t seed = 1;
    auto limits = [&] {
      // kNoCeiling (also what a ceiling of 0, the old spelling, reads back as) passes.
      FUZZ_CHECK(child.outstanding <= arena.ceiling(), "arena took more than its ceiling",
                 nullptr, child.outstanding, arena.ceiling());
      FUZZ_CHECK(arena.child_bytes() == child.outstanding, "child_bytes() disagrees with child",
                 nullptr, arena.child_bytes(), child.outstanding);
    };
    while (in.remaining_bytes() > 0) {
      const int op = in.ConsumeIntegralInRange<int>(0, 9);
      if (op <= 3 && shadow.live.size() < kMaxLive) {
        const std::size_t len = pick_len(in);
        const Alignment align = pick_align(in);
        void* p = a.raw_alloc(len, align, 0);
        limits();
        if (p == nullptr) continue;
        FUZZ_CHECK(arena.owns(p), "arena does not own its block", p, len, 0);
        shadow.add(p, len, align.bytes(), seed++);
      } else if (op == 4) {
        const auto which = in.ConsumeIntegralInRange<int>(0, 2);
        if (which == 0) arena.reset(alloy::ResetMode::free_all());
        if (which == 1) arena.reset(alloy::ResetMode::retain_capacity());
        if (which == 2) {
          arena.reset(alloy::ResetMode::retain_with_limit(
              in.ConsumeIntegralInRange<std::size_t>(0, 1 << 18)));
        }
        if (which == 0) {
          FUZZ_CHECK(child.given.empty(), "reset(free_all) kept chunks", nullptr,
                     child.given.size(), 0);
        }
        shadow.live.clear();
        limits();
      } else if (op == 5) {
        if (in.ConsumeBool()) {
          arena.set_ceiling(in.ConsumeIntegralInRange<std::size_t>(
              child.outstanding, std::max<std::size_t>(child.outstanding, 1 << 20)));
        } else {
          arena.set_ceiling(0);
        }
      } else if (shadow.live.empty()) {
        continue;
      } else if (op <= 7) {  // resize: mostly the newest block
        const std::size_t i = in.ConsumeBool()
            ? shadow.live.size() - 1
            : in.ConsumeIntegralInRange<std::size_t>(0, shadow.live.size() - 1);
        Block& b = shadow.live[i];
        shadow.check(b);
        const std::size_t new_len = in.ConsumeBool()
            ? in.ConsumeIntegralInRange<std::size_t>(1, b.len)
            : pick_len(in);
        if (a.raw_resize(Bytes(b.p, b.len), align_of(b), new_len, 0)) {
          resized(shadow, i, new_len);
        } else {
          shadow.check(b);
        }
        limits();
      } else if (op == 8) {  // free: mostly the newest block
        const std::size_t i = in.ConsumeBool()
            ? shadow.live.size() - 1
            : in.ConsumeIntegralInRange<std::size_t>(0, shadow.live.size() - 1);
        Block b = shadow.live[i];
        shadow.check(b);
        a.raw_free(Bytes(b.p, b.len), align_of(b), 0);
        shadow.live.erase(shadow.live.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        shadow.check_all();
        FUZZ_CHECK(arena.chunk_count() == child.given.size(), "chunk_count() wrong", nullptr,
                   arena.chunk_count(), child.given.size());
      }
    }
    shadow.check_all();
  }
  FUZZ_CHECK(child.given.empty(), "arena destructor leaked chunks", nullptr,
             child.given.size(), 0);
}

void fuzz_bump(FuzzedDataProvider& in) {
  const std::size_t offset = in.ConsumeIntegralInRange<std::size_t>(0, 64);
  const std::size_t cap = in.ConsumeIntegralInRange<std::size_t>(0, kBufferBytes - 64);
  std::byte* const base = g_buffer + offset;
  alloy::BumpAllocator bump(Bytes(base, cap));
  alloy::Allocator a = bump.allocator();
  Shadow shadow;
  std::uint8_t seed = 1;
  while (in.remaining_bytes() > 0) {
    const int op = in.ConsumeIntegralInRange<int>(0, 7);
    if (op <= 2 && shadow.live.size() < kMaxLive) {
      const std::size_t len = pick_len(in);
      const Alignment align = pick_align(in);
      const std::size_t used = bump.used();
      void* p = a.raw_alloc(len, align, 0);
      if (p == nullptr) {
        FUZZ_CHECK(bump.used() == used, "failed alloc moved the cursor", nullptr, used,
                   bump.used());
        continue;
      }
      auto* b = static_cast<std::byte*>(p);
      FUZZ_CHECK(b >= base && b + len <= base + cap, "block outside the buffer", p, len, cap);
      FUZZ_CHECK(bump.used() <= bump.capacity(), "used past capacity", p, bump.used(), cap);
      shadow.add(p, len, align.bytes(), seed++);
    } else if (op == 3) {
      bump.reset();
      FUZZ_CHECK(bump.used() == 0, "reset left bytes used", nullptr, bump.used(), 0);
      shadow.live.clear();
    } else if (shadow.live.empty()) {
      continue;
    } else if (op <= 5) {
      const std::size_t i = in.ConsumeBool()
          ? shadow.live.size() - 1
          : in.ConsumeIntegralInRange<std::size_t>(0, shadow.live.size() - 1);
      Block& b = shadow.live[i];
      shadow.check(b);
      const bool last = bump.is_last(Bytes(b.p, b.len));
      const std::size_t new_len = pick_len(in);
      if (a.raw_resize(Bytes(b.p, b.len), align_of(b), new_len, 0)) {
        FUZZ_CHECK(last || new_len <= b.len, "older block grew", b.p, b.len, new_len);
        FUZZ_CHECK(b.p + new_len <= base + cap, "resize past the buffer", b.p, new_len, cap);
        resized(shadow, i, new_len);
      } else {
        FUZZ_CHECK(new_len > b.len, "shrink refused", b.p, b.len, new_len);
        shadow.check(b);
      }
    } else if (op == 6) {
      const std::size_t i = in.ConsumeBool()
          ? shadow.live.size() - 1
          : in.ConsumeIntegralInRange<std::size_t>(0, shadow.live.size() - 1);
      Block b = shadow.live[i];
      shadow.check(b);
      const bool last = bump.is_last(Bytes(b.p, b.len));
      const std::size_t used = bump.used();
      a.raw_free(Bytes(b.p, b.len), align_of(b), 0);
      if (last) {
        FUZZ_CHECK(bump.used() <= used - b.len, "free of the last block did not rewind", b.p,
                   used, bump.used());
      } else {
        FUZZ_CHECK(bump.used() == used, "free of an older block moved the cursor", b.p, used,
                   bump.used());
      }
      shadow.live.erase(shadow.live.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      shadow.check_all();
    }
  }
  shadow.check_all();
}

void fuzz_stack(FuzzedDataProvider& in) {
  const std::size_t offset = in.ConsumeIntegralInRange<std::size_t>(0, 64);
  const std::size_t cap = in.ConsumeIntegralInRange<std::size_t>(0, kBufferBytes - 64);
  std::byte* const base = g_buffer + offset;
  alloy::StackAllocator stack(Bytes(base, cap));
  stack.set_report_to_stderr(false);
  alloy::Allocator a = stack.allocator();
  Shadow shadow;  // live[] in stack order: back() is the top
  struct Mark {
    std::size_t level;
    alloy::StackAllocator::Marker marker;
  };
  std::vector<Mark> marks;
  // Marks whose top block was freed, unwound or reset since: unwinding to
  // one must be refused, whatever was allocated at the same place since.
  std::vector<alloy::StackAllocator::Marker> stale;
  auto make_stale = [&](const Mark& m) {
    if (m.level > 0 && stale.size() < 64) stale.push_back(m.marker);
  };
  auto drop_marks_above = [&] {
    while (!marks.empty() && marks.back().level > shadow.live.size()) {
      make_stale(marks.back());
      marks.pop_back();
    }
  };
  std::uint8_t seed = 1;
  while (in.remaining_bytes() > 0) {
    const int op = in.ConsumeIntegralInRange<int>(0, 9);
    if (op <= 2 && shadow.live.size() < kMaxLive) {
      const std::size_t len = pick_len(in);
      const Alignment align = pick_align(in);
      const std::size_t used = stack.used();
      void* p = a.raw_alloc(len, align, 0);
      if (p == nullptr) {
        FUZZ_CHECK(stack.used() == used, "failed alloc moved the top", nullptr, used,
                   stack.used());
        continue;
      }
      auto* b = static_cast<std::byte*>(p);
      FUZZ_CHECK(b >= base && b + len <= base + cap, "block outside the buffer", p, len, cap);
      FUZZ_CHECK(stack.owns(p), "stack does not own its block", p, len, 0);
      shadow.add(p, len, align.bytes(), seed++);
    } else if (op == 3) {
      marks.push_back(Mark{shadow.live.size(), stack.mark()});
    } else if (op == 4 && !marks.empty()) {
      const std::size_t m = in.ConsumeIntegralInRange<std::size_t>(0, marks.size() - 1);
      const Mark mark = marks[m];
      FUZZ_CHECK(stack.unwind(mark.marker, 0), "valid unwind refused", nullptr, mark.level,
                 shadow.live.size());
      FUZZ_CHECK(stack.used() == mark.marker.offset, "unwind did not restore the top", nullptr,
                 stack.used(), mark.marker.offset);
      shadow.live.resize(mark.level);
      for (std::size_t k = m + 1; k < marks.size(); ++k) {
        if (marks[k].level > mark.level) make_stale(marks[k]);
      }
      marks.resize(m + 1);
      shadow.check_all();
    } else if (op == 5) {
      if (in.ConsumeBool()) {
        stack.reset();
        shadow.live.clear();
        for (const Mark& m : marks) make_stale(m);
        marks.clear();
        FUZZ_CHECK(stack.used() == 0, "reset left bytes used", nullptr, stack.used(), 0);
      }
    } else if (shadow.live.empty()) {
      continue;
    } else if (op <= 7) {  // free: the top must work, anything else is refused
      const std::size_t i = in.ConsumeBool()
          ? shadow.live.size() - 1
          : in.ConsumeIntegralInRange<std::size_t>(0, shadow.live.size() - 1);
      Block b = shadow.live[i];
      shadow.check(b);
      const std::size_t refused = stack.refused_count();
      const std::size_t used = stack.used();
      const bool ok = stack.free(Bytes(b.p, b.len), 0);
      if (i + 1 == shadow.live.size()) {
        FUZZ_CHECK(ok && stack.refused_count() == refused, "top free refused", b.p, b.len, 0);
        FUZZ_CHECK(stack.used() < used, "top free did not rewind", b.p, used, stack.used());
        shadow.live.pop_back();
        drop_marks_above();
        if (!marks.empty() && marks.back().level == shadow.live.size()) {
          FUZZ_CHECK(stack.used() == marks.back().marker.offset,
                     "free did not rewind to the previous top", b.p, stack.used(),
                     marks.back().marker.offset);
        }
      } else {
        FUZZ_CHECK(!ok && stack.refused_count() == refused + 1 &&
                       stack.last_error().kind ==
                           alloy::StackAllocator::ErrorKind::kOutOfOrderFree,
                   "out-of-order free not refused", b.p, b.len, i);
        FUZZ_CHECK(stack.used() == used, "refused free moved the top", b.p, used,
                   stack.used());
        shadow.check_all();
      }
    } else if (op == 8) {  // resize: top grows/shrinks in place
      const std::size_t i = in.ConsumeBool()
          ? shadow.live.size() - 1
          : in.ConsumeIntegralInRange<std::size_t>(0, shadow.live.size() - 1);
      Block& b = shadow.live[i];
      shadow.check(b);
      const std::size_t new_len = pick_len(in);
      if (a.raw_resize(Bytes(b.p, b.len), align_of(b), new_len, 0)) {
        FUZZ_CHECK(b.p + new_len <= base + cap, "resize past the buffer", b.p, new_len, cap);
        if (i + 1 == shadow.live.size()) {
          resized(shadow, i, new_len);
          // The top moved: marks taken above it are stale.
          while (!marks.empty() && marks.back().level >= shadow.live.size()) marks.pop_back();
        } else {
          // A shrink of an older block succeeds in place; the caller then owns
          // the shorter length and frees it with that length once it is the
          // top again (the stack finds blocks by their start).
          FUZZ_CHECK(new_len <= b.len, "older block grew", b.p, b.len, new_len);
          resized(shadow, i, new_len);
        }
      } else {
        shadow.check(b);
      }
    } else if (!stale.empty()) {  // op 9: a stale marker is refused, nothing moves
      const std::size_t k = in.ConsumeIntegralInRange<std::size_t>(0, stale.size() - 1);
      const std::size_t refused = stack.refused_count();
      const std::size_t used = stack.used();
      FUZZ_CHECK(!stack.unwind(stale[k], 0), "stale marker accepted", nullptr,
                 stale[k].offset, used);
      FUZZ_CHECK(stack.refused_count() == refused + 1, "stale marker not counted", nullptr,
                 refused, stack.refused_count());
      FUZZ_CHECK(stack.used() == used, "refused unwind moved the top", nullptr, used,
                 stack.used());
      shadow.check_all();
    } else {
      shadow.check_all();
    }
  }
  shadow.check_all();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  switch (in.ConsumeIntegralInRange<int>(0, 2)) {
    case 0: fuzz_arena(in); break;
    case 1: fuzz_bump(in); break;
    default: fuzz_stack(in); break;
  }
  return 0;
}
