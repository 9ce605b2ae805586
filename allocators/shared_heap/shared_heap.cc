// alloy::SharedHeap implementation.
//
// Layout of the mapping (every position is an offset from its start):
//
//   [Header | block-start bitmap | blocks ... | sentinel]
//
// Blocks are a chain in address order. Each starts with a 32-byte BlockHeader
// whose first word holds the block's size (a multiple of 16) and a "live"
// bit; the chain ends at a size-0 live sentinel. Free blocks carry two list
// links (offsets) in their payload and sit on one of kBins segregated lists:
// exact 16-byte size classes up to 1 KiB, then one list per power of two.
// Free always coalesces with both neighbours, so two free blocks are never
// adjacent. The bitmap has one bit per 16-byte granule, set exactly at the
// starts of live blocks: that makes "is this a live block of this heap?" an
// exact O(1) question, which is how wrong frees and double frees are refused.
//
// Crash consistency. The block chain (the size/live words) is the single
// source of truth; free lists, bitmap and counters are caches rebuilt from it.
// Every change to the chain is one aligned 8-byte release store, ordered so
// that the chain is well formed after each store:
//   split:    write the remainder's header inside the free block (invisible),
//             then store the shrunken size of the block being cut;
//   allocate: store size|live of the chosen block;
//   free:     store size without the live bit, then merge with a free
//             neighbour by storing the grown size of the lower block (the
//             upper header becomes payload).
// A process that dies holding the lock leaves the robust mutex EOWNERDEAD.
// The next locker then (1) applies the intent record: an allocation that had
// committed its block but had not returned it is rolled back (the caller
// never got the pointer), a free whose block is still marked live is rolled
// forward; (2) walks the chain, merging adjacent free blocks and recomputing
// prev-size fields, bitmap, lists and counters; (3) drops attachment slots of
// dead processes; then marks the mutex consistent. Blocks the dead process
// had allocated and still held are NOT reclaimed (ownership may have passed
// to another process); visit() shows them with their owner's pid. If the walk
// finds a malformed chain (a process scribbled over a header), the heap is
// marked corrupt and every later call fails cleanly instead of crashing.
#include "alloy/allocators/shared_heap/shared_heap.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "alloy/base/config.h"

namespace alloy {
namespace {

using u8 = std::uint8_t;
using u32 = std::uint32_t;
using u64 = std::uint64_t;

constexpr u64 kMagic = 0x50414548594f4c41ull;  // "ALOYHEAP" little-endian
constexpr u32 kVersion = 1;
constexpr u64 kGranule = 16;
constexpr u64 kBlockHeader = 32;
constexpr u64 kMinBlock = kBlockHeader + 16;  // room for the two free links
constexpr u64 kLiveBit = 1;
constexpr u64 kFlagMask = kGranule - 1;
constexpr u64 kSmallMax = 1024;  // largest block size with an exact class
constexpr int kSmallBins = static_cast<int>((kSmallMax - kMinBlock) / kGranule) + 1;
constexpr int kBins = 128;

enum State : u32 { kStateInitializing = 0, kStateReady = 1, kStateCorrupt = 2 };
enum Op : u32 { kOpNone = 0, kOpAlloc = 1, kOpFree = 2 };

struct BlockHeader {
  u64 size_flags;   // block bytes (multiple of 16) | kLiveBit
  u64 prev_size;    // size of the block just below (a cache; rebuilt)
  u64 length;       // live: the length the caller asked for
  u32 owner;        // live: pid of the allocating process
  u8 align_log2;    // live: alignment asked for
  u8 reserved[3];
};
static_assert(sizeof(BlockHeader) == kBlockHeader);

struct FreeLinks {
  u64 next;
  u64 prev;
};

struct Intent {
  u32 op;
  u32 pid;
  u64 block;
};

struct ProcessSlot {
  std::int32_t pid;
  u32 reserved;
};

struct RootSlot {
  char name[SharedHeap::kRootNameMax + 1];
  u64 offset;
  u32 used;
  u32 reserved;
};

struct Counters {
  u64 allocs, frees, failed_allocs, rejected_frees, recoveries;
  u64 rolled_back_allocs, rolled_forward_frees, list_repairs;
  u64 bytes_in_use, payload_bytes, live_blocks, peak_bytes_in_use;
};

struct Header {
  // Immutable after create; covered by `checksum`.
  u64 magic;
  u32 version;
  u32 header_bytes;
  u32 layout;  // sizes of the ABI-dependent pieces, see layout_signature()
  u32 granule;
  u64 mapping_bytes;
  u64 bitmap_offset;
  u64 bitmap_bytes;
  u64 heap_begin;
  u64 heap_end;  // offset of the sentinel block
  u64 checksum;
  // Mutable, under `mutex` (state is also read without it).
  u32 state;
  u32 doomed;
  pthread_mutex_t mutex;
  u64 cap;
  Counters c;
  Intent intent;
  u64 bin_mask[kBins / 64];
  u64 bins[kBins];
  ProcessSlot slots[SharedHeap::kProcessSlots];
  RootSlot roots[SharedHeap::kRootSlots];
};

constexpr u32 layout_signature() {
  return static_cast<u32>(sizeof(pthread_mutex_t)) << 20 |
         static_cast<u32>(sizeof(BlockHeader)) << 12 | static_cast<u32>(kBins) << 4 |
         static_cast<u32>(SharedHeap::kRootSlots / 4);
}

u64 checksum_of(const Header* h) {
  // FNV-1a over the immutable prefix after the magic (which is stored last,
  // with release order, to publish a fully initialised header).
  const auto* p = reinterpret_cast<const unsigned char*>(h);
  u64 x = 0xcbf29ce484222325ull;
  for (std::size_t i = offsetof(Header, version); i < offsetof(Header, checksum); ++i) {
    x = (x ^ p[i]) * 0x100000001b3ull;
  }
  return x;
}

constexpr u64 round_up(u64 v, u64 to) { return (v + to - 1) / to * to; }

// ---- Errors ----

SharedHeapError make_error(SharedHeapErrc code, int sys_errno, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));
SharedHeapError make_error(SharedHeapErrc code, int sys_errno, const char* fmt, ...) {
  SharedHeapError e;
  e.code = code;
  e.sys_errno = sys_errno;
  va_list ap;
  va_start(ap, fmt);
  int n = std::vsnprintf(e.message, sizeof e.message, fmt, ap);
  va_end(ap);
  if (sys_errno != 0 && n >= 0 && static_cast<std::size_t>(n) < sizeof e.message) {
    std::snprintf(e.message + n, sizeof e.message - static_cast<std::size_t>(n), ": %s",
                  std::strerror(sys_errno));
  }
  return e;
}

// ---- Test hook ----

std::atomic<SharedHeap::DiePoint> g_die_point{SharedHeap::DiePoint::kNone};

void die_if(SharedHeap::DiePoint point) {
  if (g_die_point.load(std::memory_order_relaxed) == point) {
    ::kill(::getpid(), SIGKILL);
    for (;;) ::pause();
  }
}

// ---- This process's id, without a syscall per call ----
// glibc no longer caches getpid(); a fork() child re-reads it (atfork hook).
std::atomic<pid_t> g_pid{0};

pid_t current_pid() {
  pid_t pid = g_pid.load(std::memory_order_relaxed);
  if (pid != 0) return pid;
  static const bool hooked = [] {
    ::pthread_atfork(nullptr, nullptr, [] { g_pid.store(0, std::memory_order_relaxed); });
    return true;
  }();
  (void)hooked;
  pid = ::getpid();
  g_pid.store(pid, std::memory_order_relaxed);
  return pid;
}

// ---- Raw access to the mapping ----

std::byte* base_of(Header* h) { return reinterpret_cast<std::byte*>(h); }
BlockHeader* block(Header* h, u64 off) {
  return reinterpret_cast<BlockHeader*>(base_of(h) + off);
}
FreeLinks* links(Header* h, u64 off) {
  return reinterpret_cast<FreeLinks*>(base_of(h) + off + kBlockHeader);
}
u64 size_of(const BlockHeader* b) { return b->size_flags & ~kFlagMask; }
bool is_live(const BlockHeader* b) { return (b->size_flags & kLiveBit) != 0; }

// Is the block at `off` plausibly well formed (a size that stays in the heap)?
bool sane_size(const Header* h, u64 off, u64 s) {
  return s >= kMinBlock && s % kGranule == 0 && off < h->heap_end && s <= h->heap_end - off;
}

// The commit point of every chain change: ordered after all earlier writes.
void commit(u64* word, u64 value) { __atomic_store_n(word, value, __ATOMIC_RELEASE); }

u8* bitmap(Header* h) { return reinterpret_cast<u8*>(base_of(h) + h->bitmap_offset); }
u64 granule_index(const Header* h, u64 off) { return (off - h->heap_begin) / kGranule; }
bool bit_test(Header* h, u64 off) {
  u64 i = granule_index(h, off);
  return (bitmap(h)[i / 8] >> (i % 8)) & 1;
}
void bit_set(Header* h, u64 off) {
  u64 i = granule_index(h, off);
  bitmap(h)[i / 8] = static_cast<u8>(bitmap(h)[i / 8] | (1u << (i % 8)));
}
void bit_clear(Header* h, u64 off) {
  u64 i = granule_index(h, off);
  bitmap(h)[i / 8] = static_cast<u8>(bitmap(h)[i / 8] & ~(1u << (i % 8)));
}

// ---- Free lists ----

int bin_of(u64 size) {
  if (size <= kSmallMax) return static_cast<int>((size - kMinBlock) / kGranule);
  int lg = 63 - __builtin_clzll(size);  // >= 10
  int b = kSmallBins + (lg - 10);
  return b < kBins ? b : kBins - 1;
}

void bin_push(Header* h, u64 off) {
  int b = bin_of(size_of(block(h, off)));
  FreeLinks* l = links(h, off);
  l->next = h->bins[b];
  l->prev = 0;
  if (h->bins[b] != 0) links(h, h->bins[b])->prev = off;
  h->bins[b] = off;
  h->bin_mask[b / 64] |= u64{1} << (b % 64);
}

// Could `x` be a free block on list `bin`? Guards every step through the
// lists, which live in free payloads a buffer overrun can reach.
bool valid_listed(Header* h, u64 x, int bin) {
  if (x < h->heap_begin || x >= h->heap_end || (x - h->heap_begin) % kGranule != 0) {
    return false;
  }
  const BlockHeader* b = block(h, x);
  return !is_live(b) && sane_size(h, x, size_of(b)) && bin_of(size_of(b)) == bin;
}

// Unlinks a free block; false (and nothing changed) if its neighbours on the
// list do not point back at it: the lists were damaged, and need repair().
[[nodiscard]] bool bin_remove(Header* h, u64 off) {
  int b = bin_of(size_of(block(h, off)));
  FreeLinks* l = links(h, off);
  if (l->next != 0 && (!valid_listed(h, l->next, b) || links(h, l->next)->prev != off)) {
    return false;
  }
  if (l->prev != 0 ? (!valid_listed(h, l->prev, b) || links(h, l->prev)->next != off)
                   : h->bins[b] != off) {
    return false;
  }
  if (l->prev != 0) links(h, l->prev)->next = l->next;
  else h->bins[b] = l->next;
  if (l->next != 0) links(h, l->next)->prev = l->prev;
  if (h->bins[b] == 0) h->bin_mask[b / 64] &= ~(u64{1} << (b % 64));
  return true;
}

constexpr u64 kDamagedList = ~u64{0};

// A free block of at least `need` bytes, 0 if there is none, or kDamagedList.
u64 find_free(Header* h, u64 need) {
  int b = bin_of(need);
  if (b < kSmallBins) {
    if (h->bins[b] != 0) return valid_listed(h, h->bins[b], b) ? h->bins[b] : kDamagedList;
  } else {
    for (u64 off = h->bins[b]; off != 0; off = links(h, off)->next) {
      if (!valid_listed(h, off, b)) return kDamagedList;
      if (size_of(block(h, off)) >= need) return off;
    }
  }
  // Any block in a higher bin is big enough.
  for (int i = b + 1; i < kBins;) {
    u64 mask = h->bin_mask[i / 64] >> (i % 64);
    if (mask == 0) {
      i = (i / 64 + 1) * 64;
      continue;
    }
    i += __builtin_ctzll(mask);
    if (i < kBins) return valid_listed(h, h->bins[i], i) ? h->bins[i] : kDamagedList;
  }
  return 0;
}

// ---- Rebuild and recovery ----

// Is `target` the start of a block in the chain?
bool is_chain_block(Header* h, u64 target) {
  for (u64 off = h->heap_begin; off < h->heap_end;) {
    if (off == target) return true;
    if (off > target) return false;
    u64 s = size_of(block(h, off));
    if (!sane_size(h, off, s)) return false;
    off += s;
  }
  return false;
}

// Rebuilds everything derived from the chain. False if the chain is malformed.
bool rebuild(Header* h) {
  std::memset(bitmap(h), 0, h->bitmap_bytes);
  std::memset(h->bins, 0, sizeof h->bins);
  std::memset(h->bin_mask, 0, sizeof h->bin_mask);
  u64 in_use = 0, payload = 0, live = 0;
  u64 prev_off = 0;
  bool prev_free = false;
  u64 off = h->heap_begin;
  while (off < h->heap_end) {
    BlockHeader* b = block(h, off);
    u64 s = size_of(b);
    if (!sane_size(h, off, s)) return false;
    if (!is_live(b) && prev_free) {
      BlockHeader* p = block(h, prev_off);
      commit(&p->size_flags, size_of(p) + s);  // merge: a half-done coalesce
      off += s;
      continue;
    }
    b->prev_size = prev_off == 0 ? 0 : off - prev_off;
    if (is_live(b)) {
      if (b->length > s - kBlockHeader) return false;
      in_use += s;
      payload += b->length;
      ++live;
    }
    prev_free = !is_live(b);
    prev_off = off;
    off += s;
  }
  if (off != h->heap_end) return false;
  BlockHeader* sentinel = block(h, h->heap_end);
  if (sentinel->size_flags != kLiveBit) return false;
  sentinel->prev_size = prev_off == 0 ? 0 : off - prev_off;
  for (off = h->heap_begin; off < h->heap_end; off += size_of(block(h, off))) {
    if (is_live(block(h, off))) bit_set(h, off);
    else bin_push(h, off);
  }
  h->c.bytes_in_use = in_use;
  h->c.payload_bytes = payload;
  h->c.live_blocks = live;
  if (in_use > h->c.peak_bytes_in_use) h->c.peak_bytes_in_use = in_use;
  return true;
}

bool process_alive(pid_t pid) {
  return pid > 0 && (::kill(pid, 0) == 0 || errno != ESRCH);
}

void prune_dead_slots(Header* h) {
  for (auto& s : h->slots) {
    if (s.pid != 0 && !process_alive(s.pid)) s.pid = 0;
  }
}

u32 live_slots(Header* h) {
  u32 n = 0;
  for (auto& s : h->slots) n += s.pid != 0;
  return n;
}

void recover(Header* h) {
  ++h->c.recoveries;
  Intent in = h->intent;
  if (in.op != kOpNone && is_chain_block(h, in.block)) {
    BlockHeader* b = block(h, in.block);
    if (is_live(b)) {
      // Alloc: the caller died before it got the pointer; give it back.
      // Free: the caller asked for it to be freed; finish the job.
      commit(&b->size_flags, size_of(b));
      if (in.op == kOpAlloc) ++h->c.rolled_back_allocs;
      else ++h->c.rolled_forward_frees;
    }
  }
  h->intent.op = kOpNone;
  if (!rebuild(h)) __atomic_store_n(&h->state, kStateCorrupt, __ATOMIC_RELEASE);
  prune_dead_slots(h);
}

// The free lists were found damaged mid-operation: rebuild them from the
// chain (which also finishes any half-done merge). False if the chain itself
// is broken; the heap is then marked corrupt.
bool repair(Header* h) {
  ++h->c.list_repairs;
  if (rebuild(h)) return true;
  __atomic_store_n(&h->state, kStateCorrupt, __ATOMIC_RELEASE);
  return false;
}

// Locks a robust mutex without ever sleeping unboundedly. A futex unlock
// wakes one waiter; if that waiter is SIGKILLed before it takes the lock, the
// wake-up dies with it and the other waiters would sleep forever with the
// lock free (the kernel repairs a dead *owner*, not a dead woken waiter). So
// contended waits time out every few milliseconds and look again.
// (timedlock, not clocklock: sanitizers intercept the former only. A jump of
// the real-time clock merely shortens or lengthens one wait.)
int robust_lock(pthread_mutex_t* m) {
  int rc = pthread_mutex_trylock(m);
  if (rc != EBUSY) return rc;
#if defined(ALLOY_HAVE_TSAN)
  // TSan's timedlock interceptor does not count EOWNERDEAD as acquired (its
  // trylock one does), so under TSan poll with trylock and a short backoff.
  for (long ns = 20000;; ns = ns < 1000000 ? ns * 2 : ns) {
    timespec pause{0, ns};
    ::nanosleep(&pause, nullptr);
    rc = pthread_mutex_trylock(m);
    if (rc != EBUSY) return rc;
  }
#endif
  for (;;) {
    timespec deadline;
    ::clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_nsec += 5 * 1000 * 1000;
    if (deadline.tv_nsec >= 1000 * 1000 * 1000) {
      deadline.tv_nsec -= 1000 * 1000 * 1000;
      ++deadline.tv_sec;
    }
    rc = pthread_mutex_timedlock(m, &deadline);
    if (rc != ETIMEDOUT) return rc;
  }
}

// The robust lock. Recovers the heap if the previous owner died.
class HeapLock {
 public:
  explicit HeapLock(Header* h) : h_(h) {
    int rc = robust_lock(&h->mutex);
    if (rc == EOWNERDEAD) {
      recover(h);
      pthread_mutex_consistent(&h->mutex);
      rc = 0;
    }
    if (rc != 0) {
      error_ = make_error(SharedHeapErrc::kLockFailed, rc, "cannot lock the shared heap");
      return;
    }
    locked_ = true;
    if (__atomic_load_n(&h->state, __ATOMIC_ACQUIRE) == kStateCorrupt) {
      error_ = make_error(SharedHeapErrc::kHeapCorrupt, 0,
                          "the shared heap's block chain is corrupt; it refuses work");
    }
  }
  ~HeapLock() {
    if (locked_) pthread_mutex_unlock(&h_->mutex);
  }
  HeapLock(const HeapLock&) = delete;
  HeapLock& operator=(const HeapLock&) = delete;

  bool locked() const { return locked_; }
  // Locked and the heap is usable.
  bool ok() const { return locked_ && error_.message[0] == '\0'; }
  const SharedHeapError& error() const { return error_; }

 private:
  Header* h_;
  bool locked_ = false;
  SharedHeapError error_;
};

// ---- Allocation ----

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

void* vt_alloc(void* ctx, std::size_t len, Alignment alignment, std::uintptr_t) {
  return heap_alloc(static_cast<Header*>(ctx), len, alignment);
}
bool vt_resize(void* ctx, Bytes memory, Alignment alignment, std::size_t new_len,
               std::uintptr_t) {
  return heap_resize(static_cast<Header*>(ctx), memory.data(), memory.size(), alignment,
                     new_len);
}
void vt_free(void* ctx, Bytes memory, Alignment alignment, std::uintptr_t ret_addr) {
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

constexpr VTable kVTable = {vt_alloc, vt_resize, no_remap, vt_free};

// ---- Names and mappings ----

bool make_shm_name(std::string_view name, char (&out)[256], SharedHeapError* err) {
  if (!name.empty() && name.front() == '/') name.remove_prefix(1);
  if (name.empty() || name.size() > 250 || name.find('/') != std::string_view::npos ||
      name.find('\0') != std::string_view::npos) {
    *err = make_error(SharedHeapErrc::kInvalidName, 0,
                      "invalid shared heap name \"%.*s\" (want 1-250 chars, no '/')",
                      static_cast<int>(name.size() > 64 ? 64 : name.size()), name.data());
    return false;
  }
  out[0] = '/';
  std::memcpy(out + 1, name.data(), name.size());
  out[name.size() + 1] = '\0';
  return true;
}

void init_header(Header* h, u64 mapping) {
  h->version = kVersion;
  h->header_bytes = sizeof(Header);
  h->layout = layout_signature();
  h->granule = kGranule;
  h->mapping_bytes = mapping;
  h->bitmap_offset = round_up(sizeof(Header), 64);
  h->bitmap_bytes = round_up(mapping / kGranule / 8 + 1, 64);
  h->heap_begin = round_up(h->bitmap_offset + h->bitmap_bytes, 64);
  h->heap_end = round_up(mapping - kBlockHeader - kGranule + 1, kGranule);
  if (h->heap_end + kBlockHeader > mapping) h->heap_end -= kGranule;

  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
  pthread_mutex_init(&h->mutex, &attr);
  pthread_mutexattr_destroy(&attr);

  h->cap = h->heap_end - h->heap_begin;
  BlockHeader* first = block(h, h->heap_begin);
  first->size_flags = h->heap_end - h->heap_begin;
  first->prev_size = 0;
  BlockHeader* sentinel = block(h, h->heap_end);
  sentinel->size_flags = kLiveBit;
  sentinel->prev_size = first->size_flags;
  bin_push(h, h->heap_begin);
  h->checksum = checksum_of(h);
  h->state = kStateReady;
  __atomic_store_n(&h->magic, kMagic, __ATOMIC_RELEASE);  // publishes the rest
}

// Validates a mapped header against the object's real size.
bool validate_header(const Header* h, u64 object_size, SharedHeapError* err) {
  u64 magic = __atomic_load_n(&h->magic, __ATOMIC_ACQUIRE);
  if (magic == 0) {
    *err = make_error(SharedHeapErrc::kNotReady, 0,
                      "not initialised (its creator is still setting it up, or died doing so)");
    return false;
  }
  if (magic != kMagic) {
    *err = make_error(SharedHeapErrc::kBadMagic, 0,
                      "not an alloy shared heap (magic %#llx, want %#llx)",
                      static_cast<unsigned long long>(magic),
                      static_cast<unsigned long long>(kMagic));
    return false;
  }
  if (h->version != kVersion) {
    *err = make_error(SharedHeapErrc::kBadVersion, 0,
                      "shared heap format version %u, this build reads version %u",
                      h->version, kVersion);
    return false;
  }
  if (h->header_bytes != sizeof(Header) || h->layout != layout_signature() ||
      h->granule != kGranule) {
    *err = make_error(SharedHeapErrc::kBadLayout, 0,
                      "shared heap header layout differs (header %u bytes, layout %#x; "
                      "this build: %zu bytes, layout %#x)",
                      h->header_bytes, h->layout, sizeof(Header), layout_signature());
    return false;
  }
  if (h->checksum != checksum_of(h)) {
    *err = make_error(SharedHeapErrc::kCorruptHeader, 0,
                      "shared heap header checksum mismatch (header overwritten?)");
    return false;
  }
  if (h->mapping_bytes != object_size || h->bitmap_offset < sizeof(Header) ||
      h->heap_begin < h->bitmap_offset + h->bitmap_bytes ||
      h->heap_end + kBlockHeader > h->mapping_bytes || h->heap_begin >= h->heap_end ||
      h->bitmap_bytes * 8 * kGranule < h->heap_end - h->heap_begin ||
      h->heap_begin % 64 != 0 || h->heap_end % kGranule != 0) {
    *err = make_error(SharedHeapErrc::kCorruptHeader, 0,
                      "shared heap geometry is inconsistent (header says %llu bytes, "
                      "object has %llu)",
                      static_cast<unsigned long long>(h->mapping_bytes),
                      static_cast<unsigned long long>(object_size));
    return false;
  }
  u32 state = __atomic_load_n(&h->state, __ATOMIC_ACQUIRE);
  if (state == kStateInitializing) {
    *err = make_error(SharedHeapErrc::kNotReady, 0, "shared heap is not initialised yet");
    return false;
  }
  return true;
}

SharedHeapError system_error(const char* what, const char* name) {
  int e = errno;
  return make_error(SharedHeapErrc::kSystem, e, "%s(%s)", what, name);
}

// Opens the shm object of an existing heap; `shm` receives its full name.
SharedResult<int> open_existing(std::string_view name, char (&shm)[256]) {
  SharedHeapError err;
  if (!make_shm_name(name, shm, &err)) return err;
  int fd = ::shm_open(shm, O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) {
    if (errno == ENOENT) {
      return make_error(SharedHeapErrc::kNotFound, 0, "no shared heap named %s", shm);
    }
    return system_error("shm_open", shm);
  }
  return fd;
}

}  // namespace

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

namespace shared_heap_detail {
void value_on_error(const SharedHeapError& e) {
  std::fprintf(stderr, "alloy: SharedResult::value() on an error: %s\n", e.message);
  std::abort();
}
}  // namespace shared_heap_detail

SharedHeap& SharedHeap::operator=(SharedHeap&& o) noexcept {
  if (this == &o) return *this;
  detach();
  base_ = std::exchange(o.base_, nullptr);
  size_ = std::exchange(o.size_, 0);
  fd_ = std::exchange(o.fd_, -1);
  attached_pid_ = std::exchange(o.attached_pid_, 0);
  slot_ = std::exchange(o.slot_, -1);
  std::memcpy(shm_name_, o.shm_name_, sizeof shm_name_);
  o.shm_name_[0] = '\0';
  return *this;
}

SharedResult<SharedHeap> SharedHeap::create(std::string_view name, std::size_t capacity) {
  char shm[256];
  SharedHeapError err;
  if (!make_shm_name(name, shm, &err)) return err;
  if (capacity < kMinCapacity || capacity > kMaxCapacity) {
    return make_error(SharedHeapErrc::kInvalidArgument, 0,
                      "capacity %zu outside [%zu, %zu]", capacity, kMinCapacity, kMaxCapacity);
  }
  int fd = ::shm_open(shm, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) {
      return make_error(SharedHeapErrc::kExists, 0, "shared heap %s already exists", shm);
    }
    return system_error("shm_open", shm);
  }
  auto r = create_on_fd(fd, capacity, shm);
  if (!r) ::shm_unlink(shm);
  return r;
}

SharedResult<SharedHeap> SharedHeap::create_anonymous(std::size_t capacity) {
  if (capacity < kMinCapacity || capacity > kMaxCapacity) {
    return make_error(SharedHeapErrc::kInvalidArgument, 0,
                      "capacity %zu outside [%zu, %zu]", capacity, kMinCapacity, kMaxCapacity);
  }
  int fd = ::memfd_create("alloy-shared-heap", MFD_CLOEXEC);
  if (fd < 0) return system_error("memfd_create", "alloy-shared-heap");
  return create_on_fd(fd, capacity, nullptr);
}

SharedResult<SharedHeap> SharedHeap::create_on_fd(int fd, std::size_t capacity,
                                                  const char* shm_name) {
  const char* label = shm_name != nullptr ? shm_name : "memfd";
  u64 page = static_cast<u64>(::sysconf(_SC_PAGESIZE));
  u64 mapping = round_up(capacity, page);
  // Reserve the pages now: a full /dev/shm is an error here, not a SIGBUS later.
  int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(mapping));
  if (rc == EOPNOTSUPP || rc == EINVAL) {
    rc = ::ftruncate(fd, static_cast<off_t>(mapping)) == 0 ? 0 : errno;
  }
  if (rc != 0) {
    ::close(fd);
    return make_error(SharedHeapErrc::kSystem, rc, "reserving %llu bytes for %s",
                      static_cast<unsigned long long>(mapping), label);
  }
  void* p = ::mmap(nullptr, mapping, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    SharedHeapError e = system_error("mmap", label);
    ::close(fd);
    return e;
  }
  auto* h = static_cast<Header*>(p);
  init_header(h, mapping);
  SharedHeap heap;
  heap.base_ = static_cast<std::byte*>(p);
  heap.size_ = mapping;
  heap.fd_ = fd;
  heap.attached_pid_ = ::getpid();
  heap.slot_ = 0;
  h->slots[0].pid = heap.attached_pid_;
  if (shm_name != nullptr) std::snprintf(heap.shm_name_, sizeof heap.shm_name_, "%s", shm_name);
  return heap;
}

SharedResult<SharedHeap> SharedHeap::attach(std::string_view name,
                                            const SharedAttachOptions& options) {
  char shm[256];
  SharedResult<int> opened = open_existing(name, shm);
  if (!opened) return opened.error();
  int fd = *opened;
  return attach_mapped(fd, options, shm);
}

SharedResult<SharedHeap> SharedHeap::attach_fd(int fd, const SharedAttachOptions& options) {
  int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) {
    int e = errno;
    return make_error(SharedHeapErrc::kInvalidArgument, e, "cannot use fd %d", fd);
  }
  return attach_mapped(copy, options, nullptr);
}

SharedResult<SharedHeap> SharedHeap::attach_mapped(int fd, const SharedAttachOptions& options,
                                                   const char* shm_name) {
  const char* label = shm_name != nullptr ? shm_name : "fd";
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    SharedHeapError e = system_error("fstat", label);
    ::close(fd);
    return e;
  }
  u64 size = static_cast<u64>(st.st_size);
  if (size == 0) {  // create() has made the name but not sized it yet
    ::close(fd);
    return make_error(SharedHeapErrc::kNotReady, 0,
                      "%s is empty (its creator is still setting it up, or died doing so)",
                      label);
  }
  if (size < sizeof(Header)) {
    ::close(fd);
    return make_error(SharedHeapErrc::kTooSmall, 0,
                      "%s is %llu bytes, smaller than a shared heap header (%zu)", label,
                      static_cast<unsigned long long>(size), sizeof(Header));
  }
  void* p = ::mmap(options.address_hint, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    SharedHeapError e = system_error("mmap", label);
    ::close(fd);
    return e;
  }
  SharedHeap heap;  // from here on, early returns unmap and close
  heap.base_ = static_cast<std::byte*>(p);
  heap.size_ = size;
  heap.fd_ = fd;
  auto* h = static_cast<Header*>(p);
  SharedHeapError err;
  if (!validate_header(h, size, &err)) return err;
  {
    HeapLock lock(h);
    if (!lock.ok()) return lock.error();
    if (h->doomed != 0) {
      return make_error(SharedHeapErrc::kDestroyed, 0,
                        "shared heap %s is being destroyed; no new attachments", label);
    }
    int slot = -1;
    for (int pass = 0; pass < 2 && slot < 0; ++pass) {
      if (pass == 1) prune_dead_slots(h);
      for (std::size_t i = 0; i < kProcessSlots; ++i) {
        if (h->slots[i].pid == 0) {
          slot = static_cast<int>(i);
          break;
        }
      }
    }
    if (slot < 0) {
      return make_error(SharedHeapErrc::kTooManyProcesses, 0,
                        "all %zu attachment slots of %s are taken", kProcessSlots, label);
    }
    heap.attached_pid_ = ::getpid();
    heap.slot_ = slot;
    h->slots[slot].pid = heap.attached_pid_;
  }
  if (shm_name != nullptr) std::snprintf(heap.shm_name_, sizeof heap.shm_name_, "%s", shm_name);
  return heap;
}

SharedResult<void> SharedHeap::destroy(std::string_view name) {
  char shm[256];
  SharedResult<int> opened = open_existing(name, shm);
  if (!opened) return opened.error();
  int fd = *opened;
  SharedHeapError err;
  struct stat st;
  bool unlink_now = true;
  if (::fstat(fd, &st) == 0 && static_cast<u64>(st.st_size) >= sizeof(Header)) {
    u64 size = static_cast<u64>(st.st_size);
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED) {
      auto* h = static_cast<Header*>(p);
      if (validate_header(h, size, &err)) {
        HeapLock lock(h);
        if (lock.locked()) {  // a corrupt heap can still be destroyed
          h->doomed = 1;
          prune_dead_slots(h);
          unlink_now = live_slots(h) == 0;
        }
      }
      ::munmap(p, size);
    }
  }
  ::close(fd);
  if (unlink_now && ::shm_unlink(shm) != 0 && errno != ENOENT) {
    return system_error("shm_unlink", shm);
  }
  return {};
}

void SharedHeap::detach() {
  if (base_ == nullptr) return;
  auto* h = reinterpret_cast<Header*>(base_);
  bool unlink_name = false;
  if (slot_ >= 0 && attached_pid_ == ::getpid()) {
    HeapLock lock(h);
    if (lock.locked() && h->slots[slot_].pid == attached_pid_) h->slots[slot_].pid = 0;
    if (lock.locked() && h->doomed != 0) {
      prune_dead_slots(h);
      unlink_name = live_slots(h) == 0;
    }
  }
  ::munmap(base_, size_);
  if (fd_ >= 0) ::close(fd_);
  if (unlink_name && shm_name_[0] != '\0') ::shm_unlink(shm_name_);
  base_ = nullptr;
  size_ = 0;
  fd_ = -1;
  slot_ = -1;
  attached_pid_ = 0;
  shm_name_[0] = '\0';
}

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

SharedResult<void> SharedHeap::set_cap(std::size_t bytes) {
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
  s.cap_bytes = h->cap;
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
