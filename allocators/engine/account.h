// alloy::Account — memory accounts: a tree of named budgets that a handle,
// a wrapper, or a thread's global malloc/new are charged to, exactly.
//
// What it is for: capping and counting memory per subsystem, tenant or
// request (PostgreSQL's MemoryContext tree, Kudu's MemTracker, ClickHouse's
// MemoryTracker), with frees credited to the account that holds the block
// whoever frees it and whenever. Each account owns an alloy::Heap; a block's
// segment names its heap and the heap names its account, so a free from any
// thread, after the scope that allocated it ended, through free, delete or a
// handle, credits the right account.
//
// Figures: `bytes` is the usable size of the account's live blocks (the size
// class a block was rounded to: what the heap really handed out; a
// ChargingAllocator charges the requested length, all its child tells it),
// `blocks` their number, `peak` the highest `bytes` seen. Every figure of an
// account includes its descendants: a charge outside scopes adds to every
// level of the path (one atomic add per level for bytes and one for blocks,
// so cost grows with depth), exact at every instant. A charge that would take
// any account on the path above its hard limit is refused: nothing is
// charged, the allocation returns null (malloc: NULL with ENOMEM; operator
// new: the new_handler, then std::bad_alloc; a handle: kOutOfMemory) and the
// refusal is recorded, naming the account (last_account_refusal()). Two
// threads near a shared limit may both be refused where one of them alone
// would fit (each adds, sees the sum over, and takes its add back). The
// heap's own ceiling (committed pages, HeapOptions) is not used; the limits
// here count blocks.
//
// Batching in scopes: a thread in an AccountScope sums its charges and
// credits to the scope's account in a per-thread batch and adds them to the
// path only when the batch would pass the path's least headroom (limit or
// armed soft limit), or |batch| > kBatchBytes (32 KiB), or the scope ends. So
// one thread alone is refused exactly as without it; with T threads in
// scopes below one limit, that limit is exceeded by at most (T - 1) x 32 KiB,
// and the figures of the path differ from the truth by at most 32 KiB per
// thread in such a scope, exact again when the scopes end. Frees from other
// threads and handle charges are never batched.
//
// Carve mode: a scope leases a heap of its account for its life and points
// the thread's fast path at it, so scoped blocks up to 64 KiB are charged
// per carve (when their page carves them, about 4 KiB at a time), not per
// block: inside the scope the account's figures also count the free blocks
// of the leased heap's pages (never less than the truth beyond the batch
// bound above; more by those free blocks) and are exact again when the scope
// ends. A carve past the batch's room publishes; past a limit the scope goes
// on per block for the rest of its life, so refusals stay exact. Soft limits
// see the carved figure.
//
// Batching in wrappers: a ChargingAllocator charges and credits a
// per-thread batch too (one account at a time, the same 32 KiB / headroom
// rule): a thread alone is refused exactly, T threads below one limit exceed
// it by at most (T - 1) x 32 KiB, and the figures lag by at most 32 KiB per
// thread until the batch is published: when it passes its bounds, when the
// thread charges another account through a wrapper, calls publish_thread(),
// or exits. A thread with both a scope and a wrapper batch on one path may
// exceed a limit alone by up to 32 KiB (the other batch).
//
// Three ways to charge:
//   1. account.allocator(): a handle over the account's own heap.
//      ChargingAllocator(account, child): any handle, charged to the account.
//   2. AccountScope scope(account): until it ends, every malloc, calloc,
//      realloc, posix_memalign/aligned_alloc (any alignment) and operator
//      new of this thread (through the malloc adapter, or alloy::engine::alloc
//      directly) is served from the account's heap. Scopes nest (the inner
//      one wins). realloc keeps a block in the account that holds it.
//   3. Frees: credited to the holding account, from any thread, any time.
// An account's large (> 64 KiB) and huge blocks never grow in place (realloc
// moves them), so what was charged is what is credited.
//
// Lifetimes: reset() frees every block of the account and its descendants
// at the cost of their pages (as Heap::destroy) and keeps the accounts;
// destroy() removes the subtree. Using or freeing a block after its account
// was reset or destroyed is the caller's bug (the pages are gone: checked
// builds refuse and report such a free, as Heap::free does). An account must
// not be reset or destroyed while a thread is inside a scope of it or of a
// descendant, or allocates from it.
//
// Reports: text (one line an account, indented: PostgreSQL's
// MemoryContextStats), JSON, snapshot() for metrics, Prometheus text
// exposition (alloy_account_bytes{account="server/requests/42"} 1234).
//
// Cost per call: creating an account maps its heap (16 KiB, plus segments
// on first use) and takes the tree's lock; its node and name come from a
// private alloy::Heap of the accounts library, never from a scope's heap.
// A handle's charge or credit is two atomic adds per level of the path
// (plus a peak update when a new peak is reached); a wrapper's or a scope's,
// a few plain adds on the thread's batch, the atomics once per 32 KiB. A
// scope leases a heap of its account for its life (its lock held; the first
// lease of an account maps a heap); entering and ending a scope walk the
// lease's pages once. In carve mode scoped malloc/free cost what unscoped do
// (the same inline pop and push); after a fall back per block, blocks up to
// 1 KiB take the malloc adapter's lane (a pop or owner push plus the batch,
// no lock), the rest the engine's slow path. The unscoped fast path is
// unchanged. Figures in bench/README.md.
// Thread safety: every member may be called from any thread; create,
// destroy, reset and the reports serialize on one process-wide lock. The
// soft-limit callback runs on the allocating thread, outside engine locks,
// possibly inside malloc: it may allocate (it will not fire again until the
// account falls back under its soft limit), but must not create, reset,
// destroy or report accounts (its thread may hold the tree's lock).
// Throwing std::bad_alloc allocates the exception object through malloc:
// in an exhausted scope that is refused too (refusals() counts it) and
// libstdc++ takes it from its emergency pool.
//
// Example:
//   alloy::Account requests = *alloy::Account::root().create("requests", {.limit = 64 << 20});
//   alloy::Account req = *requests.create("42", {.limit = 1 << 20});
//   {
//     alloy::AccountScope scope(req);         // malloc/new now charge "requests/42"
//     std::vector<char> buf(4096);            // charged
//     if (malloc(2 << 20) == nullptr)         // over the 1 MiB limit: NULL, ENOMEM
//       std::puts(alloy::last_account_refusal()->message().c_str());
//   }
//   std::string text = alloy::Account::root().report_text();
//   req.destroy();                            // every block of requests/42 freed
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "alloy/alloc_iface/allocator.h"

namespace alloy {

class Account;

namespace account_detail {
struct Node;
Account make_account(Node* n) noexcept;
Node* node_of(const Account& a) noexcept;
}

// A soft limit crossed upward: which account, its bytes now, the soft limit.
struct AccountEvent {
  const Account* account;
  std::size_t bytes;
  std::size_t soft_limit;
};
using SoftLimitFn = void (*)(const AccountEvent& event, void* ctx);

struct AccountOptions {
  // Bytes the account and its descendants may hold; past it allocations
  // below it are refused.
  std::size_t limit = SIZE_MAX;
  // Crossing it upward calls on_soft_limit once (or, without one, writes one
  // line to stderr); re-armed when the account falls back to it or below.
  std::size_t soft_limit = SIZE_MAX;
  SoftLimitFn on_soft_limit = nullptr;
  void* ctx = nullptr;
};

// A refusal, as data: a copy, valid after the account is gone.
struct AccountRefusal {
  char account[256] = {};     // path of the account whose limit refused ("requests/42")
  std::size_t used = 0;       // its bytes before the request
  std::size_t limit = 0;      // its hard limit
  std::size_t request = 0;    // bytes asked for
  std::size_t charge = 0;     // bytes it would have charged (the block's usable size)
  // "memory limit exceeded: account requests/42 (used 1040384 bytes, limit
  // 1048576 bytes) refused 2097152 bytes", written into buf (no malloc);
  // returns the length (cut to n - 1).
  std::size_t format(char* buf, std::size_t n) const noexcept;
  std::string message() const;
};
// This thread's most recent refusal, or null if none yet.
const AccountRefusal* last_account_refusal() noexcept;

// One account in a snapshot (preorder; depth 0 is the account asked).
struct AccountSnapshot {
  std::string path;    // "server/requests/42" ("" for the root)
  std::string name;
  unsigned depth = 0;
  std::size_t bytes = 0;       // with descendants
  std::size_t own_bytes = 0;   // without them
  std::size_t blocks = 0;      // with descendants
  std::size_t peak = 0;
  std::size_t limit = SIZE_MAX;
  std::size_t soft_limit = SIZE_MAX;
  std::size_t refusals = 0;    // refusals by this account's own limit
  std::size_t children = 0;
};

// A reference to an account (two words' worth of pointer; copy freely). An
// account lives until destroy() of it or an ancestor.
class Account {
 public:
  Account() = default;
  // The process root: no limit unless set; every account descends from it.
  static Account root() noexcept;

  // A child named `name` (1..200 bytes, no '/' or '"', unique among its
  // siblings). A bad or duplicate name, or no memory for the account's heap,
  // is kOutOfMemory and nothing is created.
  Result<Account> create(std::string_view name, const AccountOptions& options = {}) const;
  // The child named `name`, or an unset Account.
  Account child(std::string_view name) const;

  // Frees every block of this account and its descendants (their pages go
  // back to the OS) and makes their figures 0 (peaks kept); ancestors lose
  // what the subtree held. The accounts stay.
  void reset() noexcept;
  // reset(), then removes the subtree (not the root: it is only reset).
  // *this and every copy of it become dangling.
  void destroy() noexcept;

  explicit operator bool() const noexcept { return node_ != nullptr; }
  bool operator==(const Account& o) const noexcept { return node_ == o.node_; }

  // A handle over this account's own heap: every block charged here.
  Allocator allocator() const noexcept;
  // A heap profile of this account's own blocks (not its descendants'): its
  // heap's (alloy::Heap::set_profile_rate / write_profile, heap.h). The
  // handle's allocations and a scope's malloc/new are sampled; reset()
  // forgets the live samples, destroy() the profile. While a rate is set,
  // a scope entered on this account takes no leased heap: each call goes
  // through the account's heap under its lock (about 9x a leased scope's
  // instructions, bench/README.md) so that every one can be sampled.
  bool set_profile_rate(std::int64_t mean_bytes) noexcept;
  bool write_profile(const char* path, bool live_only = false) const noexcept;

  std::string_view name() const noexcept;
  std::string path() const;
  Account parent() const noexcept;
  std::size_t bytes() const noexcept;
  std::size_t blocks() const noexcept;
  std::size_t peak() const noexcept;
  std::size_t refusals() const noexcept;
  std::size_t limit() const noexcept;
  std::size_t soft_limit() const noexcept;
  // A lower limit than bytes() refuses new charges until frees bring it down.
  void set_limit(std::size_t bytes) noexcept;
  void set_soft_limit(std::size_t bytes) noexcept;

  // Charges `bytes` (one block when `block`) to this account and every
  // ancestor, or refuses (false; nothing charged; last_account_refusal()
  // says why). Never allocates. For allocators that charge by hand.
  bool charge(std::size_t bytes, std::size_t request, bool block = true) noexcept;
  void credit(std::size_t bytes, bool block = true) noexcept;

  // Publishes what this thread's batches hold (its ChargingAllocator batch,
  // and its scope's, in a scope) to the accounts' figures now; they are
  // otherwise published at their bounds, when the thread charges another
  // account through a wrapper, ends its scope, or exits.
  static void publish_thread() noexcept;

  // Reports of this account and its descendants.
  std::vector<AccountSnapshot> snapshot() const;
  // "requests: 2 blocks, 4128 bytes (own 0), peak 1052704, limit 67108864"
  // one line each, two spaces per level.
  std::string report_text() const;
  std::string report_json() const;
  // alloy_account_bytes / _blocks / _peak_bytes / _limit_bytes gauges and
  // alloy_account_refusals_total, one sample per account, with HELP and TYPE.
  std::string report_prometheus() const;

 private:
  friend class AccountScope;
  friend Account account_detail::make_account(account_detail::Node* n) noexcept;
  friend account_detail::Node* account_detail::node_of(const Account& a) noexcept;
  explicit Account(account_detail::Node* n) noexcept : node_(n) {}
  account_detail::Node* node_ = nullptr;
};

// While alive, this thread's malloc/new/engine::alloc are served from
// `account`'s heap and charged to it. Not movable; end scopes in reverse
// order of creation (they nest).
class AccountScope {
 public:
  // The per-thread batch bound (see "Batching in scopes" above).
  static constexpr std::size_t kBatchBytes = 32 << 10;

  explicit AccountScope(Account account) noexcept;
  ~AccountScope();
  AccountScope(const AccountScope&) = delete;
  AccountScope& operator=(const AccountScope&) = delete;

 private:
  void* heap_;
  void* prev_batch_;
  void* lease_;      // the account's heap this scope leases (null: none)
  void* prev_lane_;
  void* prev_local_;
  bool outer_;
};

// Charges `account` for every block of `child` (its requested length), and
// credits it at the block's free; resize/remap charge or credit the
// difference. Owns no memory: frees go to the child. Cost: a few plain adds
// on this thread's wrapper batch ("Batching in wrappers" above) over the
// child's own cost, the atomics once per 32 KiB; resize and remap charge
// exactly (two atomic adds per level). Thread safety: as the child. The
// account must outlive the wrapper's blocks.
class ChargingAllocator {
 public:
  ChargingAllocator(Account account, Allocator child) noexcept : account_(account), child_(child) {}
  Allocator allocator() noexcept;
  Account account() const noexcept { return account_; }

 private:
  Account account_;
  Allocator child_;
};

}  // namespace alloy
