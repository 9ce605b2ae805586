// alloy::SharedHeap implementation.
//
// This file holds the public surface that is neither mapping nor the
// allocation path: error names, the ceiling, stats, visit, roots, verify and the
// test hooks. The rest lives in its own units:
//   internal/layout.h     the on-shm format (versioned), its invariants
//   internal/header_io.*  writing a fresh header, checking a mapped one
//   internal/lists.h      the live-block bitmap and the segregated free lists
//   internal/recovery.*   crash consistency, rebuild, the robust lock
//   internal/alloc.*      alloc, free, resize and the Allocator vtable
//   internal/support.*    errors, test die points, the cached pid
//   mapping.cc            names, shm_open/memfd, mmap, create/attach/detach
#include "alloy/allocators/shared_heap/shared_heap.h"

#include <time.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "alloy/allocators/shared_heap/internal/alloc.h"
#include "alloy/allocators/shared_heap/internal/header_io.h"
#include "alloy/allocators/shared_heap/internal/layout.h"
#include "alloy/allocators/shared_heap/internal/lists.h"
#include "alloy/allocators/shared_heap/internal/recovery.h"
#include "alloy/allocators/shared_heap/internal/support.h"

namespace alloy {

using namespace shared_heap_internal;  // NOLINT(build/namespaces): this library's own machinery

// ---- Public ----

std::string_view to_string(SharedHeapErrc code) {
  switch (code) {
    case SharedHeapErrc::kInvalidName: return "invalid name";
    case SharedHeapErrc::kInvalidArgument: return "invalid argument";
    case SharedHeapErrc::kExists: return "already exists";
    case SharedHeapErrc::kNotFound: return "not found";
    case SharedHeapErrc::kSystem: return "system error";
    case SharedHeapErrc::kTooSmall: return "too small to be a shared heap";
    case SharedHeapErrc::kBadMagic: return "not an alloy shared heap";
    case SharedHeapErrc::kBadVersion: return "wrong format version";
    case SharedHeapErrc::kBadLayout: return "wrong header layout";
    case SharedHeapErrc::kCorruptHeader: return "corrupt header";
    case SharedHeapErrc::kNotReady: return "not initialised";
    case SharedHeapErrc::kDestroyed: return "destroyed";
    case SharedHeapErrc::kTooManyProcesses: return "too many attached processes";
    case SharedHeapErrc::kHeapCorrupt: return "heap corrupt";
    case SharedHeapErrc::kLockFailed: return "lock failed";
    case SharedHeapErrc::kRootNotFound: return "root not found";
    case SharedHeapErrc::kRootTableFull: return "root table full";
    case SharedHeapErrc::kDetached: return "not attached";
  }
  return "unknown shared heap error";
}

namespace shared_heap_detail {
void value_on_error(const SharedHeapError& e) {
  std::fprintf(stderr, "alloy: SharedResult::value() on an error: %s\n", e.message);
  std::abort();
}
}  // namespace shared_heap_detail

Allocator SharedHeap::allocator() const { return Allocator{base_, &kVTable}; }

namespace {
// A walk met a malformed block: from now on the heap refuses work.
SharedHeapError chain_error(Header* h, u64 off) {
  __atomic_store_n(&h->state, kStateCorrupt, __ATOMIC_RELEASE);
  return make_error(SharedHeapErrc::kHeapCorrupt, 0,
                    "malformed block header at offset %llu (overwritten?); the heap is "
                    "now marked corrupt",
                    static_cast<unsigned long long>(off));
}

SharedHeapError detached_error() {
  return make_error(SharedHeapErrc::kDetached, 0, "the SharedHeap is not attached");
}
}  // namespace

SharedResult<void> SharedHeap::set_ceiling(std::size_t bytes) {
  if (base_ == nullptr) return detached_error();
  auto* h = reinterpret_cast<Header*>(base_);
  HeapLock lock(h);
  if (!lock.ok()) return lock.error();
  u64 heap = h->heap_end - h->heap_begin;
  h->cap = bytes < heap ? bytes : heap;
  return {};
}

SharedResult<SharedHeapStats> SharedHeap::stats() const {
  if (base_ == nullptr) return detached_error();
  auto* h = reinterpret_cast<Header*>(base_);
  HeapLock lock(h);
  if (!lock.ok()) return lock.error();
  SharedHeapStats s;
  s.mapping_bytes = h->mapping_bytes;
  s.heap_bytes = h->heap_end - h->heap_begin;
  s.ceiling_bytes = h->cap;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  s.cap_bytes = h->cap;  // the old name, for one release
#pragma GCC diagnostic pop
  s.bytes_in_use = h->c.bytes_in_use;
  s.payload_bytes = h->c.payload_bytes;
  s.peak_bytes_in_use = h->c.peak_bytes_in_use;
  s.live_blocks = h->c.live_blocks;
  for (u64 off = h->heap_begin; off < h->heap_end; off += size_of(block(h, off))) {
    const BlockHeader* b = block(h, off);
    if (!sane_size(h, off, size_of(b))) return chain_error(h, off);
    if (is_live(b)) continue;
    ++s.free_blocks;
    s.free_bytes += size_of(b);
    if (size_of(b) > s.largest_free_block) s.largest_free_block = size_of(b);
  }
  s.allocs = h->c.allocs;
  s.frees = h->c.frees;
  s.failed_allocs = h->c.failed_allocs;
  s.rejected_frees = h->c.rejected_frees;
  s.recoveries = h->c.recoveries;
  s.rolled_back_allocs = h->c.rolled_back_allocs;
  s.rolled_forward_frees = h->c.rolled_forward_frees;
  s.list_repairs = h->c.list_repairs;
  prune_dead_slots(h);  // count processes, not leftovers of dead ones
  s.attached_processes = live_slots(h);
  return s;
}

SharedResult<std::size_t> SharedHeap::visit_raw(void (*fn)(void*, const SharedBlockInfo&),
                                                void* ctx) const {
  if (base_ == nullptr) return detached_error();
  auto* h = reinterpret_cast<Header*>(base_);
  HeapLock lock(h);
  if (!lock.ok()) return lock.error();
  std::size_t n = 0;
  for (u64 off = h->heap_begin; off < h->heap_end; off += size_of(block(h, off))) {
    const BlockHeader* b = block(h, off);
    if (!sane_size(h, off, size_of(b))) return chain_error(h, off);
    if (!is_live(b)) continue;
    SharedBlockInfo info;
    info.offset = off + kBlockHeader;
    info.data = base_ + off + kBlockHeader;
    info.length = b->length;
    info.block_bytes = size_of(b);
    info.alignment = Alignment::from_log2(b->align_log2);
    info.owner = static_cast<pid_t>(b->owner);
    fn(ctx, info);
    ++n;
  }
  return n;
}

namespace {
bool valid_root_name(std::string_view name) {
  return !name.empty() && name.size() <= SharedHeap::kRootNameMax &&
         name.find('\0') == std::string_view::npos;
}
SharedHeapError bad_root_name(std::string_view name) {
  return make_error(SharedHeapErrc::kInvalidName, 0,
                    "root name \"%.*s\" must be 1-%zu characters",
                    static_cast<int>(name.size() > 64 ? 64 : name.size()), name.data(),
                    SharedHeap::kRootNameMax);
}
RootSlot* find_root(Header* h, std::string_view name) {
  for (auto& r : h->roots) {
    if (r.used != 0 && name == std::string_view(r.name)) return &r;
  }
  return nullptr;
}
}  // namespace

SharedResult<void> SharedHeap::set_root(std::string_view name, std::uint64_t offset) {
  if (base_ == nullptr) return detached_error();
  if (!valid_root_name(name)) return bad_root_name(name);
  if (offset >= size_) {
    return make_error(SharedHeapErrc::kInvalidArgument, 0,
                      "root offset %llu is outside the mapping",
                      static_cast<unsigned long long>(offset));
  }
  auto* h = reinterpret_cast<Header*>(base_);
  HeapLock lock(h);
  if (!lock.ok()) return lock.error();
  if (RootSlot* r = find_root(h, name)) {
    __atomic_store_n(&r->offset, offset, __ATOMIC_RELEASE);
    return {};
  }
  for (auto& r : h->roots) {
    if (r.used != 0) continue;
    std::memset(r.name, 0, sizeof r.name);
    std::memcpy(r.name, name.data(), name.size());
    r.offset = offset;
    __atomic_store_n(&r.used, 1u, __ATOMIC_RELEASE);  // publish last
    return {};
  }
  return make_error(SharedHeapErrc::kRootTableFull, 0, "all %zu root slots are taken",
                    kRootSlots);
}

SharedResult<std::uint64_t> SharedHeap::root_offset(std::string_view name) const {
  if (base_ == nullptr) return detached_error();
  if (!valid_root_name(name)) return bad_root_name(name);
  auto* h = reinterpret_cast<Header*>(base_);
  HeapLock lock(h);
  if (!lock.ok()) return lock.error();
  if (RootSlot* r = find_root(h, name)) return std::uint64_t{r->offset};
  return make_error(SharedHeapErrc::kRootNotFound, 0, "no root named \"%.*s\"",
                    static_cast<int>(name.size()), name.data());
}

SharedResult<void> SharedHeap::remove_root(std::string_view name) {
  if (base_ == nullptr) return detached_error();
  if (!valid_root_name(name)) return bad_root_name(name);
  auto* h = reinterpret_cast<Header*>(base_);
  HeapLock lock(h);
  if (!lock.ok()) return lock.error();
  RootSlot* r = find_root(h, name);
  if (r == nullptr) {
    return make_error(SharedHeapErrc::kRootNotFound, 0, "no root named \"%.*s\"",
                      static_cast<int>(name.size()), name.data());
  }
  __atomic_store_n(&r->used, 0u, __ATOMIC_RELEASE);
  return {};
}

SharedFreeStatus SharedHeap::free_checked(void* p, std::size_t len, Alignment alignment) {
  if (base_ == nullptr) return SharedFreeStatus::kHeapUnusable;
  return heap_free(reinterpret_cast<Header*>(base_), p, len, alignment);
}

SharedResult<void> SharedHeap::verify() const {
  if (base_ == nullptr) return detached_error();
  auto* h = reinterpret_cast<Header*>(base_);
  HeapLock lock(h);
  if (!lock.ok()) return lock.error();
  auto fail = [](const char* what, u64 off) {
    return make_error(SharedHeapErrc::kHeapCorrupt, 0, "verify: %s at offset %llu", what,
                      static_cast<unsigned long long>(off));
  };
  // The header first: its geometry bounds every walk below (each chain step
  // advances at least kMinBlock inside [heap_begin, heap_end]).
  SharedHeapError header_err;
  if (!validate_header(h, size_, &header_err)) return header_err;
  if (h->cap > h->heap_end - h->heap_begin) return fail("cap above the heap size", h->cap);
  if (__atomic_load_n(&h->intent.op, __ATOMIC_ACQUIRE) != kOpNone) {
    return fail("intent record left set outside an operation", h->intent.block);
  }
  if (h->c.peak_bytes_in_use < h->c.bytes_in_use) {
    return fail("peak below bytes in use", h->c.peak_bytes_in_use);
  }
  for (const auto& slot : h->slots) {
    if (slot.pid < 0) return fail("negative pid in an attachment slot", 0);
  }
  for (const auto& r : h->roots) {
    if (r.used == 0) continue;
    if (std::memchr(r.name, '\0', sizeof r.name) == nullptr || r.name[0] == '\0') {
      return fail("root name not a terminated string", 0);
    }
    if (r.offset >= h->mapping_bytes) return fail("root offset outside the mapping", r.offset);
  }
  u64 in_use = 0, payload = 0, live = 0, free_blocks = 0, prev_off = 0;
  bool prev_free = false;
  u64 off = h->heap_begin;
  while (off < h->heap_end) {
    BlockHeader* b = block(h, off);
    u64 s = size_of(b);
    if (!sane_size(h, off, s)) return fail("malformed block size", off);
    if (b->prev_size != (prev_off == 0 ? 0 : off - prev_off)) return fail("stale prev_size", off);
    for (u64 g = off; g < off + s; g += kGranule) {
      bool want = g == off && is_live(b);
      if (bit_test(h, g) != want) return fail("bitmap disagrees with the chain", g);
    }
    if (is_live(b)) {
      if (b->length == 0 || b->length > s - kBlockHeader) return fail("bad block length", off);
      in_use += s;
      payload += b->length;
      ++live;
      prev_free = false;
    } else {
      if (prev_free) return fail("two adjacent free blocks", off);
      ++free_blocks;
      prev_free = true;
    }
    prev_off = off;
    off += s;
  }
  if (off != h->heap_end || block(h, off)->size_flags != kLiveBit) {
    return fail("chain does not end at the sentinel", off);
  }
  u64 listed = 0;
  for (int bin = 0; bin < kBins; ++bin) {
    bool has = (h->bin_mask[bin / 64] >> (bin % 64)) & 1;
    if (has != (h->bins[bin] != 0)) return fail("bin mask disagrees with bin", bin);
    u64 prev = 0;
    for (u64 f = h->bins[bin]; f != 0; f = links(h, f)->next) {
      if (f < h->heap_begin || f >= h->heap_end || !is_chain_block(h, f)) {
        return fail("free list points outside the chain", f);
      }
      if (is_live(block(h, f))) return fail("live block on a free list", f);
      if (bin_of(size_of(block(h, f))) != bin) return fail("free block in the wrong bin", f);
      if (links(h, f)->prev != prev) return fail("broken free-list back link", f);
      prev = f;
      if (++listed > free_blocks) return fail("free list longer than the free blocks", f);
    }
  }
  if (listed != free_blocks) return fail("free block missing from the lists", listed);
  if (in_use != h->c.bytes_in_use || payload != h->c.payload_bytes ||
      live != h->c.live_blocks) {
    return fail("counters disagree with the chain", in_use);
  }
  return {};
}

void SharedHeap::set_die_point_for_test(DiePoint point) { g_die_point.store(point); }

SharedResult<void> SharedHeap::lock_for_test(int millis, std::atomic<int>* held) const {
  if (base_ == nullptr) return detached_error();
  auto* h = reinterpret_cast<Header*>(base_);
  HeapLock lock(h);
  if (!lock.ok()) return lock.error();
  if (held != nullptr) held->store(1);
  die_if(DiePoint::kHoldingLock);
  if (millis > 0) {
    timespec ts{millis / 1000, (millis % 1000) * 1000000L};
    ::nanosleep(&ts, nullptr);
  }
  return {};
}

}  // namespace alloy
