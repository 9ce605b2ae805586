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

void* scope_alloc(std::size_t size, std::size_t align, bool zero) noexcept {
  void* p = heap_alloc_raw(t_scope_heap, size == 0 ? 1 : size, align);
  if (p != nullptr && zero) std::memset(p, 0, size);
  return p;
}

ScopeSaved scope_enter(HeapCore* h) noexcept {
  ScopeSaved saved{t_scope_heap, t_local != &g_scope_local};
  if (saved.outer) {
    t_scope_saved = t_local;
    t_local = &g_scope_local;
  }
  t_scope_heap = h;
  return saved;
}

void scope_exit(ScopeSaved saved) noexcept {
  t_scope_heap = saved.heap;
  if (saved.outer) {
    t_local = t_scope_saved;
    t_scope_saved = nullptr;
  }
}

bool account_free(Segment* seg, Span* pg, void* p) noexcept {
  HeapCore* h = seg->local->heap;
  h->account->credit(h->account, pg->kind == kSmallPage ? pg->block_size : usable_size_of(p));
  if (pg->kind == kHugeBlock) {
    (void)huge_free(seg);
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
