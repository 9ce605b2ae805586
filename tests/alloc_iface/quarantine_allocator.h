// A test allocator over c_allocator() that never reuses memory: a freed block
// is filled with 0xDB and kept until the allocator dies, so a read of freed
// memory sees garbage even without ASan (and ASan, which still sees the block
// as live, is not needed to catch it). resize always refuses, so every growth
// moves; remap (when allowed) moves too, poisoning the old block.
//
// Cost: a vector push per free. Thread safety: none.
//
// Example:
//   QuarantineAllocator q;
//   alloy::Vec<int> v(q.allocator());
//   ... v.try_push(v[0]) ...           // a stale read would see 0xDBDBDBDB
#pragma once

#include <cstring>
#include <vector>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/alloc_iface/make_vtable.h"
#include "alloy/allocators/c_allocator.h"

namespace alloy::testing {

struct QuarantineAllocator {
  static constexpr unsigned char kPoison = 0xDB;
  bool allow_remap = false;
  std::size_t moves = 0;  // blocks poisoned by free or remap
  std::vector<alloy::Bytes> quarantine;

  ~QuarantineAllocator() {
    for (auto b : quarantine) alloy::c_allocator().raw_free(b, kAlign, 0);
  }
  alloy::Allocator allocator() { return alloy::Allocator{this, &alloy::vtable_for<QuarantineAllocator>}; }

 private:
  ALLOY_VTABLE_ENTRIES;
  // One alignment for everything keeps the sized frees to c_allocator simple.
  static constexpr alloy::Alignment kAlign = alloy::Alignment::from_log2(6);
  static QuarantineAllocator* self(void* ctx) { return static_cast<QuarantineAllocator*>(ctx); }

  void retire(alloy::Bytes m) {
    std::memset(m.data(), kPoison, m.size());
    quarantine.push_back(m);
    ++moves;
  }
  static void* vt_alloc(void*, std::size_t len, alloy::Alignment, std::uintptr_t ret) {
    return alloy::c_allocator().raw_alloc(len, kAlign, ret);
  }
  static bool vt_resize(void*, alloy::Bytes, alloy::Alignment, std::size_t, std::uintptr_t) {
    return false;
  }
  static void* vt_remap(void* ctx, alloy::Bytes m, alloy::Alignment, std::size_t n,
                        std::uintptr_t ret) {
    auto* s = self(ctx);
    if (!s->allow_remap) return nullptr;
    void* p = alloy::c_allocator().raw_alloc(n, kAlign, ret);
    if (p == nullptr) return nullptr;
    std::memcpy(p, m.data(), std::min(n, m.size()));
    s->retire(m);
    return p;
  }
  static void vt_free(void* ctx, alloy::Bytes m, alloy::Alignment, std::uintptr_t) {
    self(ctx)->retire(m);
  }
};

}  // namespace alloy::testing
