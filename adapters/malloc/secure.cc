// The malloc adapter's secure mode (ALLOY_SECURE=1, or a build with
// --define=alloy_secure=1; README "Hardening"): every malloc and free of the
// default heap comes here, because the engine switches its fast paths off
// (engine::secure_mode).
//
// A block of n bytes is allocated with 9 bytes more, laid out as
//   [ n bytes | canary (up to 16 bytes, at least 1) ... | trailer (8 bytes) ]
// with the trailer, at the block's usable end, holding n ^ secret ^ address
// (live) or ~(secret ^ address) (freed). free checks the block (engine
// check_block: interior, unaligned, never handed out), the trailer (double
// free, size), the canary (overflow), the size of a sized delete; then fills
// the block (its first 4 KiB with 0xdf, or all of it with zeros when
// ALLOY_SECURE_ZERO=1), marks it freed and
// parks it in its thread's quarantine of the 64 most recent small frees. A block leaving the
// quarantine must still hold its fill (write after free). malloc_usable_size answers n, so programs that use the
// usable size never write over the canary.
//
// Cost: each malloc and free takes the engine's slow path plus the checks
// above (fills and checks touch at most 256 bytes of a block and 16 of
// canary; zeroing all of it); realloc stays in place within the block.
// Thread safety: the quarantine is per thread (initial-exec TLS, 64 slots),
// emptied when the thread exits (engine::set_thread_exit_hook); no locks.
#include <errno.h>
#include <stdlib.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "alloy/adapters/malloc/malloc_adapter.h"
#include "alloy/adapters/malloc/malloc_internal.h"
#include "alloy/allocators/engine/engine.h"
#include "alloy/allocators/engine/fast_path.h"

extern char** environ;

namespace alloy::malloc_adapter::internal {
namespace {

namespace d = ::alloy::engine::detail;

constexpr std::size_t kTrailer = 8;
constexpr std::size_t kCanaryMax = 16;
constexpr std::size_t kFillMax = 256;
constexpr std::size_t kQuarantineMax = 64 * 1024;  // larger blocks are freed at once
constexpr unsigned kSlots = 64;

std::uintptr_t secret() noexcept { return d::g_link_key * 0x9e3779b97f4a7c15u; }

std::atomic<int> g_zero{-1};  // ALLOY_SECURE_ZERO, read on first use
bool zero_fill() noexcept {
  int z = g_zero.load(std::memory_order_relaxed);
  if (z < 0) {
    const char* v = environ != nullptr ? getenv("ALLOY_SECURE_ZERO") : nullptr;
    z = v != nullptr && v[0] != '\0' && !(v[0] == '0' && v[1] == '\0');
    g_zero.store(z, std::memory_order_relaxed);
  }
  return z != 0;
}
unsigned char fill_byte() noexcept { return zero_fill() ? 0 : 0xdf; }

std::uintptr_t* trailer(void* p, std::size_t usable) noexcept {
  return reinterpret_cast<std::uintptr_t*>(static_cast<char*>(p) + usable - kTrailer);
}
std::uintptr_t live_word(const void* p, std::size_t n) noexcept {
  return n ^ secret() ^ reinterpret_cast<std::uintptr_t>(p);
}
std::uintptr_t freed_word(const void* p) noexcept {
  return ~(secret() ^ reinterpret_cast<std::uintptr_t>(p));
}
unsigned char canary_byte(const void* p, std::size_t i) noexcept {
  const std::uintptr_t w = secret() ^ (reinterpret_cast<std::uintptr_t>(p) >> 3);
  return static_cast<unsigned char>((w >> ((i & 7) * 8)) | 1);  // never 0: a string's NUL breaks it
}
std::size_t canary_len(std::size_t n, std::size_t usable) noexcept {
  const std::size_t room = usable - kTrailer - n;
  return room < kCanaryMax ? room : kCanaryMax;
}

// The fill range of a freed block: [0, end).
std::size_t fill_end(std::size_t usable) noexcept {
  const std::size_t end = usable - kTrailer;
  return end > kFillMax ? kFillMax : end;
}
void fill(void* p, std::size_t usable) noexcept {
  std::memset(p, fill_byte(), zero_fill() ? usable - kTrailer : fill_end(usable));
}
// Whether bytes [from, fill end) still hold the fill (8 at a time; blocks
// and fill ends are multiples of 8).
bool fill_intact(const void* p, std::size_t usable, std::size_t from) noexcept {
  const auto* c = static_cast<const unsigned char*>(p);
  const std::uint64_t f = std::uint64_t{fill_byte()} * 0x0101010101010101u;
  std::size_t i = from;
  const std::size_t end = fill_end(usable);
  for (; i + 8 <= end; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, c + i, 8);
    if (w != f) return false;
  }
  for (; i < end; ++i) {
    if (c[i] != static_cast<unsigned char>(f)) return false;
  }
  return true;
}

[[gnu::cold]] void misuse(const char* op, const void* p, const char* why,
                          std::uintptr_t caller) noexcept {
  invalid_pointer(op, p, why, caller);
}

// ---- The quarantine: per thread, so a free takes no lock and no atomic. ----
struct Quarantine {
  unsigned next;
  void* slot[kSlots];
};
__thread Quarantine t_quarantine __attribute__((tls_model("initial-exec")));

// Hands p (freed, filled, marked) to the engine, after checking its fill.
void release(void* p, std::uintptr_t caller) noexcept {
  const std::size_t usable = engine::usable_size(p);
  if (!fill_intact(p, usable, 0)) {
    misuse("free", p, "written after free (found leaving the quarantine)", caller);
  }
  engine::secure_release(p);
}

void quarantine(void* p, std::size_t usable, std::uintptr_t caller) noexcept {
  if (usable > kQuarantineMax) {
    engine::secure_release(p);
    return;
  }
  Quarantine& q = t_quarantine;
  void* old = q.slot[q.next];
  q.slot[q.next] = p;
  q.next = (q.next + 1) % kSlots;
  if (old != nullptr) release(old, caller);
}

// The engine calls this when a thread exits, before it collects the
// thread's heap: the thread's quarantined blocks go back.
void flush_quarantine() noexcept {
  Quarantine& q = t_quarantine;
  for (void*& p : q.slot) {
    void* b = p;
    p = nullptr;
    if (b != nullptr) release(b, 0);
  }
}

// Null if p may be freed (or resized); else the reason. *n: its size.
const char* check(void* p, std::size_t usable, std::size_t* n) noexcept {
  const std::uintptr_t t = *trailer(p, usable);
  if (t == freed_word(p)) return "already free (a double free)";
  *n = t ^ secret() ^ reinterpret_cast<std::uintptr_t>(p);
  if (*n > usable - kTrailer - 1) return "block trailer overwritten (a heap overflow)";
  const auto* c = static_cast<const unsigned char*>(p) + *n;
  for (std::size_t i = 0, len = canary_len(*n, usable); i < len; ++i) {
    if (c[i] != canary_byte(p, i)) return "canary after the block overwritten (a heap overflow)";
  }
  return nullptr;
}

}  // namespace

void* secure_alloc(std::size_t size, std::size_t alignment, std::uintptr_t caller) noexcept {
  std::size_t want;
  if (size > kMaxRequest || __builtin_add_overflow(size, kTrailer + 1, &want)) {
    return fail_enomem(size, caller);
  }
  void* p = alignment <= kNaturalAlignment ? engine::alloc(want) : engine::alloc_aligned(want, alignment);
  if (p == nullptr) return fail_enomem(size, caller);
  const std::size_t usable = engine::usable_size(p);
  // (No fill check here: a block carved from a span that held other blocks
  // since may find an old freed trailer at its end over memory that was
  // rightly written since. cc1plus showed it.)
  std::uintptr_t* t = trailer(p, usable);
  auto* c = static_cast<unsigned char*>(p) + size;
  for (std::size_t i = 0, len = canary_len(size, usable); i < len; ++i) c[i] = canary_byte(p, i);
  *t = live_word(p, size);
  return p;
}

void install_secure_hooks() noexcept { engine::set_thread_exit_hook(flush_quarantine); }

bool secure_free(void* p, std::size_t sized, std::uintptr_t caller) noexcept {
  if (!engine::in_default_heap(p)) return false;  // an alloy::Heap block: no trailer
  const std::size_t usable = engine::usable_size(p);
  std::size_t n = 0;
  if (const char* why = check(p, usable, &n)) {
    misuse("free", p, why, caller);
    return true;
  }
  if (sized != 0 && sized != n) {
    misuse("free", p, "sized delete with a size other than the one allocated", caller);
    return true;
  }
  fill(p, usable);
  *trailer(p, usable) = freed_word(p);
  quarantine(p, usable, caller);
  return true;
}

// realloc within the block: the canary and trailer move to the new size.
void* resize_in_block(void* p, std::size_t usable, std::size_t size) noexcept {
  auto* c = static_cast<unsigned char*>(p) + size;
  for (std::size_t i = 0, len = canary_len(size, usable); i < len; ++i) c[i] = canary_byte(p, i);
  *trailer(p, usable) = live_word(p, size);
  return p;
}

std::size_t secure_usable(void* p, std::uintptr_t caller) noexcept {
  if (!engine::in_default_heap(p)) return engine::usable_size(p);
  std::size_t n = 0;
  if (const char* why = check(p, engine::usable_size(p), &n)) {
    misuse("malloc_usable_size", p, why, caller);
    return 0;
  }
  return n;
}

void* secure_realloc(void* p, std::size_t size, std::uintptr_t caller) noexcept {
  if (!engine::in_default_heap(p)) return engine::realloc(p, size);
  std::size_t n = 0;
  const std::size_t usable = engine::usable_size(p);
  if (const char* why = check(p, usable, &n)) {
    misuse("realloc", p, why, caller);
    errno = EINVAL;
    return nullptr;
  }
  // In place while the new size, its canary byte and the trailer fit and
  // the block would not be more than half empty (the engine's own rule).
  if (size <= usable - kTrailer - 1 && size + kTrailer + 1 >= usable / 2) {
    return resize_in_block(p, usable, size);
  }
  void* q = secure_alloc(size, kNaturalAlignment, caller);
  if (q == nullptr) return nullptr;
  std::memcpy(q, p, n < size ? n : size);
  secure_free(p, 0, caller);
  return q;
}

}  // namespace alloy::malloc_adapter::internal
