// Sampled heap profiles, the engine's side (the state and the output are
// profile/sampler.h's): which allocations are sampled, where sampled blocks
// live, and how their frees are recognised.
//
// Which: each thread counts down bytes from an exponential draw (mean: the
// rate). The inline fast path is not touched: the slow path (alloc_generic)
// charges what each of its visits hands out, the block it returns plus, for
// sizes the inline fast path serves (up to 1 KiB), the blocks it leaves on
// the size's direct page for the fast path to pop; larger requests pass
// through the slow path every time and are charged one by one (those above
// 64 KiB, malloc's and calloc's, before a block is taken: prof_alloc_big). When the
// countdown would cross zero at a block of that list, the list is cut
// there, so the fast path comes back to the slow path at exactly that
// allocation, which is sampled: Poisson by bytes, as if every allocation
// were counted. The cost while on: a few instructions per slow-path visit
// (the list's length is the page's free count), a walk only when a sample
// falls in the list; while off, one load and branch per slow-path visit.
//
// Where: a sampled allocation is served from g_prof_heap, a heap of its own
// (a HeapCore behind its lock, as an alloy::Heap), and the block the slow
// path had taken goes back to its page. Its segments are owned by no thread,
// so every free of a sampled block takes free_cross, which knows them by
// their ThreadHeap (seg->local == &g_prof_heap.local): no lookup on any
// other free. realloc of a sampled block moves it out (entry.cc).
//
// Per-heap profiles (alloy::Heap::set_profile_rate / write_profile): a
// profiled user heap has a HeapProfile of its own, mapped on first use: a
// Sampler, a countdown (one per heap, under the heap's lock: every
// allocation of a user heap passes heap_alloc_raw, so each is charged its
// requested bytes, exactly Poisson by bytes), and a second ThreadHeap of the
// heap (its `heap` is the heap, so the ceiling, the account, stats, visit
// and destroy see its blocks as the heap's own) that holds only sampled
// blocks. Its segments have owner_tid 0 like the heap's others, so a free of
// a sampled block reaches free_cross (engine::free) or heap_free, which know
// it by its ThreadHeap's `sampler`: one load and test, on those slow paths
// only. An unprofiled heap pays one load and branch per allocation.
#include <sys/mman.h>

#include <cstring>
#include <new>

#include "alloy/allocators/engine/core_state.h"
#include "alloy/allocators/engine/engine.h"
#include "alloy/allocators/engine/fast_path.h"
#include "alloy/profile/sampler.h"
#include "alloy/profile/stack.h"

namespace alloy::engine::detail {

constinit HeapCore g_prof_heap;
constinit std::atomic<bool> g_prof_on __attribute__((visibility("hidden"))){false};

__thread std::int64_t t_prof_countdown
    __attribute__((tls_model("initial-exec"), visibility("hidden"))) = 0;

namespace {

__thread std::uint64_t t_rng __attribute__((tls_model("initial-exec"))) = 0;
constinit std::atomic<int> g_prof_heap_state{0};  // 0 none, 1 initializing, 2 ready

void prof_heap_ready() noexcept {
  int s = g_prof_heap_state.load(std::memory_order_acquire);
  if (s == 2) return;
  s = 0;
  if (g_prof_heap_state.compare_exchange_strong(s, 1, std::memory_order_acq_rel)) {
    ensure_process_init();
    heap_init(&g_prof_heap);
    g_prof_heap.local.sampler = &profile::Sampler::instance();
    register_heap(&g_prof_heap);  // so fork_prepare holds its lock
    g_prof_heap_state.store(2, std::memory_order_release);
    return;
  }
  while (g_prof_heap_state.load(std::memory_order_acquire) != 2) {
  }
}

}  // namespace

namespace {

// Serves this allocation from the profile's heap with its stack recorded;
// p (if any) goes back to its page. p itself if the sample cannot be taken.
void* take_sample(void* p, std::size_t size, std::size_t align, std::size_t charged) noexcept {
  profile::Sampler& sampler = profile::Sampler::instance();
  if (t_rng == 0) t_rng = thread_id() * 0x9E3779B97F4A7C15ull | 1;
  t_prof_countdown = sampler.next_distance(&t_rng);
  if (sampler.rate() == 0) return p;
  void* q = heap_alloc_raw(&g_prof_heap, size, align);
  if (q == nullptr) return p;
  if (p != nullptr) inline_free(p);  // back to its page: the owner's push
  std::uintptr_t frames[profile::kMaxFrames];
  const int n = profile::capture_stack(frames, profile::kMaxFrames, 1);
  sampler.record(q, size, frames, n, charged);
  return q;
}

// Charges the blocks the fast path will pop from pg after this visit: the
// page's free blocks, capacity - used (a visit comes when pg->free ran dry
// and leaves local_free just swapped in, so they are all on pg->free), in
// O(1). Only if the countdown crosses within them is the list walked, to
// the crossing block, and cut before it (the rest goes to local_free): the
// fast path runs dry exactly there, and the slow path, back in
// prof_alloc_slow with the countdown at or below zero, samples that
// allocation. So the sampled allocation is the one where the bytes cross,
// not the first after a refill (which a program with a fixed period would
// always hit at the same call site).
void charge_free_list(Span* pg) noexcept {
  const auto bs = static_cast<std::int64_t>(pg->block_size);
  const std::int64_t avail = static_cast<std::int64_t>(pg->capacity) - pg->used;
  if (avail <= 0) return;
  if (t_prof_countdown > avail * bs) {
    t_prof_countdown -= avail * bs;
    return;
  }
  Block* b = pg->free;
  Block* last = nullptr;  // the last block left on pg->free
  while (b != nullptr) {
    t_prof_countdown -= bs;
    if (t_prof_countdown <= 0) break;  // b is the crossing block: it starts the rest
    last = b;
    b = decode_link(b);  // links are encoded (internal.h, safe-linking)
  }
  if (b == nullptr) return;
  if (last == nullptr) {
    pg->free = nullptr;
  } else {
    last->next = encode_link(last, nullptr);
  }
  // The rest before local_free (empty here but for a rare visit that did
  // not just swap it in).
  if (pg->local_free == nullptr) {
    pg->local_free = b;
  } else {
    Block* tail = pg->local_free;
    while (decode_link(tail) != nullptr) tail = decode_link(tail);
    tail->next = encode_link(tail, b);
  }
}

}  // namespace

void* prof_alloc_slow(void* p, std::size_t size, std::size_t align) noexcept {
  Segment* seg = segment_of(p);
  Span* pg = span_of(seg, p);
  if (seg->local == &g_prof_heap.local) return p;  // never resample the profile's own heap
  const bool small = pg->kind == kSmallPage;
  // This allocation: sampled if the countdown crossed before it (a cut
  // list brought us here) or crosses with it.
  // Small blocks are charged their size class (as the blocks the fast path
  // pops are), others what was asked.
  const std::size_t charged = small ? pg->block_size : size;
  if (t_prof_countdown > 0) t_prof_countdown -= static_cast<std::int64_t>(charged);
  void* result = t_prof_countdown > 0 ? p : take_sample(p, size, align, charged);
  // Then what this visit left for the inline fast path to pop: the list of
  // the direct page of this size. (Larger or more aligned requests come
  // through here every time, so they are charged one by one above.)
  if (small && size <= kDirectMax && align <= 16) {
    Span* direct = t_local->direct[direct_slot(size, 16)];
    if (direct != &g_empty_page) charge_free_list(direct);
  }
  return result;
}

void* prof_alloc_big(std::size_t size, std::size_t align) noexcept {
  if (t_prof_countdown > 0) t_prof_countdown -= static_cast<std::int64_t>(size);
  if (t_prof_countdown > 0) return nullptr;
  return take_sample(nullptr, size, align, size);
}

void prof_free(ThreadHeap* l, void* p) noexcept { (void)l->sampler->forget(p); }

void* prof_realloc(void* p, std::size_t size) noexcept {
  const std::size_t usable = usable_size_of(p);
  if (size <= usable && size >= usable / 2) return p;
  void* q = inline_alloc(size);
  if (q == nullptr) return nullptr;
  std::memcpy(q, p, usable < size ? usable : size);
  inline_free(p);
  return q;
}

struct HeapProfile {
  ThreadHeap local;  // the heap's sampled blocks (under the heap's lock)
  profile::Sampler sampler;
  std::int64_t countdown = 0;  // under the heap's lock
  std::uint64_t rng = 0;       // under the heap's lock
};

namespace {
constexpr std::size_t kHeapProfileBytes = (sizeof(HeapProfile) + 4095) & ~std::size_t{4095};
}  // namespace

bool heap_set_profile_rate(HeapCore* h, std::int64_t mean_bytes) noexcept {
  if (mean_bytes < 0) mean_bytes = 0;
  HeapProfile* fresh = nullptr;
  if (mean_bytes > 0) {
    h->lock.lock();
    const bool have = h->profile != nullptr;
    h->lock.unlock();
    if (!have) {  // mapped outside the lock; a racing call's map may win
      void* m = ::mmap(nullptr, kHeapProfileBytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (m == MAP_FAILED) return false;
      fresh = ::new (m) HeapProfile();
      fresh->local.heap = h;
      fresh->local.tid = 0;
      fresh->local.sampler = &fresh->sampler;
      fresh->rng = (reinterpret_cast<std::uintptr_t>(h) * 0x9E3779B97F4A7C15ull) | 1;
    }
  }
  h->lock.lock();
  if (h->profile == nullptr && fresh != nullptr) {
    h->profile = fresh;
    fresh = nullptr;
  }
  if (HeapProfile* hp = h->profile) {
    hp->sampler.set_rate(mean_bytes);
    hp->countdown = mean_bytes > 0 ? hp->sampler.next_distance(&hp->rng) : 0;
  }
  h->lock.unlock();
  if (fresh != nullptr) ::munmap(fresh, kHeapProfileBytes);
  return true;
}

std::int64_t heap_profile_rate(HeapCore* h) noexcept {
  h->lock.lock();
  const std::int64_t r = h->profile != nullptr ? h->profile->sampler.rate() : 0;
  h->lock.unlock();
  return r;
}

ThreadHeap* heap_sampled_local(HeapCore* h) noexcept {
  return h->profile != nullptr ? &h->profile->local : nullptr;
}

bool heap_sample_charge(HeapCore* h, std::size_t size) noexcept {
  HeapProfile* hp = h->profile;
  if (hp->sampler.rate() <= 0) return false;
  hp->countdown -= static_cast<std::int64_t>(size);
  if (hp->countdown > 0) return false;
  hp->countdown = hp->sampler.next_distance(&hp->rng);
  return true;
}

void heap_sample_record(HeapCore* h, void* p, std::size_t size) noexcept {
  std::uintptr_t frames[profile::kMaxFrames];
  const int n = profile::capture_stack(frames, profile::kMaxFrames, 0);
  h->profile->sampler.record(p, size, frames, n);  // set before p was sampled; kept until destroy
}

bool heap_write_profile(HeapCore* h, const char* path, bool live_only) noexcept {
  h->lock.lock();
  HeapProfile* hp = h->profile;
  h->lock.unlock();
  if (hp != nullptr) return hp->sampler.write(path, live_only);
  profile::Sampler none;  // never profiled: an empty profile
  return none.write(path, live_only);
}

void heap_profile_release(HeapCore* h) noexcept {
  HeapProfile* hp = h->profile;
  if (hp == nullptr) return;
  h->profile = nullptr;
  hp->sampler.release();
  ::munmap(hp, kHeapProfileBytes);
}

void heap_profile_fork(HeapCore* h, int phase) noexcept {
  profile::Sampler& s = h->profile->sampler;
  if (phase == 0) {
    s.fork_prepare();
  } else if (phase == 1) {
    s.fork_parent();
  } else {
    s.fork_child();
  }
}

}  // namespace alloy::engine::detail

namespace alloy::engine {

void set_profile_rate(std::int64_t mean_bytes) noexcept {
  using namespace detail;
  if (mean_bytes > 0) prof_heap_ready();
  profile::Sampler::instance().set_rate(mean_bytes);
  g_prof_on.store(mean_bytes > 0, std::memory_order_relaxed);
}

std::int64_t profile_rate() noexcept { return profile::Sampler::instance().rate(); }

}  // namespace alloy::engine
