// Blocks aligned above what the engine serves (see malloc_internal.h).
//
// The engine refuses alignments above 2 MiB (a block's segment header must
// precede it within its 4 MiB unit), but posix_memalign, aligned_alloc,
// memalign and aligned operator new must honour any power of two. Such blocks
// get their own mapping here: a one-page header just below the block records
// the mapping, and every live header is on a list so free() can tell these
// blocks from foreign pointers without touching memory it does not own.
// They are rare, so a spin lock and a list walk are fine.
#include <pthread.h>
#include <sys/mman.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "alloy/adapters/malloc/malloc_internal.h"

namespace alloy::malloc_adapter::internal {
namespace {

struct BigHeader {
  BigHeader* next;
  BigHeader* prev;
  void* block;           // the aligned block: header page + page size
  std::size_t map_len;   // header page + usable bytes
  std::size_t usable;    // whole pages
  // The AccountScope's account it was charged to (engine internal.h,
  // scope_charge_foreign), or null.
  engine::detail::HeapAccount* account;
  std::uint64_t account_epoch;
};

std::atomic_flag g_lock = ATOMIC_FLAG_INIT;
BigHeader* g_list = nullptr;
std::atomic<std::size_t> g_live{0};
std::atomic<bool> g_atfork_registered{false};

void lock() {
  while (g_lock.test_and_set(std::memory_order_acquire)) {
    // Holders never block inside the lock: spinning is short.
  }
}
void unlock() { g_lock.clear(std::memory_order_release); }

// fork() while another thread holds the lock must not leave it held in the
// child.
void register_atfork_once() {
  bool expected = false;
  if (g_atfork_registered.compare_exchange_strong(expected, true)) {
    pthread_atfork(lock, unlock, unlock);
  }
}

// Unlinks and returns p's header if p is a live big-aligned block.
BigHeader* take(const void* p) {
  BigHeader* found = nullptr;
  lock();
  for (BigHeader* h = g_list; h != nullptr; h = h->next) {
    if (h->block == p) {
      if (h->prev != nullptr) h->prev->next = h->next;
      else g_list = h->next;
      if (h->next != nullptr) h->next->prev = h->prev;
      found = h;
      break;
    }
  }
  unlock();
  if (found != nullptr) g_live.fetch_sub(1, std::memory_order_relaxed);
  return found;
}

}  // namespace

void* big_aligned_alloc(std::size_t size, std::size_t alignment) noexcept {
  const std::size_t page = page_size();
  std::size_t usable, len;
  if (__builtin_add_overflow(size, page - 1, &usable)) return nullptr;
  usable &= ~(page - 1);
  // Header page + block + slack to find an aligned start.
  if (__builtin_add_overflow(usable, page, &len) ||
      __builtin_add_overflow(len, alignment, &len)) {
    return nullptr;
  }
  register_atfork_once();
  // In an AccountScope: charged to its account (its usable pages), or refused.
  engine::detail::HeapAccount* account;
  std::uint64_t epoch;
  if (!engine::detail::scope_charge_foreign(usable, size, &account, &epoch)) return nullptr;
  void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) {
    engine::detail::scope_credit_foreign(account, usable, epoch);
    return nullptr;
  }
  const std::uintptr_t base = reinterpret_cast<std::uintptr_t>(m);
  const std::uintptr_t block = (base + page + alignment - 1) & ~(alignment - 1);
  const std::uintptr_t head = block - page;
  const std::uintptr_t end = block + usable;
  if (head > base) munmap(m, head - base);
  if (base + len > end) munmap(reinterpret_cast<void*>(end), base + len - end);
  auto* h = reinterpret_cast<BigHeader*>(head);
  h->block = reinterpret_cast<void*>(block);
  h->map_len = page + usable;
  h->usable = usable;
  h->account = account;
  h->account_epoch = epoch;
  h->prev = nullptr;
  lock();
  h->next = g_list;
  if (g_list != nullptr) g_list->prev = h;
  g_list = h;
  unlock();
  g_live.fetch_add(1, std::memory_order_relaxed);
  return h->block;
}

bool big_aligned_free(void* p) noexcept {
  if (g_live.load(std::memory_order_relaxed) == 0) return false;
  BigHeader* h = take(p);
  if (h == nullptr) return false;
  engine::detail::scope_credit_foreign(h->account, h->usable, h->account_epoch);
  munmap(h, h->map_len);
  return true;
}

std::size_t big_aligned_usable(const void* p) noexcept {
  if (g_live.load(std::memory_order_relaxed) == 0) return 0;
  std::size_t usable = 0;
  lock();
  for (BigHeader* h = g_list; h != nullptr; h = h->next) {
    if (h->block == p) {
      usable = h->usable;
      break;
    }
  }
  unlock();
  return usable;
}

std::size_t big_aligned_live() noexcept {
  return g_live.load(std::memory_order_relaxed);
}

}  // namespace alloy::malloc_adapter::internal
