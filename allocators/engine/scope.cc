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

void* scope_alloc(std::size_t size, std::size_t align, bool zero) noexcept {
  ThreadHeap* lane = t_scope_lane;
  if (lane == nullptr) {
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
    if (pg->kind == kHugeBlock) {
      (void)huge_free(seg);
    } else {
      local_push(pg, p);
    }
    return nullptr;
  }
  if (zero) std::memset(p, 0, size);
  return p;
}

void* scope_try_alloc(std::size_t size) noexcept {
  ThreadHeap* l = t_scope_lane;
  if (l == nullptr || size - 1 >= kDirectMax) return nullptr;  // size 0 wraps
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
  if (l == nullptr) return false;
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

ScopeSaved scope_enter(HeapCore* h, bool leased) noexcept {
  ScopeSaved saved{t_scope_heap, t_scope_lane, t_local != &g_scope_local};
  if (saved.outer) {
    t_scope_saved = t_local;
    t_local = &g_scope_local;
  }
  t_scope_heap = h;
  t_scope_lane = leased ? &h->local : nullptr;
  return saved;
}

void scope_exit(ScopeSaved saved) noexcept {
  t_scope_heap = saved.heap;
  t_scope_lane = saved.lane;
  if (saved.outer) {
    t_local = t_scope_saved;
    t_scope_saved = nullptr;
  }
}

bool account_free(Segment* seg, Span* pg, void* p) noexcept {
  HeapCore* h = seg->local->heap;
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
