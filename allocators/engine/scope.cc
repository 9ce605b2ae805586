// Account scopes in the core: the per-thread switch that sends a scoped
// thread's allocations to its account's heap (internal.h, "Account scopes"),
// and the in-place reset of a user heap. No malloc: TLS stores and the
// engine's own paths only.
#include <cstring>
#include <new>

#include "alloy/allocators/engine/core_state.h"
#include "alloy/allocators/engine/fast_path.h"

namespace alloy::engine::detail {

constinit ThreadHeap g_scope_local;
__thread HeapCore* t_scope_heap __attribute__((tls_model("initial-exec"))) = nullptr;
__thread ThreadHeap* t_scope_saved __attribute__((tls_model("initial-exec"))) = nullptr;
__thread ThreadHeap* t_scope_lane __attribute__((tls_model("initial-exec"))) = nullptr;
constinit __thread ScopeBatch t_scope_batch __attribute__((tls_model("initial-exec")));

namespace {
// The usable size an account is charged for block p of page pg.
std::size_t charged_size(Span* pg, void* p) noexcept {
  return pg->kind == kSmallPage ? pg->block_size : usable_size_of(p);
}
}  // namespace

namespace {
// Blocks that never enter a lease (internal.h): from the account's own heap.
bool big_request(std::size_t size, std::size_t align) noexcept {
  return size > kSmallMax || align > kSmallMax;
}

// What carve mode charges beyond per-block mode for l's small pages (their
// free blocks: capacity - used each; see internal.h).
void carve_extra(ThreadHeap* l, std::size_t* bytes, std::size_t* blocks) noexcept {
  std::size_t b = 0, k = 0;
  for (Segment* seg = l->segments; seg != nullptr; seg = seg->next) {
    for (std::size_t idx = 1; idx < kSlices;) {
      Span* s = &seg->pages[idx];
      const std::size_t n = s->slice_count;
      if (n == 0) break;
      if (s->kind == kSmallPage) {
        const std::size_t free = s->capacity - static_cast<std::size_t>(live(s));
        b += free * s->block_size;
        k += free;
      }
      idx += n;
    }
  }
  *bytes = b;
  *blocks = k;
}

void set_owner(ThreadHeap* l, std::uintptr_t tid) noexcept {
  l->tid = tid;
  for (Segment* seg = l->segments; seg != nullptr; seg = seg->next) {
    seg->owner_tid.store(tid, std::memory_order_release);
  }
}

// Per-block mode -> carve mode for leased l (its lock held): charges its
// pages' free blocks exactly; false (nothing changed) if that is refused.
bool carve_begin(ThreadHeap* l) noexcept {
  if (g_secure_state == kSecureOn) return false;  // every call takes the checked slow path
  HeapAccount* a = l->heap->account;
  std::size_t bytes, blocks;
  carve_extra(l, &bytes, &blocks);
  if (bytes != 0 && !a->charge_many(a, bytes, blocks)) return false;
  set_owner(l, owner_id());
  l->carve = true;
  return true;
}

// Carve mode -> per-block mode: credits the pages' free blocks to the batch.
void carve_end(ThreadHeap* l) noexcept {
  l->carve = false;
  set_owner(l, 0);
  std::size_t bytes, blocks;
  carve_extra(l, &bytes, &blocks);
  carve_note(-static_cast<std::ptrdiff_t>(bytes), -static_cast<std::ptrdiff_t>(blocks));
}
}  // namespace

void* scope_alloc(std::size_t size, std::size_t align, bool zero) noexcept {
  ThreadHeap* lane = t_scope_lane;
  if (lane == nullptr || big_request(size, align)) {
    void* p = heap_alloc_raw(t_scope_heap, size == 0 ? 1 : size, align);
    if (p != nullptr && zero) std::memset(p, 0, size);
    return p;
  }
  // The leased heap: this thread holds its lock for the scope's life.
  HeapCore* h = lane->heap;
  void* p = local_alloc(lane, size == 0 ? 1 : size, align);
  if (p == nullptr) return nullptr;
  Segment* seg = segment_of(p);
  Span* pg = span_of(seg, p);
  // Charged after the block is taken (a soft-limit callback may allocate in
  // this scope again); a refused block goes straight back, uncredited.
  if (!h->account->charge(h->account, charged_size(pg, p), size)) {
    local_push(pg, p);
    return nullptr;
  }
  if (zero) std::memset(p, 0, size);
  return p;
}

void* scope_carve_alloc(ThreadHeap* l, std::size_t size, std::size_t align, bool zero) noexcept {
  if (big_request(size, align)) return scope_alloc(size, align, zero);
  HeapAccount* a = l->heap->account;
  void* p = local_alloc(l, size, align);
  if (p == nullptr) {
    // A carve did not fit the batch's room: publish (exact), and try again;
    // past the limit, go on as a lane, exact per block.
    a->flush(a);
    p = local_alloc(l, size, align);
    if (p == nullptr) {
      carve_end(l);
      t_local = &g_scope_local;
      return scope_alloc(size, align, zero);
    }
  }
  // Collected cross-thread frees may have taken the batch past its room.
  if (t_scope_batch.bytes > t_scope_batch.room) a->flush(a);
  if (zero) std::memset(p, 0, size == 0 ? 1 : size);
  return p;
}

void* scope_try_alloc(std::size_t size) noexcept {
  ThreadHeap* l = t_scope_lane;
  if (l == nullptr || l->carve || size - 1 >= kDirectMax) return nullptr;  // size 0 wraps
  Span* pg = l->direct[direct_slot(size, 16)];
  Block* b = pg->free;
  if (!head_ok(pg, b)) [[unlikely]] return nullptr;
  ScopeBatch& batch = t_scope_batch;
  const std::ptrdiff_t now = batch.bytes + static_cast<std::ptrdiff_t>(pg->block_size);
  if (now > batch.room) [[unlikely]] return nullptr;  // the hooks publish, then check exactly
  batch.bytes = now;
  batch.blocks += 1;
  if (now > batch.high) batch.high = now;
  return page_take_block(pg, b);
}

bool scope_try_free(void* p) noexcept {
  ThreadHeap* l = t_scope_lane;
  if (l == nullptr || l->carve) return false;
  Segment* seg = segment_of(p);
  if (seg->local != l) return false;
  Span* pg = span_of(seg, p);
  // The block freed last on its page: a double free for the checked path.
  if (pg->kind != kSmallPage || pg->local_free == p) return false;
  ScopeBatch& batch = t_scope_batch;
  const std::ptrdiff_t now = batch.bytes - static_cast<std::ptrdiff_t>(pg->block_size);
  if (now < -kScopeBatchBytes) [[unlikely]] return false;  // the credit hook publishes
  batch.bytes = now;
  batch.blocks -= 1;
  local_push(pg, p);
  return true;
}

bool scope_charge_foreign(std::size_t usable, std::size_t request, HeapAccount** account,
                          std::uint64_t* epoch) noexcept {
  *account = nullptr;
  *epoch = 0;
  HeapCore* h = t_scope_heap;
  if (h == nullptr || h->account == nullptr) return true;
  HeapAccount* a = h->account;
  const std::uint64_t e = a->resets.load(std::memory_order_acquire);
  if (!a->charge(a, usable, request)) return false;
  *account = a;
  *epoch = e;
  return true;
}

void scope_credit_foreign(HeapAccount* account, std::size_t usable, std::uint64_t epoch) noexcept {
  if (account != nullptr && account->resets.load(std::memory_order_acquire) == epoch) {
    account->credit(account, usable);
  }
}

void scope_suspend_carve() noexcept {
  ThreadHeap* lane = t_scope_lane;
  if (lane != nullptr && lane->carve) {
    carve_end(lane);
    t_local = &g_scope_local;
  }
}

void scope_resume_carve() noexcept {
  ThreadHeap* lane = t_scope_lane;
  if (lane != nullptr && !lane->carve && t_local == &g_scope_local && carve_begin(lane)) {
    t_local = lane;
  }
}

ScopeSaved scope_enter(HeapCore* big, ThreadHeap* lane) noexcept {
  ScopeSaved saved{t_scope_heap, t_scope_lane, t_local, t_scope_saved == nullptr};
  if (saved.outer) t_scope_saved = t_local;
  t_scope_heap = big;
  t_scope_lane = lane;
  t_local = lane != nullptr && carve_begin(lane) ? lane : &g_scope_local;
  return saved;
}

void scope_exit(ScopeSaved saved) noexcept {
  if (ThreadHeap* lane = t_scope_lane; lane != nullptr && lane->carve) carve_end(lane);
  t_scope_heap = saved.heap;
  t_scope_lane = saved.lane;
  // An enclosing scope's lease left carve mode when this one began.
  t_local = saved.local;
  if (saved.lane != nullptr && saved.local == saved.lane && !saved.lane->carve) {
    t_local = &g_scope_local;
  }
  if (saved.outer) t_scope_saved = nullptr;
}

bool account_free(Segment* seg, Span* pg, void* p) noexcept {
  HeapCore* h = seg->local->heap;
  if (seg->local == t_scope_lane && seg->local->carve) {  // the owner, in carve mode: not credited
    local_push(pg, p);
    return true;
  }
  h->account->credit(h->account, charged_size(pg, p));
  if (pg->kind == kHugeBlock) {
    (void)huge_free(seg);
    return true;
  }
  if (seg->local == t_scope_lane) {  // this thread leases the heap: its lock is held
    local_push(pg, p);
    return true;
  }
  if (h == t_visiting) return false;  // its lock is already held by this thread's visit
  // Leased by another scope (perhaps this thread's, further out: BiasedLock
  // is not reentrant): its holder collects the cross-thread push.
  if (h->leased.load(std::memory_order_relaxed)) return false;
  if (!h->lock.try_lock()) return false;
  local_push(pg, p);
  h->lock.unlock();
  return true;
}

void heap_reset(HeapCore* h) noexcept {
  heap_release_all(h);
  Guard g(h->lock);
  ::new (&h->local) ThreadHeap();
  h->local.heap = h;
  h->local.tid = 0;
}

}  // namespace alloy::engine::detail
