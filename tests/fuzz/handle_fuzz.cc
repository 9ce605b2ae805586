// libFuzzer target: the typed helpers of alloy::Allocator (alloc, alloc_aligned,
// realloc, resize, dupe, create/destroy, free) over page_allocator() and
// c_allocator(), and alloy::Vec<T> checked element by element against
// std::vector. Run: tools/fuzz handle_fuzz
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "alloy/alloc_iface/vec.h"
#include "alloy/allocators/c_allocator.h"
#include "alloy/allocators/page_allocator.h"
#include "tests/fuzz/shadow.h"

namespace {

using alloy::Alignment;
using alloy::fuzz::Block;
using alloy::fuzz::check_prefix;
using alloy::fuzz::fill;
using alloy::fuzz::Shadow;

constexpr std::size_t kMaxLive = 64;
constexpr std::size_t kMaxVec = 4096;

enum Kind : unsigned char { kWords, kAligned, kChars, kObject };

struct alignas(32) Object {
  std::uint64_t words[5];
};

std::size_t pick_count(FuzzedDataProvider& in) {
  return in.ConsumeBool() ? in.ConsumeIntegralInRange<std::size_t>(0, 64)
                          : in.ConsumeIntegralInRange<std::size_t>(0, 20000);
}

struct Handles {
  alloy::Allocator a;
  Shadow shadow;
  std::vector<Kind> kinds;  // parallel to shadow.live
  std::uint8_t seed = 1;

  void add(void* p, std::size_t len, std::size_t align, Kind kind) {
    shadow.add(p, len, align, seed++);
    kinds.push_back(kind);
  }
  void remove(std::size_t i) {
    shadow.remove(i);
    kinds[i] = kinds.back();
    kinds.pop_back();
  }
  void free_one(std::size_t i) {
    const Block b = shadow.live[i];
    shadow.check(b);
    switch (kinds[i]) {
      case kWords:
        a.free(std::span<std::uint32_t>(reinterpret_cast<std::uint32_t*>(b.p), b.len / 4));
        break;
      case kAligned:
        a.free_aligned(std::span<std::byte>(b.p, b.len), Alignment::from_bytes(b.align).value());
        break;
      case kChars:
        a.free(std::span<char>(reinterpret_cast<char*>(b.p), b.len));
        break;
      case kObject:
        a.destroy(reinterpret_cast<Object*>(b.p));
        break;
    }
    remove(i);
  }

  void step(FuzzedDataProvider& in) {
    const int op = in.ConsumeIntegralInRange<int>(0, 9);
    if (op <= 3 && shadow.live.size() < kMaxLive) {
      if (op == 0) {
        const std::size_t n = pick_count(in);
        auto r = a.alloc<std::uint32_t>(n);
        FUZZ_CHECK(r.ok(), "alloc<u32> failed", nullptr, n, 0);
        FUZZ_CHECK(r->size() == n, "alloc<u32> wrong count", r->data(), r->size(), n);
        if (n > 0) add(r->data(), n * 4, 4, kWords);
      } else if (op == 1) {
        const std::size_t n = pick_count(in);
        const std::size_t align = std::size_t{1} << in.ConsumeIntegralInRange<int>(0, 13);
        auto r = a.alloc_aligned<std::byte>(n, align);
        FUZZ_CHECK(r.ok(), "alloc_aligned failed", nullptr, n, align);
        FUZZ_CHECK(reinterpret_cast<std::uintptr_t>(r->data()) % align == 0,
                   "alloc_aligned misaligned (even when empty)", r->data(), n, align);
        if (n > 0) add(r->data(), n, align, kAligned);
      } else if (op == 2) {
        const std::string s = in.ConsumeRandomLengthString(300);
        auto r = in.ConsumeBool() ? a.dupe(std::string_view(s)) : a.dupe_z(std::string_view(s));
        FUZZ_CHECK(r.ok(), "dupe failed", nullptr, s.size(), 0);
        FUZZ_CHECK(r->size() >= s.size() && std::equal(s.begin(), s.end(), r->data()),
                   "dupe copied wrong", r->data(), r->size(), s.size());
        if (!r->empty()) add(r->data(), r->size(), 1, kChars);
      } else {
        auto r = a.create<Object>();
        FUZZ_CHECK(r.ok(), "create failed", nullptr, sizeof(Object), 0);
        add(*r, sizeof(Object), alignof(Object), kObject);
      }
      return;
    }
    if (shadow.live.empty()) return;
    const std::size_t i = in.ConsumeIntegralInRange<std::size_t>(0, shadow.live.size() - 1);
    Block& b = shadow.live[i];
    if (op <= 5) {
      free_one(i);
    } else if (op <= 7 && kinds[i] == kWords) {  // realloc / resize of words
      shadow.check(b);
      const std::size_t n = pick_count(in);
      std::span<std::uint32_t> old(reinterpret_cast<std::uint32_t*>(b.p), b.len / 4);
      if (op == 6) {
        auto r = a.realloc(old, n);
        FUZZ_CHECK(r.ok(), "realloc failed", b.p, b.len, n);
        FUZZ_CHECK(r->size() == n, "realloc wrong count", r->data(), r->size(), n);
        if (n == 0) {
          remove(i);
          return;
        }
        auto* p = reinterpret_cast<std::byte*>(r->data());
        FUZZ_CHECK(reinterpret_cast<std::uintptr_t>(p) % 4 == 0, "realloc misaligned", p, n, 4);
        shadow.no_overlap(p, n * 4, i);
        check_prefix(p, std::min(b.len, n * 4), b.seed);
        fill(p, b.len, n * 4, b.seed);
        b.p = p;
        b.len = n * 4;
      } else if (a.resize(old, n)) {
        FUZZ_CHECK(n > 0, "resize to zero succeeded", b.p, b.len, n);
        shadow.no_overlap(b.p, n * 4, i);
        check_prefix(b.p, std::min(b.len, n * 4), b.seed);
        fill(b.p, b.len, n * 4, b.seed);
        b.len = n * 4;
      } else {
        shadow.check(b);
      }
    } else {
      shadow.check_all();
    }
  }
};

void check_vec(const alloy::Vec<std::uint32_t>& v, const std::vector<std::uint32_t>& model) {
  FUZZ_CHECK(v.size() == model.size(), "Vec size differs", v.data(), v.size(), model.size());
  FUZZ_CHECK(v.capacity() >= v.size(), "Vec capacity below size", v.data(), v.capacity(),
             v.size());
  FUZZ_CHECK(reinterpret_cast<std::uintptr_t>(v.data()) % alignof(std::uint32_t) == 0,
             "Vec data misaligned", v.data(), 0, 0);
  for (std::size_t i = 0; i < model.size(); ++i) {
    FUZZ_CHECK(v[i] == model[i], "Vec element differs", v.data(), i, model.size());
  }
}

void vec_step(FuzzedDataProvider& in, alloy::Vec<std::uint32_t>& v,
              std::vector<std::uint32_t>& model) {
  const auto value = in.ConsumeIntegral<std::uint32_t>();
  const std::size_t index = model.empty() ? 0 : in.ConsumeIntegralInRange<std::size_t>(0, model.size() - 1);
  switch (in.ConsumeIntegralInRange<int>(0, 11)) {
    case 0: case 1:
      if (model.size() < kMaxVec) {
        FUZZ_CHECK(v.try_push(value).ok(), "push failed", nullptr, model.size(), 0);
        model.push_back(value);
      }
      break;
    case 2: {
      auto got = v.pop();
      FUZZ_CHECK(got.has_value() == !model.empty(), "pop emptiness wrong", nullptr, 0, 0);
      if (got) {
        FUZZ_CHECK(*got == model.back(), "pop value wrong", nullptr, *got, model.back());
        model.pop_back();
      }
      break;
    }
    case 3: {
      const std::size_t at = in.ConsumeIntegralInRange<std::size_t>(0, model.size());
      if (model.size() < kMaxVec) {
        FUZZ_CHECK(v.try_insert(at, value).ok(), "insert failed", nullptr, at, 0);
        model.insert(model.begin() + static_cast<std::ptrdiff_t>(at), value);
      }
      break;
    }
    case 4:
      if (!model.empty()) {
        FUZZ_CHECK(v.remove(index) == model[index], "remove value wrong", nullptr, index, 0);
        model.erase(model.begin() + static_cast<std::ptrdiff_t>(index));
      }
      break;
    case 5:
      if (!model.empty()) {
        FUZZ_CHECK(v.swap_remove(index) == model[index], "swap_remove value wrong", nullptr,
                   index, 0);
        model[index] = model.back();
        model.pop_back();
      }
      break;
    case 6: {
      const std::size_t extra = in.ConsumeIntegralInRange<std::size_t>(0, kMaxVec);
      const bool exact = in.ConsumeBool();
      FUZZ_CHECK((exact ? v.try_reserve_exact(extra) : v.try_reserve(extra)).ok(),
                 "reserve failed", nullptr, extra, 0);
      FUZZ_CHECK(v.capacity() >= model.size() + extra, "reserve gave too little", nullptr,
                 v.capacity(), model.size() + extra);
      break;
    }
    case 7: {
      const std::size_t n = in.ConsumeIntegralInRange<std::size_t>(0, kMaxVec);
      FUZZ_CHECK(v.try_resize(n, value).ok(), "resize failed", nullptr, n, 0);
      model.resize(n, value);
      break;
    }
    case 8:
      v.shrink_to_fit();
      FUZZ_CHECK(v.capacity() >= v.size(), "shrink below size", nullptr, v.capacity(), v.size());
      break;
    case 9: {
      const std::size_t n = in.ConsumeIntegralInRange<std::size_t>(0, model.size());
      v.truncate(n);
      model.resize(n);
      break;
    }
    case 10: {
      std::vector<std::uint32_t> items(in.ConsumeIntegralInRange<std::size_t>(0, 64), value);
      if (model.size() + items.size() <= kMaxVec) {
        FUZZ_CHECK(v.try_append(std::span<const std::uint32_t>(items)).ok(), "append failed",
                   nullptr, items.size(), 0);
        model.insert(model.end(), items.begin(), items.end());
      }
      break;
    }
    default: {
      auto clone = v.try_clone();
      FUZZ_CHECK(clone.ok(), "clone failed", nullptr, model.size(), 0);
      check_vec(*clone, model);
      if (in.ConsumeBool()) {
        v = std::move(*clone);
      }
      break;
    }
  }
  check_vec(v, model);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  const alloy::Allocator a = in.ConsumeBool() ? alloy::c_allocator() : alloy::page_allocator();
  if (in.ConsumeBool()) {
    Handles h;
    h.a = a;
    while (in.remaining_bytes() > 0) h.step(in);
    h.shadow.check_all();
    while (!h.shadow.live.empty()) h.free_one(h.shadow.live.size() - 1);
  } else {
    alloy::Vec<std::uint32_t> v(a);
    std::vector<std::uint32_t> model;
    while (in.remaining_bytes() > 0) vec_step(in, v, model);
  }
  return 0;
}
