// Memory accounts (account.h): the tree, the charge and credit paths (called
// from inside malloc through the heap's HeapAccount hooks: atomics only, no
// allocation), scopes, the charging wrapper, reset and destroy.
#include "alloy/allocators/engine/account.h"

#include "alloy/alloc_iface/make_vtable.h"

#include <errno.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <new>

#include "alloy/allocators/engine/heap.h"
#include "alloy/allocators/engine/internal.h"

namespace alloy {
namespace account_detail {

namespace d = engine::detail;

// A heap of an account that one AccountScope at a time leases for its whole
// life (internal.h, "Account scopes"): taken by `busy`, then its lock is held
// until the scope ends, so the scoped thread allocates and frees in it as
// its owner (the fast lane). Leases stay with their account (each charges
// the account's hooks) until it is destroyed; reset() empties them too.
struct Lease {
  d::HeapCore* core = nullptr;
  Lease* next = nullptr;  // written before the lease is published; fixed after
  std::atomic<bool> busy{false};
  alignas(Heap) unsigned char heap_storage[sizeof(Heap)];
  Heap& heap() noexcept { return *std::launder(reinterpret_cast<Heap*>(heap_storage)); }
};

struct Node {
  d::HeapAccount hook;  // first member: a HeapAccount* is its Node*
  std::atomic<Lease*> leases{nullptr};  // pushed under g_tree; read by scopes without it
  std::atomic<std::size_t> bytes{0};
  std::atomic<std::size_t> blocks{0};
  std::atomic<std::size_t> peak{0};
  std::atomic<std::size_t> refusals{0};
  std::atomic<std::size_t> limit{SIZE_MAX};
  std::atomic<std::size_t> soft_limit{SIZE_MAX};
  std::atomic<bool> soft_armed{true};
  SoftLimitFn on_soft = nullptr;
  void* ctx = nullptr;
  // Tree links: written under g_tree; parent is fixed for the node's life.
  Node* parent = nullptr;
  Node* first_child = nullptr;
  Node* next = nullptr;
  Node* prev = nullptr;
  char* name = nullptr;
  std::size_t name_len = 0;
  d::HeapCore* core = nullptr;
  // Unique per creation (g_tree): node memory is reused, never freed, so a
  // thread's wrapper batch can tell that its node became another account.
  std::uint64_t gen = 0;
  alignas(Heap) unsigned char heap_storage[sizeof(Heap)];
  Heap& heap() noexcept { return *std::launder(reinterpret_cast<Heap*>(heap_storage)); }
};

// ---- The charge path (inside malloc: no allocation, no lock). ----

// A scope's per-thread batch bound (see Batch below): 32 KiB.
constexpr std::size_t kBatchBytes = AccountScope::kBatchBytes;

// Text into a fixed buffer, cut at N - 1 bytes, always NUL-terminated (no
// malloc: the charge path formats refusals with it).
template <std::size_t N>
struct Text {
  char buf[N];
  std::size_t len = 0;
  Text() noexcept { buf[0] = '\0'; }
  Text& add(std::string_view s) noexcept {
    for (char c : s) {
      if (len + 1 >= N) break;
      buf[len++] = c;
    }
    buf[len] = '\0';
    return *this;
  }
  Text& dec(std::size_t v) noexcept {
    char d[24];
    int k = 0;
    do {
      d[k++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    while (k > 0 && len + 1 < N) buf[len++] = d[--k];
    buf[len] = '\0';
    return *this;
  }
  std::string_view view() const noexcept { return {buf, len}; }
  void write_to(int fd) const noexcept {
    std::size_t done = 0;
    while (done < len) {
      const ssize_t w = ::write(fd, buf + done, len - done);
      if (w <= 0) {
        if (w < 0 && errno == EINTR) continue;
        return;
      }
      done += static_cast<std::size_t>(w);
    }
  }
};

thread_local AccountRefusal t_refusal;
thread_local bool t_has_refusal = false;

template <std::size_t N>
void add_path(Text<N>& w, const Node* n) noexcept {
  if (n->parent == nullptr) return;
  if (n->parent->parent != nullptr) {
    add_path(w, n->parent);
    w.add("/");
  }
  w.add(std::string_view(n->name, n->name_len));
}

Account make_account(Node* n) noexcept { return Account(n); }
Node* node_of(const Account& a) noexcept { return a.node_; }

void record_refusal(const Node* n, std::size_t used, std::size_t request, std::size_t charge) noexcept {
  Text<sizeof(AccountRefusal::account)> w;
  add_path(w, n);
  AccountRefusal& r = t_refusal;
  const std::string_view s = w.view();
  std::memcpy(r.account, s.data(), s.size());
  r.account[s.size()] = '\0';
  r.used = used;
  r.limit = n->limit.load(std::memory_order_relaxed);
  r.request = request;
  r.charge = charge;
  t_has_refusal = true;
}

void soft_crossed(Node* n, std::size_t now) noexcept {
  const std::size_t soft = n->soft_limit.load(std::memory_order_relaxed);
  if (n->on_soft != nullptr) {
    const Account a = make_account(n);
    n->on_soft(AccountEvent{&a, now, soft}, n->ctx);
    return;
  }
  Text<512> w;
  w.add("alloy account: soft limit crossed: account ");
  add_path(w, n);
  w.add(" holds ").dec(now).add(" bytes, soft limit ").dec(soft).add(" bytes\n");
  w.write_to(2);
}

void publish_others(const Node* n) noexcept;

// record: a refusal counts in refusals() and last_account_refusal() (not for
// carve mode's own charges, which fall back to a per-block one that does).
bool charge_path(Node* n, std::size_t bytes, std::size_t request, std::size_t nblocks,
                 bool record = true) noexcept {
  publish_others(n);  // this thread's batch of another account may share our path
  for (Node* x = n; x != nullptr; x = x->parent) {
    const std::size_t before = x->bytes.fetch_add(bytes, std::memory_order_relaxed);
    const std::size_t after = before + bytes;
    if (after > x->limit.load(std::memory_order_relaxed) || after < before) {
      x->bytes.fetch_sub(bytes, std::memory_order_relaxed);
      for (Node* y = n; y != x; y = y->parent) y->bytes.fetch_sub(bytes, std::memory_order_relaxed);
      if (record) {
        x->refusals.fetch_add(1, std::memory_order_relaxed);
        record_refusal(x, before, request, bytes);
      }
      return false;
    }
  }
  for (Node* x = n; x != nullptr; x = x->parent) {
    if (nblocks != 0) x->blocks.fetch_add(nblocks, std::memory_order_relaxed);
    const std::size_t now = x->bytes.load(std::memory_order_relaxed);
    std::size_t peak = x->peak.load(std::memory_order_relaxed);
    while (now > peak && !x->peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
    if (now > x->soft_limit.load(std::memory_order_relaxed) &&
        x->soft_armed.load(std::memory_order_relaxed) &&
        x->soft_armed.exchange(false, std::memory_order_relaxed)) {
      soft_crossed(x, now);
    }
  }
  return true;
}

void credit_path(Node* n, std::size_t bytes, std::size_t nblocks) noexcept {
  for (Node* x = n; x != nullptr; x = x->parent) {
    const std::size_t after = x->bytes.fetch_sub(bytes, std::memory_order_relaxed) - bytes;
    if (nblocks != 0) x->blocks.fetch_sub(nblocks, std::memory_order_relaxed);
    if (!x->soft_armed.load(std::memory_order_relaxed) &&
        after <= x->soft_limit.load(std::memory_order_relaxed)) {
      x->soft_armed.store(true, std::memory_order_relaxed);
    }
  }
}

// ---- A scope's per-thread batch. ----
//
// While a thread is in an AccountScope, the charges and credits it makes to
// the scope's account (its own allocations, and its frees of that account's
// blocks) are summed here and added to the path's atomics only when the sum
// leaves [-kBatchBytes, room], and when the scope ends (or a nested one
// starts). `room` is, at the last publish, the least headroom on the path
// (limit, or an armed soft limit, minus bytes) capped at kBatchBytes, so:
//   - one thread alone is refused exactly as without the batch;
//   - with several threads in scopes below one limit, each holds at most
//     kBatchBytes unpublished: a hard limit is exceeded by at most
//     kBatchBytes per further such thread, and figures (bytes, blocks, peak)
//     differ from the truth by at most kBatchBytes per such thread until
//     their scopes end, when they are exact again.
// Frees by other threads and every charge outside scopes go straight to the
// atomics (charge_path / credit_path).
// The batch is the engine's (internal.h, ScopeBatch), so that the scoped
// fast lane (scope.cc) adds to it inline; its node is the scope's Node (a
// HeapAccount* is its Node*).
using Batch = d::ScopeBatch;
static_assert(kBatchBytes == static_cast<std::size_t>(d::kScopeBatchBytes));
inline Batch& t_batch() noexcept { return d::t_scope_batch; }
inline Node* batch_node(const Batch& b) noexcept { return reinterpret_cast<Node*>(b.node); }

// Adds a batch's sums to every level of n's path (peaks from `high`, soft
// limits checked: a callback may run).
void publish_path(Node* n, std::size_t bytes, std::size_t blocks, std::size_t high) noexcept {
  if (bytes == 0 && blocks == 0) return;
  for (Node* x = n; x != nullptr; x = x->parent) {
    const std::size_t before = x->bytes.fetch_add(bytes, std::memory_order_relaxed);
    const std::size_t after = before + bytes;
    if (blocks != 0) x->blocks.fetch_add(blocks, std::memory_order_relaxed);
    const std::size_t top = before + high;
    std::size_t peak = x->peak.load(std::memory_order_relaxed);
    while (top > peak && !x->peak.compare_exchange_weak(peak, top, std::memory_order_relaxed)) {
    }
    const std::size_t soft = x->soft_limit.load(std::memory_order_relaxed);
    if (x->soft_armed.load(std::memory_order_relaxed)) {
      if (after > soft && x->soft_armed.exchange(false, std::memory_order_relaxed)) {
        soft_crossed(x, after);
      }
    } else if (after <= soft) {
      x->soft_armed.store(true, std::memory_order_relaxed);
    }
  }
}

// The least headroom on n's path (hard limit, or an armed soft limit),
// capped at kBatchBytes: how far a batch may run before it publishes.
std::size_t path_room(const Node* n) noexcept {
  std::size_t room = kBatchBytes;
  for (const Node* x = n; x != nullptr; x = x->parent) {
    std::size_t cap = x->limit.load(std::memory_order_relaxed);
    if (x->soft_armed.load(std::memory_order_relaxed)) {
      const std::size_t soft = x->soft_limit.load(std::memory_order_relaxed);
      if (soft < cap) cap = soft;
    }
    const std::size_t now = x->bytes.load(std::memory_order_relaxed);
    const std::size_t r = cap > now ? cap - now : 0;
    if (r < room) room = r;
  }
  return room;
}

void publish(Batch& b) noexcept {
  Node* const n = batch_node(b);
  if (n == nullptr) return;
  // Taken out of the batch first: a soft-limit callback below may allocate
  // in this scope, charging the batch again.
  const auto bytes = static_cast<std::size_t>(b.bytes);
  const auto blocks = static_cast<std::size_t>(b.blocks);
  const auto high = static_cast<std::size_t>(b.high);
  b.bytes = b.blocks = b.high = 0;
  b.room = 0;
  publish_path(n, bytes, blocks, high);
  b.room = static_cast<std::ptrdiff_t>(path_room(n));
}

// A charge of an account other than this thread's scope account: that
// batch's pending bytes are published first, so one thread's charges are
// always checked exactly, whichever accounts they go to.
void publish_others(const Node* n) noexcept {
  Batch& b = t_batch();
  if (b.node != nullptr && batch_node(b) != n && b.bytes > 0) publish(b);
}

bool hook_charge(d::HeapAccount* a, std::size_t usable, std::size_t request) noexcept {
  Node* const n = reinterpret_cast<Node*>(a);
  Batch& b = t_batch();
  if (batch_node(b) == n) {
    // Past the room (or a big block): publish first, so the exact check
    // below sees this thread's own pending bytes.
    const auto u = static_cast<std::ptrdiff_t>(usable);
    if (b.bytes + u > b.room) publish(b);
    if (b.bytes + u <= b.room) {
      b.bytes += u;
      b.blocks += 1;
      if (b.bytes > b.high) b.high = b.bytes;
      return true;
    }
  }
  return charge_path(n, usable, request, 1);
}
// Carve mode's charge (scope.cc): exact, through the batch when it fits its
// room after a publish, else straight to the path; a refusal is not
// recorded (the scope then allocates per block, and that one is).
bool hook_charge_many(d::HeapAccount* a, std::size_t bytes, std::size_t blocks) noexcept {
  Node* const n = reinterpret_cast<Node*>(a);
  Batch& b = t_batch();
  if (batch_node(b) == n) {
    publish(b);
    if (static_cast<std::ptrdiff_t>(bytes) <= b.room) {
      b.bytes += static_cast<std::ptrdiff_t>(bytes);
      b.blocks += static_cast<std::ptrdiff_t>(blocks);
      if (b.bytes > b.high) b.high = b.bytes;
      return true;
    }
  }
  return charge_path(n, bytes, bytes, blocks, /*record=*/false);
}
void hook_flush(d::HeapAccount* a) noexcept {
  Batch& b = t_batch();
  if (batch_node(b) == reinterpret_cast<Node*>(a)) publish(b);
}
void hook_credit(d::HeapAccount* a, std::size_t usable) noexcept {
  Node* const n = reinterpret_cast<Node*>(a);
  Batch& b = t_batch();
  if (batch_node(b) == n && usable <= kBatchBytes) {
    b.bytes -= static_cast<std::ptrdiff_t>(usable);
    b.blocks -= 1;
    if (b.bytes < -static_cast<std::ptrdiff_t>(kBatchBytes)) publish(b);
    return;
  }
  credit_path(n, usable, 1);
}

// ---- The tree (g_tree). ----

pthread_mutex_t g_tree = PTHREAD_MUTEX_INITIALIZER;
Node* g_root = nullptr;   // g_tree
Heap* g_meta = nullptr;   // nodes and names; g_tree
alignas(Heap) unsigned char g_meta_storage[sizeof(Heap)];
alignas(Node) unsigned char g_root_storage[sizeof(Node)];

void fork_prepare() { pthread_mutex_lock(&g_tree); }
void fork_parent() { pthread_mutex_unlock(&g_tree); }
void fork_child() { g_tree = PTHREAD_MUTEX_INITIALIZER; }

struct TreeLock {
  TreeLock() { pthread_mutex_lock(&g_tree); }
  ~TreeLock() { pthread_mutex_unlock(&g_tree); }
};

Node* g_free_nodes = nullptr;  // destroyed nodes, for reuse (linked by next); g_tree
std::uint64_t g_node_gen = 0;  // g_tree

// ---- A thread's batch of ChargingAllocator charges. ----
//
// ChargingAllocator charges and credits go to this thread's batch for one
// account at a time, published to the path (publish_path) when they would
// pass the path's least headroom (capped at kBatchBytes, 32 KiB, as a scope's
// batch), fall below -kBatchBytes, when the thread charges another account
// through a wrapper, calls Account::publish_thread(), or exits. So a thread
// that charges only through wrappers is refused exactly; T threads below one
// limit exceed it by at most (T - 1) x 32 KiB; figures lag the truth by at
// most 32 KiB per such thread until published. A thread with both a scope
// batch and a wrapper batch on one path: up to 32 KiB per batch.
// The node may be destroyed while the batch names it (its wrapper's blocks
// all freed): then the batch's sums are dropped, which is right, since
// destroy() took the node's published share out of its ancestors and the
// batch held the rest of a subtree that is now empty; likewise after a
// reset() (`resets`). Checked under g_tree: nodes are reused, never freed.
struct WrapBatch {
  Node* node;
  std::uint64_t gen;
  std::uint64_t resets;
  std::ptrdiff_t bytes;
  std::ptrdiff_t blocks;
  std::ptrdiff_t high;
  std::ptrdiff_t room;
};
__thread WrapBatch t_wrap __attribute__((tls_model("initial-exec"))) = {};
pthread_key_t g_wrap_key;  // destructor: publishes an exiting thread's batch; g_tree
bool g_wrap_key_ok = false;

// Publishes w; `check`: w's node may be gone (another account is charged
// now, or the thread exits), so it is checked under g_tree first.
void publish_wrap(WrapBatch& w, bool check) noexcept {
  Node* const n = w.node;
  if (n == nullptr) return;
  const auto bytes = static_cast<std::size_t>(w.bytes);
  const auto blocks = static_cast<std::size_t>(w.blocks);
  const auto high = static_cast<std::size_t>(w.high);
  w.bytes = w.blocks = w.high = 0;
  w.room = 0;
  if (bytes == 0 && blocks == 0) return;
  if (check) {
    TreeLock lock;
    if (n->gen == w.gen && n->hook.resets.load(std::memory_order_relaxed) == w.resets) {
      publish_path(n, bytes, blocks, high);
    }
    return;
  }
  publish_path(n, bytes, blocks, high);
}

void wrap_thread_exit(void*) noexcept {
  publish_wrap(t_wrap, true);
  t_wrap.node = nullptr;
}

// w takes node n (a live account: its wrapper is in use).
void wrap_take(WrapBatch& w, Node* n) noexcept {
  if (w.node != nullptr && w.node != n) publish_wrap(w, true);
  if (w.node != n || w.gen != n->gen) {
    if (g_wrap_key_ok) pthread_setspecific(g_wrap_key, &w);  // non-null: the destructor runs
    w = WrapBatch{n, n->gen, n->hook.resets.load(std::memory_order_relaxed), 0, 0, 0, 0};
  }
}

bool wrap_charge_slow(Node* n, std::size_t len) noexcept {
  WrapBatch& w = t_wrap;
  wrap_take(w, n);
  publish_wrap(w, false);
  publish_others(n);  // a scope batch of another account that may share our path
  w.room = static_cast<std::ptrdiff_t>(path_room(n));
  if (static_cast<std::ptrdiff_t>(len) <= w.room) {
    w.bytes += static_cast<std::ptrdiff_t>(len);
    w.blocks += 1;
    if (w.bytes > w.high) w.high = w.bytes;
    return true;
  }
  return charge_path(n, len, len, 1);
}

void wrap_credit_slow(Node* n, std::size_t len) noexcept {
  WrapBatch& w = t_wrap;
  if (len > kBatchBytes) {
    credit_path(n, len, 1);
    return;
  }
  wrap_take(w, n);
  w.bytes -= static_cast<std::ptrdiff_t>(len);
  w.blocks -= 1;
  if (w.bytes < -static_cast<std::ptrdiff_t>(kBatchBytes)) publish_wrap(w, false);
}

// A heap for node n with its hooks set before its first block.
bool give_heap(Node* n) noexcept {
  auto h = Heap::create();
  if (!h) return false;
  ::new (n->heap_storage) Heap(std::move(*h));
  n->core = static_cast<d::HeapCore*>(n->heap().allocator().ctx);  // the handle's ctx is its HeapCore
  n->hook.charge = hook_charge;
  n->hook.credit = hook_credit;
  n->hook.charge_many = hook_charge_many;
  n->hook.flush = hook_flush;
  n->core->account = &n->hook;
  return true;
}

// A lease of n for this thread's scope, its lock held; null if none can be
// made (the scope then allocates through heap_alloc_raw per call).
Lease* take_lease(Node* n) noexcept {
  for (Lease* l = n->leases.load(std::memory_order_acquire); l != nullptr; l = l->next) {
    if (!l->busy.load(std::memory_order_relaxed) &&
        !l->busy.exchange(true, std::memory_order_acquire)) {
      l->core->leased.store(true, std::memory_order_release);  // before the lock: fork_prepare
      l->core->lock.lock();  // a free from another thread may hold it briefly
      return l;
    }
  }
  TreeLock lock;
  if (g_meta == nullptr) return nullptr;
  void* mem = g_meta->alloc(sizeof(Lease), alignof(Lease));
  if (mem == nullptr) return nullptr;
  auto h = Heap::create();
  if (!h) {
    Heap::free(mem);
    return nullptr;
  }
  auto* l = ::new (mem) Lease();
  ::new (l->heap_storage) Heap(std::move(*h));
  l->core = static_cast<d::HeapCore*>(l->heap().allocator().ctx);
  l->core->account = &n->hook;
  l->busy.store(true, std::memory_order_relaxed);
  l->core->leased.store(true, std::memory_order_release);
  l->core->lock.lock();
  l->next = n->leases.load(std::memory_order_relaxed);
  n->leases.store(l, std::memory_order_release);
  return l;
}

void give_back(Lease* l) noexcept {
  l->core->lock.unlock();
  l->core->leased.store(false, std::memory_order_release);
  l->busy.store(false, std::memory_order_release);
}

// g_tree held.
Node* root_locked() noexcept {
  if (g_root != nullptr) return g_root;
  auto meta = Heap::create();
  if (!meta) return nullptr;
  g_meta = ::new (g_meta_storage) Heap(std::move(*meta));
  auto* r = ::new (g_root_storage) Node();
  static char kRootName[] = "root";
  r->name = kRootName;
  r->name_len = 4;
  if (!give_heap(r)) return nullptr;
  pthread_atfork(fork_prepare, fork_parent, fork_child);
  g_wrap_key_ok = pthread_key_create(&g_wrap_key, wrap_thread_exit) == 0;
  r->gen = ++g_node_gen;
  g_root = r;
  return r;
}

// Frees every block of n's subtree and zeroes its figures; ancestors lose
// what it held. g_tree held.
void reset_locked(Node* n) noexcept {
  const std::size_t b = n->bytes.load(std::memory_order_relaxed);
  const std::size_t k = n->blocks.load(std::memory_order_relaxed);
  for (Node* x = n->parent; x != nullptr; x = x->parent) {
    x->bytes.fetch_sub(b, std::memory_order_relaxed);
    x->blocks.fetch_sub(k, std::memory_order_relaxed);
    if (!x->soft_armed.load(std::memory_order_relaxed) &&
        x->bytes.load(std::memory_order_relaxed) <= x->soft_limit.load(std::memory_order_relaxed)) {
      x->soft_armed.store(true, std::memory_order_relaxed);
    }
  }
  // Preorder walk of the subtree without recursion.
  for (Node* m = n; m != nullptr;) {
    m->hook.resets.fetch_add(1, std::memory_order_acq_rel);  // blocks kept outside its heaps
    d::heap_reset(m->core);
    for (Lease* l = m->leases.load(std::memory_order_acquire); l != nullptr; l = l->next) {
      d::heap_reset(l->core);
    }
    m->bytes.store(0, std::memory_order_relaxed);
    m->blocks.store(0, std::memory_order_relaxed);
    m->soft_armed.store(true, std::memory_order_relaxed);
    if (m->first_child != nullptr) {
      m = m->first_child;
      continue;
    }
    while (m != n && m->next == nullptr) m = m->parent;
    m = m == n ? nullptr : m->next;
  }
}

// Unlinks and frees n's subtree (after reset_locked). g_tree held.
void destroy_locked(Node* n) noexcept {
  while (n->first_child != nullptr) destroy_locked(n->first_child);
  if (n->prev != nullptr) n->prev->next = n->next; else n->parent->first_child = n->next;
  if (n->next != nullptr) n->next->prev = n->prev;
  n->heap().~Heap();
  for (Lease* l = n->leases.load(std::memory_order_relaxed); l != nullptr;) {
    Lease* const next = l->next;
    l->heap().~Heap();
    l->~Lease();
    Heap::free(l);
    l = next;
  }
  Heap::free(n->name);
  n->~Node();
  // Kept for reuse, never freed: a thread's wrapper batch may still name it.
  auto* dead = ::new (static_cast<void*>(n)) Node();
  dead->next = g_free_nodes;
  g_free_nodes = dead;
}

}  // namespace account_detail

using account_detail::Node;
namespace d = engine::detail;

// ---- AccountRefusal. ----

std::size_t AccountRefusal::format(char* buf, std::size_t n) const noexcept {
  if (n == 0) return 0;
  account_detail::Text<512> w;
  w.add("memory limit exceeded: account ").add(account[0] != '\0' ? account : "root");
  w.add(" (used ").dec(used).add(" bytes, limit ").dec(limit).add(" bytes) refused ");
  w.dec(request).add(" bytes");
  if (charge != request) w.add(" (").dec(charge).add(" charged)");
  const std::string_view s = w.view();
  const std::size_t len = s.size() < n - 1 ? s.size() : n - 1;
  std::memcpy(buf, s.data(), len);
  buf[len] = '\0';
  return len;
}

std::string AccountRefusal::message() const {
  char buf[512];
  const std::size_t n = format(buf, sizeof(buf));
  return std::string(buf, n);
}

const AccountRefusal* last_account_refusal() noexcept {
  return account_detail::t_has_refusal ? &account_detail::t_refusal : nullptr;
}

// ---- Account. ----

Account Account::root() noexcept {
  account_detail::TreeLock lock;
  return Account(account_detail::root_locked());
}

Result<Account> Account::create(std::string_view name, const AccountOptions& options) const {
  if (node_ == nullptr || name.empty() || name.size() > 200 ||
      name.find_first_of("/\"") != std::string_view::npos) {
    return Err(AllocError::kOutOfMemory);
  }
  account_detail::TreeLock lock;
  for (Node* c = node_->first_child; c != nullptr; c = c->next) {
    if (std::string_view(c->name, c->name_len) == name) return Err(AllocError::kOutOfMemory);
  }
  Heap* meta = account_detail::g_meta;
  auto* nm = static_cast<char*>(meta->alloc(name.size() + 1, 1));
  if (nm == nullptr) return Err(AllocError::kOutOfMemory);
  void* mem = account_detail::g_free_nodes;
  if (mem != nullptr) {
    account_detail::g_free_nodes = account_detail::g_free_nodes->next;
    static_cast<Node*>(mem)->~Node();
  } else {
    mem = meta->alloc(sizeof(Node), alignof(Node));
  }
  if (mem == nullptr) {
    Heap::free(nm);
    return Err(AllocError::kOutOfMemory);
  }
  auto* n = ::new (mem) Node();
  n->gen = ++account_detail::g_node_gen;
  std::memcpy(nm, name.data(), name.size());
  nm[name.size()] = '\0';
  n->name = nm;
  n->name_len = name.size();
  n->limit.store(options.limit, std::memory_order_relaxed);
  n->soft_limit.store(options.soft_limit, std::memory_order_relaxed);
  n->on_soft = options.on_soft_limit;
  n->ctx = options.ctx;
  if (!account_detail::give_heap(n)) {
    n->~Node();
    auto* dead = ::new (mem) Node();  // back for reuse: never freed (WrapBatch)
    dead->next = account_detail::g_free_nodes;
    account_detail::g_free_nodes = dead;
    Heap::free(nm);
    return Err(AllocError::kOutOfMemory);
  }
  n->parent = node_;
  n->next = node_->first_child;
  if (n->next != nullptr) n->next->prev = n;
  node_->first_child = n;
  return Account(n);
}

Account Account::child(std::string_view name) const {
  if (node_ == nullptr) return Account();
  account_detail::TreeLock lock;
  for (Node* c = node_->first_child; c != nullptr; c = c->next) {
    if (std::string_view(c->name, c->name_len) == name) return Account(c);
  }
  return Account();
}

void Account::reset() noexcept {
  if (node_ == nullptr) return;
  account_detail::TreeLock lock;
  account_detail::reset_locked(node_);
}

void Account::destroy() noexcept {
  if (node_ == nullptr) return;
  account_detail::TreeLock lock;
  account_detail::reset_locked(node_);
  if (node_->parent != nullptr) account_detail::destroy_locked(node_);
  node_ = nullptr;
}

Allocator Account::allocator() const noexcept { return node_->heap().allocator(); }
bool Account::set_profile_rate(std::int64_t mean_bytes) noexcept {
  return node_->heap().set_profile_rate(mean_bytes);
}
bool Account::write_profile(const char* path, bool live_only) const noexcept {
  return node_->heap().write_profile(path, live_only);
}

std::string_view Account::name() const noexcept { return {node_->name, node_->name_len}; }

std::string Account::path() const {
  account_detail::Text<4096> w;
  account_detail::add_path(w, node_);
  return std::string(w.view());
}

Account Account::parent() const noexcept { return Account(node_->parent); }
std::size_t Account::bytes() const noexcept { return node_->bytes.load(std::memory_order_relaxed); }
std::size_t Account::blocks() const noexcept { return node_->blocks.load(std::memory_order_relaxed); }
std::size_t Account::peak() const noexcept { return node_->peak.load(std::memory_order_relaxed); }
std::size_t Account::refusals() const noexcept {
  return node_->refusals.load(std::memory_order_relaxed);
}
std::size_t Account::limit() const noexcept { return node_->limit.load(std::memory_order_relaxed); }
std::size_t Account::soft_limit() const noexcept {
  return node_->soft_limit.load(std::memory_order_relaxed);
}
void Account::set_limit(std::size_t bytes) noexcept {
  node_->limit.store(bytes, std::memory_order_relaxed);
}
void Account::set_soft_limit(std::size_t bytes) noexcept {
  node_->soft_limit.store(bytes, std::memory_order_relaxed);
  node_->soft_armed.store(true, std::memory_order_relaxed);
}

bool Account::charge(std::size_t bytes, std::size_t request, bool block) noexcept {
  return account_detail::charge_path(node_, bytes, request, block ? 1 : 0);
}
void Account::credit(std::size_t bytes, bool block) noexcept {
  account_detail::credit_path(node_, bytes, block ? 1 : 0);
}

std::vector<AccountSnapshot> Account::snapshot() const {
  std::vector<AccountSnapshot> out;
  if (node_ == nullptr) return out;
  account_detail::TreeLock lock;
  struct Walk {
    static void run(Node* n, unsigned depth, std::vector<AccountSnapshot>& out) {
      AccountSnapshot s;
      s.path = Account(n).path();
      s.name.assign(n->name, n->name_len);
      s.depth = depth;
      s.bytes = n->bytes.load(std::memory_order_relaxed);
      s.blocks = n->blocks.load(std::memory_order_relaxed);
      s.peak = n->peak.load(std::memory_order_relaxed);
      s.limit = n->limit.load(std::memory_order_relaxed);
      s.soft_limit = n->soft_limit.load(std::memory_order_relaxed);
      s.refusals = n->refusals.load(std::memory_order_relaxed);
      std::size_t kids = 0, kids_bytes = 0;
      for (Node* c = n->first_child; c != nullptr; c = c->next) {
        ++kids;
        kids_bytes += c->bytes.load(std::memory_order_relaxed);
      }
      s.children = kids;
      s.own_bytes = s.bytes >= kids_bytes ? s.bytes - kids_bytes : 0;
      out.push_back(std::move(s));
      // Children in creation order (the list is newest first).
      Node* last = n->first_child;
      while (last != nullptr && last->next != nullptr) last = last->next;
      for (Node* c = last; c != nullptr; c = c->prev) run(c, depth + 1, out);
    }
  };
  Walk::run(node_, 0, out);
  return out;
}

void Account::publish_thread() noexcept {
  account_detail::publish_wrap(account_detail::t_wrap, true);
  account_detail::Batch& b = account_detail::t_batch();
  if (b.node != nullptr) account_detail::publish(b);
}

// ---- AccountScope. ----

AccountScope::AccountScope(Account account) noexcept {
  d::scope_suspend_carve();  // an enclosing scope's lease, into its own batch (resumed at our end)
  account_detail::Batch& b = account_detail::t_batch();
  account_detail::publish(b);  // an enclosing scope's batch
  prev_batch_ = b.node;
  b.node = &account.node_->hook;
  account_detail::publish(b);  // computes its room
  // A profiled account's scope leases no heap: its calls go through the
  // account's own heap (heap_alloc_raw), where they are sampled; a lease's
  // inline fast path never reaches the sampler.
  account_detail::Lease* lease = d::heap_profile_rate(account.node_->core) > 0
                                     ? nullptr
                                     : account_detail::take_lease(account.node_);
  lease_ = lease;
  const d::ScopeSaved saved =
      d::scope_enter(account.node_->core, lease != nullptr ? &lease->core->local : nullptr);
  heap_ = saved.heap;
  prev_lane_ = saved.lane;
  prev_local_ = saved.local;
  outer_ = saved.outer;
}

AccountScope::~AccountScope() {
  d::scope_exit(d::ScopeSaved{static_cast<d::HeapCore*>(heap_),
                              static_cast<d::ThreadHeap*>(prev_lane_),
                              static_cast<d::ThreadHeap*>(prev_local_), outer_});
  if (lease_ != nullptr) account_detail::give_back(static_cast<account_detail::Lease*>(lease_));
  account_detail::Batch& b = account_detail::t_batch();
  account_detail::publish(b);
  b.node = static_cast<d::HeapAccount*>(prev_batch_);
  account_detail::publish(b);
  d::scope_resume_carve();  // an enclosing scope's lease, in its own batch again
}

// ---- ChargingAllocator. ----

namespace {

struct Charging {
  static Account& account(void* ctx) {
    return *reinterpret_cast<Account*>(ctx);  // ChargingAllocator's first member
  }
  static Allocator& child(void* ctx) {
    return *reinterpret_cast<Allocator*>(static_cast<char*>(ctx) + sizeof(Account));
  }
  // Through this thread's wrapper batch (account_detail::WrapBatch): plain
  // adds while it stays within its room.
  static bool charge(Node* n, std::size_t len) {
    account_detail::WrapBatch& w = account_detail::t_wrap;
    const std::ptrdiff_t now = w.bytes + static_cast<std::ptrdiff_t>(len);
    if (w.node == n && w.gen == n->gen && now <= w.room) [[likely]] {
      w.bytes = now;
      w.blocks += 1;
      if (now > w.high) w.high = now;
      return true;
    }
    return account_detail::wrap_charge_slow(n, len);
  }
  static void credit(Node* n, std::size_t len) {
    account_detail::WrapBatch& w = account_detail::t_wrap;
    const std::ptrdiff_t now = w.bytes - static_cast<std::ptrdiff_t>(len);
    if (w.node == n && w.gen == n->gen &&
        now >= -static_cast<std::ptrdiff_t>(account_detail::kBatchBytes)) [[likely]] {
      w.bytes = now;
      w.blocks -= 1;
      return;
    }
    account_detail::wrap_credit_slow(n, len);
  }
  static void* vt_alloc(void* ctx, std::size_t len, Alignment a, std::uintptr_t ret) {
    Node* const n = account_detail::node_of(account(ctx));
    if (!charge(n, len)) return nullptr;
    Allocator& c = child(ctx);
    void* p = c.vtable->alloc(c.ctx, len, a, ret);
    if (p == nullptr) credit(n, len);
    return p;
  }
  static bool vt_resize(void* ctx, Bytes m, Alignment a, std::size_t new_len, std::uintptr_t ret) {
    Allocator& c = child(ctx);
    if (new_len > m.size()) {
      const std::size_t grow = new_len - m.size();
      if (!account(ctx).charge(grow, grow, false)) return false;
      if (c.vtable->resize(c.ctx, m, a, new_len, ret)) return true;
      account(ctx).credit(grow, false);
      return false;
    }
    if (!c.vtable->resize(c.ctx, m, a, new_len, ret)) return false;
    account(ctx).credit(m.size() - new_len, false);
    return true;
  }
  static void* vt_remap(void* ctx, Bytes m, Alignment a, std::size_t new_len, std::uintptr_t ret) {
    Allocator& c = child(ctx);
    if (new_len > m.size()) {
      const std::size_t grow = new_len - m.size();
      if (!account(ctx).charge(grow, grow, false)) return nullptr;
      if (void* p = c.vtable->remap(c.ctx, m, a, new_len, ret)) return p;
      account(ctx).credit(grow, false);
      return nullptr;
    }
    void* p = c.vtable->remap(c.ctx, m, a, new_len, ret);
    if (p != nullptr) account(ctx).credit(m.size() - new_len, false);
    return p;
  }
  static void vt_free(void* ctx, Bytes m, Alignment a, std::uintptr_t ret) {
    Allocator& c = child(ctx);
    c.vtable->free(c.ctx, m, a, ret);
    credit(account_detail::node_of(account(ctx)), m.size());
  }
  // Ownership is the child's: the wrapper hands out the child's blocks.
  static Ownership vt_owns(void* ctx, const void* p) { return child(ctx).owns(p); }
};

constexpr VTable kChargingVTable = make_vtable<Charging>();

}  // namespace

Allocator ChargingAllocator::allocator() noexcept {
  static_assert(std::is_standard_layout_v<ChargingAllocator>);
  return Allocator{this, &kChargingVTable};
}

}  // namespace alloy
