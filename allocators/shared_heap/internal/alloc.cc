// Allocation, free and resize inside the mapping; the vtable (see alloc.h).
#include "alloy/allocators/shared_heap/internal/alloc.h"

#include <cstdint>
#include <cstdio>
#include <string_view>

#include "alloy/alloc_iface/make_vtable.h"
#include "alloy/allocators/shared_heap/internal/lists.h"
#include "alloy/allocators/shared_heap/internal/recovery.h"
#include "alloy/allocators/shared_heap/internal/support.h"

namespace alloy::shared_heap_internal {
namespace {

u64 block_need(u64 len) {
  u64 n = kBlockHeader + round_up(len, kGranule);
  return n < kMinBlock ? kMinBlock : n;
}

// Front gap so that the payload of a block at off+gap is aligned; the gap is
// 0 or big enough to be a free block of its own.
u64 front_gap(u64 off, u64 align) {
  u64 gap = round_up(off + kBlockHeader, align) - (off + kBlockHeader);
  while (gap != 0 && gap < kMinBlock) gap += align;
  return gap;
}

}  // namespace

void* heap_alloc(Header* h, std::size_t len, Alignment alignment) {
  if (len == 0 || len > h->heap_end - h->heap_begin) return nullptr;
  const u64 align = alignment.bytes();
  if (align > SharedHeap::kMaxAlignment) return nullptr;
  HeapLock lock(h);
  if (!lock.ok()) return nullptr;
  const u64 need = block_need(len);
  const u64 search = align <= kGranule ? need : need + align + kMinBlock;
  u64 off = find_free(h, search);
  if (off == kDamagedList || (off != 0 && !bin_remove(h, off))) {
    // Repaired lists are whole again: look once more.
    off = repair(h) ? find_free(h, search) : 0;
    if (off == kDamagedList || (off != 0 && !bin_remove(h, off))) {
      __atomic_store_n(&h->state, kStateCorrupt, __ATOMIC_RELEASE);
      off = 0;
    }
  }
  u64 gap = 0, size = 0, final_size = 0;
  if (off != 0) {
    size = size_of(block(h, off));
    gap = align <= kGranule ? 0 : front_gap(off, align);
    final_size = size - gap - need >= kMinBlock ? need : size - gap;
  }
  if (off == 0 || h->c.bytes_in_use + final_size > h->cap) {
    if (off != 0) bin_push(h, off);  // unlinked above; put it back
    ++h->c.failed_allocs;
    return nullptr;
  }
  const u32 pid = static_cast<u32>(current_pid());
  h->intent.block = off;
  h->intent.pid = pid;
  __atomic_store_n(&h->intent.op, kOpAlloc, __ATOMIC_RELEASE);
  die_if(SharedHeap::DiePoint::kAllocAfterIntent);
  if (gap != 0) {
    // Cut the front gap off as a free block of its own.
    BlockHeader* g = block(h, off + gap);
    g->prev_size = gap;
    g->size_flags = size - gap;
    BlockHeader* f = block(h, off);
    commit(&f->size_flags, gap);
    bin_push(h, off);
    __atomic_store_n(&h->intent.block, off + gap, __ATOMIC_RELEASE);
    off += gap;
    size -= gap;
  }
  BlockHeader* b = block(h, off);
  if (final_size < size) {
    BlockHeader* r = block(h, off + final_size);
    r->prev_size = final_size;
    r->size_flags = size - final_size;
    die_if(SharedHeap::DiePoint::kAllocAfterSplit);
  }
  b->length = len;
  b->owner = pid;
  b->align_log2 = alignment.log2();
  commit(&b->size_flags, final_size | kLiveBit);
  die_if(SharedHeap::DiePoint::kAllocAfterCommit);
  if (final_size < size) {
    u64 r = off + final_size;
    block(h, off + size)->prev_size = size - final_size;
    bin_push(h, r);
  } else {
    block(h, off + size)->prev_size = size;  // the front gap may have moved us
  }
  bit_set(h, off);
  h->c.bytes_in_use += final_size;
  h->c.payload_bytes += len;
  ++h->c.live_blocks;
  ++h->c.allocs;
  if (h->c.bytes_in_use > h->c.peak_bytes_in_use) h->c.peak_bytes_in_use = h->c.bytes_in_use;
  __atomic_store_n(&h->intent.op, kOpNone, __ATOMIC_RELEASE);
  return base_of(h) + off + kBlockHeader;
}


namespace {

// Where a payload pointer's block would be: kFreed and *off, or why not.
SharedFreeStatus block_of_pointer(Header* h, const void* p, u64* off) {
  auto addr = reinterpret_cast<std::uintptr_t>(p);
  auto base = reinterpret_cast<std::uintptr_t>(h);
  if (addr < base + h->heap_begin + kBlockHeader || addr >= base + h->heap_end) {
    return SharedFreeStatus::kNotInHeap;
  }
  *off = addr - base - kBlockHeader;
  if ((*off - h->heap_begin) % kGranule != 0) return SharedFreeStatus::kNotABlock;
  return SharedFreeStatus::kFreed;
}

// Checks that `off` is a live block of exactly (len, alignment). Lock held.
SharedFreeStatus check_live(Header* h, u64 off, std::size_t len, Alignment alignment) {
  if (!bit_test(h, off) || !is_live(block(h, off))) return SharedFreeStatus::kNotABlock;
  const BlockHeader* b = block(h, off);
  if (!sane_size(h, off, size_of(b)) || b->length > size_of(b) - kBlockHeader) {
    return SharedFreeStatus::kNotABlock;  // its header was overwritten
  }
  if (b->length != len || b->align_log2 != alignment.log2()) {
    return SharedFreeStatus::kWrongSize;
  }
  return SharedFreeStatus::kFreed;
}

// The block is already marked free in the chain; a rebuild lists and merges it.
SharedFreeStatus finish_by_repair(Header* h) {
  bool ok = repair(h);
  __atomic_store_n(&h->intent.op, kOpNone, __ATOMIC_RELEASE);
  return ok ? SharedFreeStatus::kFreed : SharedFreeStatus::kHeapUnusable;
}

}  // namespace

SharedFreeStatus heap_free(Header* h, void* p, std::size_t len, Alignment alignment) {
  u64 off = 0;
  SharedFreeStatus st = block_of_pointer(h, p, &off);
  HeapLock lock(h);
  if (!lock.ok()) return SharedFreeStatus::kHeapUnusable;
  if (st == SharedFreeStatus::kFreed) st = check_live(h, off, len, alignment);
  if (st != SharedFreeStatus::kFreed) {
    ++h->c.rejected_frees;
    return st;
  }
  h->intent.block = off;
  h->intent.pid = static_cast<u32>(current_pid());
  __atomic_store_n(&h->intent.op, kOpFree, __ATOMIC_RELEASE);
  BlockHeader* b = block(h, off);
  u64 size = size_of(b);
  bit_clear(h, off);
  h->c.bytes_in_use -= size;
  h->c.payload_bytes -= b->length;
  --h->c.live_blocks;
  ++h->c.frees;
  commit(&b->size_flags, size);
  die_if(SharedHeap::DiePoint::kFreeAfterMarkFree);
  // Merge with the block above.
  BlockHeader* next = block(h, off + size);
  if (!is_live(next) && sane_size(h, off + size, size_of(next))) {
    if (!bin_remove(h, off + size)) return finish_by_repair(h);
    size += size_of(next);
    commit(&b->size_flags, size);
  }
  die_if(SharedHeap::DiePoint::kFreeAfterCoalesce);
  // Merge with the block below.
  if (b->prev_size != 0 && b->prev_size <= off - h->heap_begin) {
    u64 prev = off - b->prev_size;
    BlockHeader* pb = block(h, prev);
    if (!is_live(pb) && size_of(pb) == b->prev_size) {
      if (!bin_remove(h, prev)) return finish_by_repair(h);
      size += size_of(pb);
      commit(&pb->size_flags, size);
      off = prev;
    }
  }
  block(h, off + size)->prev_size = size;
  bin_push(h, off);
  __atomic_store_n(&h->intent.op, kOpNone, __ATOMIC_RELEASE);
  return SharedFreeStatus::kFreed;
}

bool heap_resize(Header* h, void* p, std::size_t len, Alignment alignment,
                 std::size_t new_len) {
  u64 off = 0;
  if (new_len > h->heap_end - h->heap_begin) return false;  // also keeps block_need exact
  if (block_of_pointer(h, p, &off) != SharedFreeStatus::kFreed) return false;
  HeapLock lock(h);
  if (!lock.ok() || check_live(h, off, len, alignment) != SharedFreeStatus::kFreed) {
    return false;
  }
  BlockHeader* b = block(h, off);
  const u64 size = size_of(b);
  const u64 need = block_need(new_len);
  if (need <= size) {
    b->length = new_len;  // shrink: length first, so length <= size always
    h->c.payload_bytes = h->c.payload_bytes - len + new_len;
    if (size - need < kMinBlock) return true;
    u64 r = off + need, rsize = size - need;
    BlockHeader* rb = block(h, r);
    rb->prev_size = need;
    rb->size_flags = rsize;
    commit(&b->size_flags, need | kLiveBit);
    BlockHeader* next = block(h, off + size);
    h->c.bytes_in_use -= size - need;
    if (!is_live(next) && sane_size(h, off + size, size_of(next))) {
      if (!bin_remove(h, off + size)) return repair(h);  // lists and merges R
      rsize += size_of(next);
      commit(&rb->size_flags, rsize);
    }
    block(h, r + rsize)->prev_size = rsize;
    bin_push(h, r);
    return true;
  }
  // Grow into a free block above.
  u64 n = off + size;
  BlockHeader* next = block(h, n);
  if (is_live(next) || !sane_size(h, n, size_of(next)) || size + size_of(next) < need) {
    return false;
  }
  u64 total = size + size_of(next);
  u64 final_size = total - need >= kMinBlock ? need : total;
  if (h->c.bytes_in_use + (final_size - size) > h->cap) return false;
  if (!bin_remove(h, n)) {
    (void)repair(h);
    return false;
  }
  commit(&b->size_flags, total | kLiveBit);  // absorb the whole neighbour
  if (final_size < total) {
    BlockHeader* rb = block(h, off + final_size);  // inside our payload now
    rb->prev_size = final_size;
    rb->size_flags = total - final_size;
    commit(&b->size_flags, final_size | kLiveBit);
    block(h, off + total)->prev_size = total - final_size;
    bin_push(h, off + final_size);
  } else {
    block(h, off + total)->prev_size = total;
  }
  b->length = new_len;  // grow: length last
  h->c.payload_bytes = h->c.payload_bytes - len + new_len;
  h->c.bytes_in_use += final_size - size;
  if (h->c.bytes_in_use > h->c.peak_bytes_in_use) h->c.peak_bytes_in_use = h->c.bytes_in_use;
  return true;
}

// ---- The vtable ----

namespace {

// The handle's entries; no remap (blocks never move cheaply).
struct Entries {
  static void* vt_alloc(void* ctx, std::size_t len, Alignment alignment, std::uintptr_t) {
    return heap_alloc(static_cast<Header*>(ctx), len, alignment);
  }
  static bool vt_resize(void* ctx, Bytes memory, Alignment alignment, std::size_t new_len,
                        std::uintptr_t) {
    return heap_resize(static_cast<Header*>(ctx), memory.data(), memory.size(), alignment,
                       new_len);
  }
  static void vt_free(void* ctx, Bytes memory, Alignment alignment, std::uintptr_t ret_addr) {
    SharedFreeStatus st =
        heap_free(static_cast<Header*>(ctx), memory.data(), memory.size(), alignment);
    if (st != SharedFreeStatus::kFreed) {
      std::string_view why = to_string(st);
      std::fprintf(stderr,
                   "alloy::SharedHeap: refused free of %p (%zu bytes, alignment %zu) "
                   "called from %#lx: %.*s\n",
                   static_cast<void*>(memory.data()), memory.size(), alignment.bytes(),
                   static_cast<unsigned long>(ret_addr), static_cast<int>(why.size()),
                   why.data());
    }
  }
};

}  // namespace

constexpr VTable kVTable = make_vtable<Entries>();

}  // namespace alloy::shared_heap_internal

namespace alloy {

std::string_view to_string(SharedFreeStatus s) {
  switch (s) {
    case SharedFreeStatus::kFreed: return "freed";
    case SharedFreeStatus::kNotInHeap: return "pointer is not in this shared heap";
    case SharedFreeStatus::kNotABlock:
      return "not a live block of this shared heap (double free?)";
    case SharedFreeStatus::kWrongSize: return "length or alignment differs from the allocation";
    case SharedFreeStatus::kHeapUnusable: return "shared heap is unusable";
  }
  return "unknown";
}

}  // namespace alloy
