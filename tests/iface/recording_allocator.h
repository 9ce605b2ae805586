// A test-only allocator over c_allocator() that records every call reaching
// the vtable and can be told to refuse allocations, so the suites can assert
// exactly what the typed helpers forwarded.
//
// Cost: a vector push per call. Thread safety: none (tests are single-threaded).
//
// Example:
//   RecordingAllocator rec;
//   auto s = rec.allocator().alloc<int>(4);
//   BOOST_TEST(rec.calls.size() == 1u);
//   rec.fail_allocs = true;            // every further alloc returns null
//   rec.allocator().free(*s);
#pragma once

#include <cstdint>
#include <vector>

#include "alloc_iface/allocator.h"
#include "allocators/c_allocator.h"

namespace alloy::testing {

struct RecordingAllocator {
  enum class Op { kAlloc, kResize, kRemap, kFree };
  struct Call {
    Op op;
    std::size_t len;      // requested (alloc) or current (others)
    std::size_t new_len;  // resize/remap
    Alignment alignment;
    std::uintptr_t ret_addr;
  };

  std::vector<Call> calls;
  bool fail_allocs = false;
  bool allow_resize = true;
  bool allow_remap = true;
  std::size_t live_bytes = 0;

  Allocator allocator() { return Allocator{this, &kVTable}; }

 private:
  static RecordingAllocator* self(void* ctx) { return static_cast<RecordingAllocator*>(ctx); }
  static Allocator child() { return c_allocator(); }

  static void* do_alloc(void* ctx, std::size_t len, Alignment a, std::uintptr_t ret) {
    auto* s = self(ctx);
    s->calls.push_back({Op::kAlloc, len, 0, a, ret});
    if (s->fail_allocs) return nullptr;
    void* p = child().raw_alloc(len, a, ret);
    if (p != nullptr) s->live_bytes += len;
    return p;
  }
  static bool do_resize(void* ctx, Bytes m, Alignment a, std::size_t n, std::uintptr_t ret) {
    auto* s = self(ctx);
    s->calls.push_back({Op::kResize, m.size(), n, a, ret});
    if (!s->allow_resize || !child().raw_resize(m, a, n, ret)) return false;
    s->live_bytes = s->live_bytes - m.size() + n;
    return true;
  }
  static void* do_remap(void* ctx, Bytes m, Alignment a, std::size_t n, std::uintptr_t ret) {
    auto* s = self(ctx);
    s->calls.push_back({Op::kRemap, m.size(), n, a, ret});
    if (!s->allow_remap) return nullptr;
    void* p = child().raw_remap(m, a, n, ret);
    if (p != nullptr) s->live_bytes = s->live_bytes - m.size() + n;
    return p;
  }
  static void do_free(void* ctx, Bytes m, Alignment a, std::uintptr_t ret) {
    auto* s = self(ctx);
    s->calls.push_back({Op::kFree, m.size(), 0, a, ret});
    s->live_bytes -= m.size();
    child().raw_free(m, a, ret);
  }
  static constexpr VTable kVTable = {do_alloc, do_resize, do_remap, do_free};
};

}  // namespace alloy::testing
