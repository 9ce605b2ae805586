#include "alloy/allocators/virtual_arena.h"

#include <sys/mman.h>

#include <algorithm>

#include "alloy/alloc_iface/make_vtable.h"
#include "alloy/allocators/page_allocator.h"
#include "alloy/allocators/wrong_free.h"

namespace alloy {
namespace {

struct VirtualArenaEntries {
  static void* vt_alloc(void* ctx, std::size_t len, Alignment alignment, std::uintptr_t) {
    return static_cast<VirtualArena*>(ctx)->alloc_inline(len, alignment.bytes());
  }
  static bool vt_resize(void* ctx, Bytes memory, Alignment, std::size_t new_len, std::uintptr_t) {
    return static_cast<VirtualArena*>(ctx)->resize_last(memory, new_len);
  }
  static void* vt_remap(void* ctx, Bytes memory, Alignment, std::size_t new_len, std::uintptr_t) {
    // Pointers never move: remap is resize in place or nothing.
    return static_cast<VirtualArena*>(ctx)->resize_last(memory, new_len) ? memory.data()
                                                                           : nullptr;
  }
  static void vt_free(void* ctx, Bytes memory, Alignment, std::uintptr_t ret_addr) {
    static_cast<VirtualArena*>(ctx)->free_last(memory, ret_addr);
  }
  static Ownership vt_owns(void* ctx, const void* p) {
    return ownership(static_cast<VirtualArena*>(ctx)->owns(p));
  }
};

std::uintptr_t round_up(std::uintptr_t v, std::size_t to) { return (v + to - 1) / to * to; }

}  // namespace

VirtualArena::VirtualArena(Options options)
    : granule_(round_up(std::max(options.commit_granule, page_size()), page_size())) {
  const std::size_t size = round_up(options.reserve, page_size());
  if (size == 0) return;
  void* p = mmap(nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (p == MAP_FAILED) return;
  base_ = reinterpret_cast<std::uintptr_t>(p);
  reserved_ = size;
  cur_ = committed_end_ = base_;
}

VirtualArena::~VirtualArena() {
  if (base_ != 0) munmap(reinterpret_cast<void*>(base_), reserved_);
}

Allocator VirtualArena::allocator() { return Allocator{this, &vtable_for<VirtualArenaEntries>}; }

bool VirtualArena::commit_to(std::uintptr_t end) {
  if (end <= committed_end_) return true;
  const std::uintptr_t limit = base_ + reserved_;
  if (end > limit) return false;
  const std::uintptr_t new_end =
      std::min<std::uintptr_t>(base_ + round_up(end - base_, granule_), limit);
  if (mprotect(reinterpret_cast<void*>(committed_end_), new_end - committed_end_,
               PROT_READ | PROT_WRITE) != 0) {
    return false;  // e.g. out of commit charge: nothing changed
  }
  committed_end_ = new_end;
  return true;
}

void* VirtualArena::alloc_slow(std::size_t len, std::size_t align) {
  if (base_ == 0) return nullptr;
  const std::uintptr_t limit = base_ + reserved_;
  const std::uintptr_t p = (cur_ + (align - 1)) & ~(std::uintptr_t{align} - 1);
  if (p < cur_ || p > limit || len > limit - p) return nullptr;
  if (!commit_to(p + len)) return nullptr;
  cur_ = p + len;
  return reinterpret_cast<void*>(p);
}

bool VirtualArena::resize_last(Bytes memory, std::size_t new_len) {
  const auto start = reinterpret_cast<std::uintptr_t>(memory.data());
  if (start + memory.size() != cur_) return new_len <= memory.size();
  if (new_len > base_ + reserved_ - start) return false;
  if (!commit_to(start + new_len)) return false;
  cur_ = start + new_len;
  return true;
}

void VirtualArena::free_last(Bytes memory, std::uintptr_t ret_addr) {
  const auto start = reinterpret_cast<std::uintptr_t>(memory.data());
  WrongFree wrong = WrongFree::kForeign;
  if (owns(memory.data())) {
    if (bump_apply_free(start, memory.size(), cur_)) return;
    wrong = WrongFree::kDouble;
  }
  ++refused_;
  refuse_bump_free("alloy::VirtualArena", wrong, memory.data(), memory.size(), ret_addr);
}

bool VirtualArena::reset(ResetMode mode) {
  cur_ = base_;
  if (base_ == 0 || mode.kind == ResetMode::Kind::kRetainCapacity) return true;
  std::size_t keep = 0;
  if (mode.kind == ResetMode::Kind::kRetainWithLimit) {
    keep = std::min<std::size_t>(round_up(mode.limit, page_size()), committed());
  }
  const std::uintptr_t from = base_ + keep;
  if (from < committed_end_) {
    void* p = reinterpret_cast<void*>(from);
    const std::size_t len = committed_end_ - from;
    madvise(p, len, MADV_DONTNEED);  // drop the pages now
    mprotect(p, len, PROT_NONE);     // and make stale use fault
    committed_end_ = from;
  }
  return true;
}

}  // namespace alloy
