// The malloc adapter's secure mode (ALLOY_SECURE=1, or a build with
// --define=alloy_secure=1; README "Hardening"). The engine leaves the
// default heap's inline fast paths switched off in this mode (engine::
// secure_mode), so every malloc and free of the default heap reaches the
// adapter's slow half and comes here.
//
// A block of n bytes is allocated with 9 bytes more, laid out as
//   [ n bytes | canary (1..16 bytes) ... | trailer (8 bytes) ]
// The canary: byte k of the block (k >= n) holds byte k % 8 of a word drawn
// from the secret and the block's address (never a 0 byte, so an off-by-one
// NUL is caught), from byte n to the end of its 8-byte word plus the next
// word when that ends before the trailer: two 8-byte stores to write, two
// loads to check. The trailer, at the block's usable end, holds
// n ^ secret ^ address (live) or ~(secret ^ address) (freed). free checks
// that p is a block's start (small blocks inline, the rest with engine
// check_block), the trailer (double free, size), the canary (overflow), the
// size of a sized delete; then fills the block's first 64 bytes with 0xdf
// (all of it with zeros when ALLOY_SECURE_ZERO=1), marks it freed and parks
// it in its thread's quarantine ring of the 64 most recent small frees. A
// block leaving the quarantine must still hold its fill (write after free).
// malloc_usable_size answers n, so programs that use it never write over the
// canary.
//
// Cost: a small block (n + 9 <= 64 KiB) is popped from its class's first
// page inline (the engine's page_take_block; no call into the engine), and
// freed with inline checks, eight 8-byte fill stores and eight loads when it
// leaves the quarantine (README "Hardening", bench/README.md for figures);
// large and huge blocks take the engine's slow paths plus the same checks.
// realloc stays in place within the block.
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

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "canary masks assume little-endian words");

namespace alloy::malloc_adapter::internal {
namespace {

namespace d = ::alloy::engine::detail;

constexpr std::size_t kTrailer = 8;
constexpr std::size_t kExtra = kTrailer + 1;  // at least one canary byte
constexpr std::size_t kFill = 64;  // bytes of a freed block filled and checked
constexpr std::size_t kQuarantineMax = 64 * 1024;  // larger blocks are freed at once
constexpr unsigned kSlots = 64;  // a power of two
static_assert((kSlots & (kSlots - 1)) == 0);

std::uintptr_t secret() noexcept { return d::g_link_key * 0x9e3779b97f4a7c15u; }

std::atomic<int> g_zero{-1};  // ALLOY_SECURE_ZERO, read on first use
[[gnu::cold, gnu::noinline]] bool read_zero() noexcept {
  const char* v = environ != nullptr ? getenv("ALLOY_SECURE_ZERO") : nullptr;
  const int z = v != nullptr && v[0] != '\0' && !(v[0] == '0' && v[1] == '\0');
  g_zero.store(z, std::memory_order_relaxed);
  return z != 0;
}
inline bool zero_fill() noexcept {
  const int z = g_zero.load(std::memory_order_relaxed);
  if (z < 0) [[unlikely]] return read_zero();
  return z != 0;
}
inline std::uint64_t fill_word() noexcept { return zero_fill() ? 0 : 0xdfdfdfdfdfdfdfdfu; }

inline std::uint64_t load8(const char* c) noexcept {
  std::uint64_t w;
  std::memcpy(&w, c, 8);
  return w;
}
inline void store8(char* c, std::uint64_t w) noexcept { std::memcpy(c, &w, 8); }

inline std::uintptr_t* trailer(void* p, std::size_t usable) noexcept {
  return reinterpret_cast<std::uintptr_t*>(static_cast<char*>(p) + usable - kTrailer);
}
inline std::uintptr_t live_word(const void* p, std::size_t n, std::uintptr_t key) noexcept {
  return n ^ key ^ reinterpret_cast<std::uintptr_t>(p);
}
inline std::uintptr_t freed_word(const void* p, std::uintptr_t key) noexcept {
  return ~(key ^ reinterpret_cast<std::uintptr_t>(p));
}
inline std::uint64_t canary_word(const void* p, std::uintptr_t key) noexcept {
  return (key ^ (reinterpret_cast<std::uintptr_t>(p) >> 3)) | 0x0101010101010101u;
}

// Writes the canary of an n-byte block (usable bytes `usable`, a multiple of
// 8, >= n + kExtra). keep_data: bytes below n of the word holding byte n are
// the program's (realloc) and are kept; malloc overwrites them.
inline void put_canary(void* p, std::size_t n, std::size_t usable, bool keep_data,
                       std::uintptr_t key) noexcept {
  char* b = static_cast<char*>(p);
  const std::uint64_t w = canary_word(p, key);
  const std::size_t a = n & ~std::size_t{7};
  std::uint64_t first = w;
  if (keep_data) {
    const std::uint64_t mine = ~std::uint64_t{0} << ((n & 7) * 8);
    first = (load8(b + a) & ~mine) | (w & mine);
  }
  store8(b + a, first);
  if (a + 8 < usable - kTrailer) store8(b + a + 8, w);
}
inline bool canary_intact(const void* p, std::size_t n, std::size_t usable,
                          std::uintptr_t key) noexcept {
  const char* b = static_cast<const char*>(p);
  const std::uint64_t w = canary_word(p, key);
  const std::size_t a = n & ~std::size_t{7};
  const std::uint64_t mine = ~std::uint64_t{0} << ((n & 7) * 8);
  bool ok = ((load8(b + a) ^ w) & mine) == 0;
  if (a + 8 < usable - kTrailer) ok &= load8(b + a + 8) == w;
  return ok;
}

// The fill of a freed block: bytes [0, min(usable - trailer, kFill)) hold
// fill_word() (ALLOY_SECURE_ZERO: the whole block up to the trailer is zero).
// Written and checked 16 bytes at a time, the last chunk overlapping the
// one before when the length is not a multiple of 16 (usable is a multiple
// of 8, at least 16).
typedef std::uint64_t Wide __attribute__((vector_size(16)));
inline Wide load16(const char* c) noexcept {
  Wide w;
  std::memcpy(&w, c, 16);
  return w;
}
inline void store16(char* c, Wide w) noexcept { std::memcpy(c, &w, 16); }
[[gnu::always_inline]] inline void fill(void* p, std::size_t usable) noexcept {
  char* b = static_cast<char*>(p);
  const std::size_t end = usable - kTrailer;
  if (zero_fill()) [[unlikely]] {
    std::memset(b, 0, end);
    return;
  }
  const std::uint64_t f = 0xdfdfdfdfdfdfdfdfu;
  const Wide w = {f, f};
  static_assert(kFill == 64);
  if (end >= kFill) {
    store16(b, w);
    store16(b + 16, w);
    store16(b + 32, w);
    store16(b + 48, w);
  } else if (end >= 16) {
    store16(b, w);
    store16(b + end - 16, w);
    if (end > 32) {
      store16(b + 16, w);
      store16(b + end - 32, w);
    }
  } else {
    store8(b, f);
  }
}
[[gnu::always_inline]] inline bool fill_intact(const void* p, std::size_t usable) noexcept {
  const char* b = static_cast<const char*>(p);
  const std::uint64_t f = fill_word();
  const Wide w = {f, f};
  const std::size_t end = usable - kTrailer;
  Wide diff;
  if (end >= kFill) {
    diff = (load16(b) ^ w) | (load16(b + 16) ^ w) | (load16(b + 32) ^ w) | (load16(b + 48) ^ w);
  } else if (end >= 16) {
    diff = (load16(b) ^ w) | (load16(b + end - 16) ^ w);
    if (end > 32) diff |= (load16(b + 16) ^ w) | (load16(b + end - 32) ^ w);
  } else {
    return load8(b) == f;
  }
  return (diff[0] | diff[1]) == 0;
}

[[gnu::cold, gnu::noinline]] void misuse(const char* op, const void* p, const char* why,
                                         std::uintptr_t caller) noexcept {
  invalid_pointer(op, p, why, caller);
}

// ---- The quarantine: per thread, so a free takes no lock and no atomic. ----
struct Quarantine {
  unsigned next;
  void* slot[kSlots];
};
__thread Quarantine t_quarantine __attribute__((tls_model("initial-exec")));

// Hands small block b (freed, filled, marked; its page's block count still
// holds it) to the engine, after checking its fill: the owner's push, or
// the cross-thread one.
[[gnu::always_inline]] inline void release_small(void* b, std::uintptr_t caller) noexcept {
  d::Segment* seg = d::segment_of(b);
  d::Span* pg = d::span_of(seg, b);
  if (!fill_intact(b, pg->block_size)) [[unlikely]] {
    misuse("free", b, "written after free (found leaving the quarantine)", caller);
  }
  if (seg->owner_tid.load(std::memory_order_relaxed) == d::owner_id()) {
    d::local_push(pg, b);
  } else {
    d::free_cross(seg, pg, b);
  }
}

// Parks small block p; the block it displaces goes back to the engine.
[[gnu::always_inline]] inline void quarantine(void* p, std::uintptr_t caller) noexcept {
  Quarantine& q = t_quarantine;
  const unsigned i = q.next;
  void* old = q.slot[i];
  q.slot[i] = p;
  q.next = (i + 1) & (kSlots - 1);
  if (old != nullptr) [[likely]] release_small(old, caller);
}

// The engine calls this when a thread exits, before it collects the
// thread's heap: the thread's quarantined blocks go back.
void flush_quarantine() noexcept {
  Quarantine& q = t_quarantine;
  for (void*& p : q.slot) {
    void* b = p;
    p = nullptr;
    if (b != nullptr) release_small(b, 0);
  }
}

// Null if p may be freed (or resized); else the reason. *n: its size.
inline const char* check(void* p, std::size_t usable, std::size_t* n, std::uintptr_t key) noexcept {
  const std::uintptr_t t = *trailer(p, usable);
  if (t == freed_word(p, key)) [[unlikely]] return "already free (a double free)";
  *n = t ^ key ^ reinterpret_cast<std::uintptr_t>(p);
  if (*n > usable - kExtra) [[unlikely]] return "block trailer overwritten (a heap overflow)";
  if (!canary_intact(p, *n, usable, key)) [[unlikely]] {
    return "canary after the block overwritten (a heap overflow)";
  }
  return nullptr;
}

// The page of p when p is the start of a block of a small page of the
// default heap that was handed out at some time (engine block_check's test
// for that kind, inline); null for everything else (the checked path).
// Precondition: engine::inline_owns(p).
inline d::Span* small_default_page(void* p) noexcept {
  d::Segment* seg = d::segment_of(p);
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  if (!d::is_segment_head(seg) || seg->is_huge != 0 || (addr & d::kSegmentMask) < d::kSliceSize) {
    return nullptr;
  }
  d::Span* pg = d::span_of(seg, p);
  if (pg->kind != d::kSmallPage || !seg->local->heap->is_default) return nullptr;
  const std::size_t off = addr - d::page_start(seg, pg);
  const std::size_t idx = d::block_index(pg->size_class, off);
  if (idx * pg->block_size != off || idx >= pg->capacity) return nullptr;
  return pg;
}

// Checks, fills, marks and parks (or, above kQuarantineMax, releases)
// default-heap block p of `usable` bytes.
[[gnu::always_inline]] inline void free_checked(void* p, std::size_t usable, std::size_t sized,
                                               std::uintptr_t caller) noexcept {
  const std::uintptr_t key = secret();
  std::size_t n = 0;
  if (const char* why = check(p, usable, &n, key)) [[unlikely]] {
    misuse("free", p, why, caller);
    return;
  }
  if (sized != 0 && sized != n) [[unlikely]] {
    misuse("free", p, "sized delete with a size other than the one allocated", caller);
    return;
  }
  fill(p, usable);
  *trailer(p, usable) = freed_word(p, key);
  if (usable > kQuarantineMax) {
    engine::secure_release(p);
    return;
  }
  quarantine(p, caller);
}

// Every other engine block: engine::check_block, then as above (a block of
// an alloy::Heap has no trailer: the engine frees it).
[[gnu::noinline]] void free_other(void* p, std::size_t sized, std::uintptr_t caller) noexcept {
  if (const char* why = engine::check_block(p, true)) {
    invalid_pointer("free", p, why, caller);
    return;
  }
  if (!engine::in_default_heap(p)) {
    engine::free(p);
    return;
  }
  free_checked(p, engine::usable_size(p), sized, caller);
}

}  // namespace

namespace {
// Writes the canary and the live trailer of new block p.
inline void* finish_alloc(void* p, std::size_t size, std::size_t usable) noexcept {
  // (No fill check here: a block carved from a span that held other blocks
  // since may find an old freed trailer at its end over memory that was
  // rightly written since. cc1plus showed it.)
  const std::uintptr_t key = secret();
  put_canary(p, size, usable, false, key);
  *trailer(p, usable) = live_word(p, size, key);
  return p;
}

// secure_alloc when the inline pop found no block, or for a large, huge or
// over-aligned block: through the engine's slow paths.
[[gnu::noinline]] void* alloc_other(std::size_t size, std::size_t alignment,
                                    std::uintptr_t caller) noexcept {
  std::size_t want;
  if (size > kMaxRequest || __builtin_add_overflow(size, kExtra, &want)) {
    return fail_enomem(size, caller);
  }
  void* p = alignment <= kNaturalAlignment ? engine::alloc(want) : engine::alloc_aligned(want, alignment);
  if (p == nullptr) return fail_enomem(size, caller);
  return finish_alloc(p, size, engine::usable_size(p));
}
}  // namespace

void* secure_alloc(std::size_t size, std::size_t alignment, std::uintptr_t caller) noexcept {
  if (alignment <= kNaturalAlignment && size <= d::kSmallMax - kExtra) [[likely]] {
    // The slow path's pop from the class's first page (local_alloc), inline.
    d::Span* pg = d::t_local->queues[d::class_of((size + kExtra + 15) & ~std::size_t{15})].first;
    if (pg != nullptr) [[likely]] {
      d::Block* b = pg->free;
      if (d::head_ok(pg, b)) [[likely]] {
        return finish_alloc(d::page_take_block(pg, b), size, pg->block_size);
      }
    }
  }
  return alloc_other(size, alignment, caller);
}

void install_secure_hooks() noexcept { engine::set_thread_exit_hook(flush_quarantine); }

void secure_free(void* p, std::size_t sized, std::uintptr_t caller) noexcept {
  if (p == nullptr) return;
  if (!engine::inline_owns(p)) [[unlikely]] {
    free_not_engine(p, caller);
    return;
  }
  d::Span* pg = small_default_page(p);
  if (pg == nullptr) [[unlikely]] {
    free_other(p, sized, caller);
    return;
  }
  free_checked(p, pg->block_size, sized, caller);
}

std::size_t secure_usable(void* p, std::uintptr_t caller) noexcept {
  if (!engine::in_default_heap(p)) return engine::usable_size(p);
  std::size_t n = 0;
  if (const char* why = check(p, engine::usable_size(p), &n, secret())) {
    misuse("malloc_usable_size", p, why, caller);
    return 0;
  }
  return n;
}

void* secure_realloc(void* p, std::size_t size, std::uintptr_t caller) noexcept {
  if (!engine::in_default_heap(p)) return engine::realloc(p, size);
  const std::uintptr_t key = secret();
  std::size_t n = 0;
  const std::size_t usable = engine::usable_size(p);
  if (const char* why = check(p, usable, &n, key)) {
    misuse("realloc", p, why, caller);
    errno = EINVAL;
    return nullptr;
  }
  // In place while the new size, its canary byte and the trailer fit and
  // the block would not be more than half empty (the engine's own rule).
  if (size <= usable - kExtra && size + kExtra >= usable / 2) {
    put_canary(p, size, usable, true, key);
    *trailer(p, usable) = live_word(p, size, key);
    return p;
  }
  void* q = secure_alloc(size, kNaturalAlignment, caller);
  if (q == nullptr) return nullptr;
  std::memcpy(q, p, n < size ? n : size);
  secure_free(p, 0, caller);
  return q;
}

}  // namespace alloy::malloc_adapter::internal
