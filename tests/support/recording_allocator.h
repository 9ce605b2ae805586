// A test-only allocator over c_allocator() that records every call reaching
// the vtable, counts what succeeded, and can be told to refuse allocations
// (and growth), so the suites can assert exactly what the typed helpers and
// the allocators built on a child forwarded to it.
//
// Cost: a vector push per call. Thread safety: none (tests are single-threaded).
//
// Example:
//   RecordingAllocator rec;
//   auto s = rec.allocator().alloc<int>(4);
//   BOOST_TEST(rec.calls.size() == 1u);
//   rec.refuse(true);                  // allocs and growth fail from now on
//   rec.allocator().free(*s);          // rec.allocs == 1, rec.frees == 1
#pragma once

#include <cstdint>
#include <vector>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/alloc_iface/make_vtable.h"
#include "alloy/allocators/c_allocator.h"

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
  bool fail_growth = false;  // resize/remap to a larger size fails
  bool allow_resize = true;
  bool allow_remap = true;
  std::size_t live_bytes = 0;
  std::size_t allocs = 0;  // allocs that succeeded
  std::size_t frees = 0;

  // A child that has run out: allocations and growth fail (shrinks work).
  void refuse(bool on) { fail_allocs = fail_growth = on; }

  Allocator allocator() { return Allocator{this, &vtable_for<RecordingAllocator>}; }

 private:
  ALLOY_VTABLE_ENTRIES;
  static RecordingAllocator* self(void* ctx) { return static_cast<RecordingAllocator*>(ctx); }
  static Allocator child() { return c_allocator(); }

  static void* vt_alloc(void* ctx, std::size_t len, Alignment a, std::uintptr_t ret) {
    auto* s = self(ctx);
    s->calls.push_back({Op::kAlloc, len, 0, a, ret});
    if (s->fail_allocs) return nullptr;
    void* p = child().raw_alloc(len, a, ret);
    if (p != nullptr) {
      s->live_bytes += len;
      ++s->allocs;
    }
    return p;
  }
  static bool vt_resize(void* ctx, Bytes m, Alignment a, std::size_t n, std::uintptr_t ret) {
    auto* s = self(ctx);
    s->calls.push_back({Op::kResize, m.size(), n, a, ret});
    if (!s->allow_resize || (s->fail_growth && n > m.size())) return false;
    if (!child().raw_resize(m, a, n, ret)) return false;
    s->live_bytes = s->live_bytes - m.size() + n;
    return true;
  }
  static void* vt_remap(void* ctx, Bytes m, Alignment a, std::size_t n, std::uintptr_t ret) {
    auto* s = self(ctx);
    s->calls.push_back({Op::kRemap, m.size(), n, a, ret});
    if (!s->allow_remap || (s->fail_growth && n > m.size())) return nullptr;
    void* p = child().raw_remap(m, a, n, ret);
    if (p != nullptr) s->live_bytes = s->live_bytes - m.size() + n;
    return p;
  }
  static void vt_free(void* ctx, Bytes m, Alignment a, std::uintptr_t ret) {
    auto* s = self(ctx);
    s->calls.push_back({Op::kFree, m.size(), 0, a, ret});
    s->live_bytes -= m.size();
    ++s->frees;
    child().raw_free(m, a, ret);
  }
};

}  // namespace alloy::testing
