// The C allocation API on top of alloy::engine (see malloc_adapter.h).
//
// Nothing here may call malloc: only the engine, syscalls, atomics and
// getenv (which reads `environ` in place). Reports are formatted by hand into
// stack buffers and written with write(2).
#include "alloy/adapters/malloc/malloc_adapter.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "alloy/adapters/malloc/malloc_internal.h"
#include "alloy/allocators/engine/engine.h"
#include "alloy/profile/sampler.h"

extern char** environ;

namespace alloy::malloc_adapter {
namespace {

Options g_options;
// 0 = not read yet, 1 = being read, 2 = read.
std::atomic<int> g_options_state{0};
std::atomic<std::size_t> g_foreign_frees{0};
std::atomic<std::size_t> g_verbose_lines{0};
std::atomic<std::size_t> g_verbose_suppressed{0};
std::atomic<std::int64_t> g_verbose_second{-1};
std::atomic<int> g_verbose_in_second{0};


bool env_flag(const char* name) {
  const char* v = getenv(name);
  return v != nullptr && v[0] != '\0' && !(v[0] == '0' && v[1] == '\0');
}

// "524288", "512k", "4m": bytes; 0 if not a number.
std::int64_t parse_bytes(const char* s) {
  std::int64_t v = 0;
  for (; *s >= '0' && *s <= '9'; ++s) v = v * 10 + (*s - '0');
  if (*s == 'k' || *s == 'K') v <<= 10;
  if (*s == 'm' || *s == 'M') v <<= 20;
  return v;
}

const char* env_path(const char* name) {
  const char* v = getenv(name);
  return v != nullptr && v[0] != '\0' ? v : nullptr;
}

void read_options() {
  // Before libc has set up `environ` (ld.so's earliest allocations) there is
  // nothing to read yet: keep the defaults and try again later.
  if (environ == nullptr) return;
  int expected = 0;
  if (!g_options_state.compare_exchange_strong(expected, 1,
                                               std::memory_order_acq_rel)) {
    return;
  }
  g_options.verbose = env_flag("ALLOY_VERBOSE");
  g_options.eager_purge = env_flag("ALLOY_EAGER_PURGE");
  if (const char* e = getenv("ALLOY_ON_ERROR"); e != nullptr && std::strcmp(e, "report") == 0) {
    g_options.abort_on_error = false;
    engine::set_abort_on_error(false);
  }
  if (const char* s = getenv("ALLOY_STATS");
      s != nullptr && s[0] != '\0' && !(s[0] == '0' && s[1] == '\0')) {
    g_options.stats = true;
    // Programs often close stderr before exit (coreutils does): keep our
    // own descriptor for the exit report.
    int fd = s[0] == '/' ? internal::open_append(s)
                         : ::fcntl(2, F_DUPFD_CLOEXEC, 100);
    if (fd >= 0) g_options.stats_fd = fd;
  }
  if (g_options.eager_purge) engine::set_eager_purge(true);
  g_options.profile_path = env_path("ALLOY_PROF");
  g_options.leak_profile_path = env_path("ALLOY_PROF_LEAKS");
  if (const char* r = env_path("ALLOY_PROF_RATE")) g_options.profile_rate = parse_bytes(r);
  if (g_options.profile_path != nullptr || g_options.leak_profile_path != nullptr) {
    engine::set_profile_rate(g_options.profile_rate > 0 ? g_options.profile_rate : 512 * 1024);
  }
  internal::install_secure_hooks();
  g_options_state.store(2, std::memory_order_release);
}

// `path` with each "%p" replaced by the process id, into out (cut at n - 1
// bytes): one profile per process when a program starts others.
const char* with_pid(const char* path, char* out, std::size_t n) {
  char pid[24];
  int k = 0;
  for (long v = ::getpid(); v > 0; v /= 10) pid[k++] = static_cast<char>('0' + v % 10);
  std::size_t j = 0;
  for (const char* c = path; *c != '\0' && j + 1 < n; ++c) {
    if (c[0] == '%' && c[1] == 'p') {
      for (int i = k - 1; i >= 0 && j + 1 < n; --i) out[j++] = pid[i];
      ++c;
    } else {
      out[j++] = *c;
    }
  }
  out[j] = '\0';
  return out;
}

// Runs before main (and, under LD_PRELOAD, before the program's own
// constructors): applies ALLOY_EAGER_PURGE as early as possible.
[[gnu::constructor(101)]] void read_options_at_start() { read_options(); }

[[gnu::destructor(101)]] void report_at_exit() {
  const Options& o = options();
  if (o.stats) write_stats(o.stats_fd);
  char path[4096];
  if (o.profile_path != nullptr &&
      !profile::write(with_pid(o.profile_path, path, sizeof path))) {
    internal::Line line;
    line.add("alloy malloc: could not write the heap profile ALLOY_PROF=").add(o.profile_path).add("\n");
    line.write_to(2);
  }
  if (o.leak_profile_path != nullptr &&
      !profile::write_leaks(with_pid(o.leak_profile_path, path, sizeof path))) {
    internal::Line line;
    line.add("alloy malloc: could not write the leak profile ALLOY_PROF_LEAKS=")
        .add(o.leak_profile_path)
        .add("\n");
    line.write_to(2);
  }
  if (std::size_t n = internal::verbose_suppressed(); n != 0) {
    internal::Line line;
    line.add("alloy malloc: ");
    line.dec(n);
    line.add(" verbose reports suppressed (rate limit: the first 100, then 10 a second)\n");
    line.write_to(2);
  }
}

}  // namespace

const Options& options() noexcept {
  if (g_options_state.load(std::memory_order_acquire) != 2) read_options();
  return g_options;
}

void write_stats(int fd) noexcept {
  engine::write_stats(fd);
  internal::Line line;
  line.add("alloy malloc: foreign frees ignored: ");
  line.dec(foreign_frees());
  line.add(", blocks aligned above 2 MiB live: ");
  line.dec(internal::big_aligned_live());
  line.add("\n");
  line.write_to(fd);
}

namespace internal {
std::size_t verbose_suppressed() noexcept {
  return g_verbose_suppressed.load(std::memory_order_relaxed);
}
}  // namespace internal

std::size_t foreign_frees() noexcept {
  return g_foreign_frees.load(std::memory_order_relaxed);
}

}  // namespace alloy::malloc_adapter

namespace alloy::profile {

bool write(const char* path) noexcept { return Sampler::instance().write(path, false); }
bool write_leaks(const char* path) noexcept { return Sampler::instance().write(path, true); }
void set_rate(std::int64_t mean_bytes) noexcept { engine::set_profile_rate(mean_bytes); }
std::int64_t rate() noexcept { return engine::profile_rate(); }

}  // namespace alloy::profile

namespace alloy::malloc_adapter {

namespace internal {

int open_append(const char* path) noexcept {
  return ::open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

// " (module+0xoffset, symbol+0xoffset)" for a return address, so a report
// can be read with `addr2line -e module offset` even in a stripped or
// position-independent program. dladdr only reads ld.so's tables (it takes
// ld.so's recursive lock and allocates nothing), so it is safe here.
void add_caller_location(Line& line, std::uintptr_t caller) noexcept {
  Dl_info info{};
  if (caller == 0 || dladdr(reinterpret_cast<void*>(caller), &info) == 0) return;
  if (info.dli_fname == nullptr || info.dli_fname[0] == '\0') return;
  line.add(" (");
  line.add(info.dli_fname);
  line.add("+");
  line.hex(caller - reinterpret_cast<std::uintptr_t>(info.dli_fbase));
  if (info.dli_sname != nullptr) {
    line.add(", ");
    line.add(info.dli_sname);
    line.add("+");
    line.hex(caller - reinterpret_cast<std::uintptr_t>(info.dli_saddr));
  }
  line.add(")");
}

// True if one more verbose line may be written now.
bool verbose_allowed() noexcept {
  if (g_verbose_lines.fetch_add(1, std::memory_order_relaxed) < 100) return true;
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  std::int64_t s = ts.tv_sec, cur = g_verbose_second.load(std::memory_order_relaxed);
  if (cur != s && g_verbose_second.compare_exchange_strong(cur, s, std::memory_order_relaxed)) {
    g_verbose_in_second.store(0, std::memory_order_relaxed);
  }
  if (g_verbose_in_second.fetch_add(1, std::memory_order_relaxed) < 10) return true;
  g_verbose_suppressed.fetch_add(1, std::memory_order_relaxed);
  return false;
}

void report(const char* what, const void* p, std::size_t size,
            std::uintptr_t caller, bool always, const char* label) noexcept {
  if (!always && (!options().verbose || !verbose_allowed())) return;
  int saved = errno;
  Line line;
  line.add("alloy malloc: ");
  line.add(what);
  if (p != nullptr) {
    line.add(" ptr=");
    line.hex(reinterpret_cast<std::uintptr_t>(p));
  }
  line.add(" ");
  line.add(label);
  line.add("=");
  line.dec(size);
  line.add(" caller=");
  line.hex(caller);
  add_caller_location(line, caller);
  line.add("\n");
  line.write_to(2);
  errno = saved;
}

void* fail_enomem(std::size_t size, std::uintptr_t caller) noexcept {
  report("out of memory", nullptr, size, caller, false);
  errno = ENOMEM;
  return nullptr;
}

void invalid_pointer(const char* op, const void* p, const char* why,
                     std::uintptr_t caller) noexcept {
  int saved = errno;
  Line line;
  line.add("alloy malloc: ");
  line.add(op);
  line.add("(): invalid pointer ");
  line.hex(reinterpret_cast<std::uintptr_t>(p));
  line.add(" (");
  line.add(why);
  line.add("), caller ");
  line.hex(caller);
  add_caller_location(line, caller);
  line.add("\n");
  line.write_to(2);
  errno = saved;
  if (options().abort_on_error) abort();
}

void free_engine_checked(void* p, std::uintptr_t caller) noexcept {
  if (secure_on()) {
    secure_free(p, 0, caller);
    return;
  }
  if (const char* why = engine::check_block(p, true)) {
    invalid_pointer("free", p, why, caller);
    return;
  }
  engine::free(p);
}

void note_foreign_free(void* p, std::uintptr_t caller) noexcept {
  g_foreign_frees.fetch_add(1, std::memory_order_relaxed);
  report("free of a pointer alloy does not own (ignored)", p, 0, caller,
         false);
}

void check_sized_free(void* p, std::size_t size,
                      std::uintptr_t caller) noexcept {
  std::size_t usable = engine::usable_size(p);
  if (size > usable) {
    report("sized free with a size larger than the block", p, size, caller,
           true);
  }
}

void free_not_engine(void* p, std::uintptr_t caller) noexcept {
  if (!big_aligned_free(p)) note_foreign_free(p, caller);
}

void* realloc_not_engine(void* p, std::size_t size,
                         std::uintptr_t caller) noexcept {
  if (std::size_t usable = big_aligned_usable(p); usable != 0) {
    void* q = alloc(size, caller);  // realloc promises malloc's alignment only
    if (q == nullptr) return nullptr;
    std::memcpy(q, p, usable < size ? usable : size);
    big_aligned_free(p);
    return q;
  }
  // A foreign block: we do not know how long it is. Copy `size` bytes, or as
  // many of them as are readable: process_vm_readv on our own pid stops at
  // the first unmapped page instead of faulting. Bytes past the old block's
  // end are indeterminate in realloc's result anyway.
  report("realloc of a pointer alloy does not own (copied)", p, size, caller,
         false);
  void* q = alloc(size, caller);  // through the adapter: the secure mode's layout too
  if (q == nullptr) return nullptr;
  iovec local{q, size};
  iovec remote{p, size};
  int saved = errno;
  ssize_t got = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
  const int err = errno;
  errno = saved;
  if (got == 0 || (got < 0 && err == EFAULT)) {
    // Not one byte of p is readable: it is no block at all (0x1, a stale
    // pointer into an unmapped region). Report and fail; q is not leaked.
    free(q, caller);
    invalid_pointer("realloc", p, "not alloy's and not readable", caller);
    errno = EINVAL;
    return nullptr;
  }
  if (got < 0) {
    // Not permitted here: copy what is certainly readable, the rest of p's
    // page (p itself was readable, or the caller would have crashed first).
    std::uintptr_t page = page_size();
    std::uintptr_t a = reinterpret_cast<std::uintptr_t>(p);
    std::size_t to_end = static_cast<std::size_t>(((a / page) + 1) * page - a);
    std::memcpy(q, p, to_end < size ? to_end : size);
  }
  g_foreign_frees.fetch_add(1, std::memory_order_relaxed);
  return q;
}

namespace {
// 1 KiB < size <= 64 KiB (no direct slot): the pop from the first page of
// the size class, swapping in the blocks the owner freed into it when its
// free list ran dry, as local_alloc and alloc_unsampled would after five
// calls; null when that needs more (no page, no block, a corrupted head,
// profiles on, an AccountScope: the full path then decides). Every
// malloc of 1-8 KiB took ~110 instructions before the pop (churn8k).
inline void* class_pop(std::size_t size) noexcept {
  namespace d = engine::detail;
  d::ThreadHeap* l = d::t_local;
  if (d::prof_on() || l->carve) [[unlikely]] return nullptr;
  d::Span* pg = l->queues[d::class_of(size)].first;
  if (pg == nullptr) return nullptr;
  d::Block* b = pg->free;
  if (b == nullptr) {
    b = pg->local_free;
    pg->free = b;
    pg->local_free = nullptr;
  }
  if (!d::head_ok(pg, b)) [[unlikely]] return nullptr;
  return d::page_take_block(pg, b);
}

// An AccountScope's thread takes the scoped fast lane first (engine
// internal.h, "Account scopes"): a pop from, or a push to, the heap its scope
// leases, charged to the scope's batch. Outside scopes it is one TLS load.
[[gnu::noinline]] void* alloc_default(std::size_t size, std::uintptr_t caller) noexcept {
  if (!maybe_secure()) [[likely]] {
    if (void* p = engine::detail::scope_try_alloc(size)) return p;
  }
  return alloc(size, caller);
}
[[gnu::noinline]] void free_default(void* p, std::uintptr_t caller) noexcept {
  if (p == nullptr) return;
  if (!engine::inline_owns(p)) [[unlikely]] {
    free_not_engine(p, caller);
    return;
  }
  if (!maybe_secure() && engine::detail::scope_try_free(p)) [[likely]] return;
  free_engine_checked(p, caller);
}
}  // namespace

// Both halves are tail calls, so neither mode pays for the other's frame.
void* alloc_slow(std::size_t size, std::uintptr_t caller) noexcept {
  // The secure mode's every malloc (its direct table stays empty on purpose).
  if (engine::detail::g_secure_state == engine::detail::kSecureOn) [[unlikely]] {
    return secure_alloc(size | (size == 0), kNaturalAlignment, caller);
  }
  // Class sizes above 1 KiB are multiples of 128: malloc's alignment holds.
  if (size - (engine::detail::kDirectMax + 1) < engine::detail::kSmallMax - engine::detail::kDirectMax) {
    if (void* p = class_pop(size)) [[likely]] return p;
  }
  return alloc_default(size, caller);
}
void free_slow(void* p, std::uintptr_t caller) noexcept {
  // The secure mode's every free (its owner compares fail on purpose).
  if (engine::detail::g_secure_state == engine::detail::kSecureOn) [[unlikely]] {
    secure_free(p, 0, caller);
    return;
  }
  free_default(p, caller);
}
void* realloc_slow(void* p, std::size_t size, std::uintptr_t caller) noexcept {
  return realloc(p, size, caller);
}
void free_sized_slow(void* p, std::size_t size, std::uintptr_t caller) noexcept {
  free_sized(p, size, caller);
}

}  // namespace internal
}  // namespace alloy::malloc_adapter

// ---------------------------------------------------------------------------
// The exported C API.

namespace mi = alloy::malloc_adapter::internal;
namespace engine = alloy::engine;

#define ALLOY_CALLER() \
  (reinterpret_cast<std::uintptr_t>(__builtin_return_address(0)))
#define ALLOY_EXPORT extern "C" [[gnu::visibility("default")]]

ALLOY_EXPORT void* malloc(std::size_t size) noexcept {
  if (void* p = engine::try_inline_alloc(size)) [[likely]] return p;
  return mi::alloc_slow(size, ALLOY_CALLER());
}

ALLOY_EXPORT void free(void* p) noexcept {
  if (engine::try_inline_free(p)) [[likely]] return;
  mi::free_slow(p, ALLOY_CALLER());
}

ALLOY_EXPORT void cfree(void* p) noexcept { mi::free(p, ALLOY_CALLER()); }

ALLOY_EXPORT void* calloc(std::size_t n, std::size_t size) noexcept {
  return mi::calloc(n, size, ALLOY_CALLER());
}

ALLOY_EXPORT void* realloc(void* p, std::size_t size) noexcept {
  // Growth loops mostly stay inside the block's size class: answer those
  // without a call (null is not the engine's, so it takes the slow half).
  if (engine::inline_owns(p) && !mi::maybe_secure()) [[likely]] {
    if (void* q = engine::try_inline_realloc_in_place(p, size)) [[likely]] return q;
  }
  return mi::realloc_slow(p, size, ALLOY_CALLER());
}

ALLOY_EXPORT void* reallocarray(void* p, std::size_t n,
                                std::size_t size) noexcept {
  std::size_t bytes;
  if (__builtin_mul_overflow(n, size, &bytes)) {
    return mi::fail_enomem(SIZE_MAX, ALLOY_CALLER());
  }
  return mi::realloc(p, bytes, ALLOY_CALLER());
}

ALLOY_EXPORT int posix_memalign(void** out, std::size_t alignment,
                                std::size_t size) noexcept {
  if (alignment < sizeof(void*) || !mi::is_pow2(alignment)) {
    mi::report("posix_memalign: invalid alignment", nullptr, alignment,
               ALLOY_CALLER(), false, "alignment");
    return EINVAL;
  }
  void* p = mi::alloc_aligned(size, alignment, ALLOY_CALLER());
  if (p == nullptr) {
    // The result says ENOMEM, and so does errno (alloc_aligned set it), as
    // with glibc, mimalloc and tcmalloc: programs test either.
    return ENOMEM;
  }
  *out = p;
  return 0;
}

ALLOY_EXPORT void* aligned_alloc(std::size_t alignment,
                                 std::size_t size) noexcept {
  if (!mi::is_pow2(alignment)) {
    mi::report("aligned_alloc: invalid alignment", nullptr, alignment,
               ALLOY_CALLER(), false, "alignment");
    errno = EINVAL;
    return nullptr;
  }
  return mi::alloc_aligned(size, alignment, ALLOY_CALLER());
}

ALLOY_EXPORT void* memalign(std::size_t alignment, std::size_t size) noexcept {
  return mi::memalign(alignment, size, ALLOY_CALLER());
}

ALLOY_EXPORT void* valloc(std::size_t size) noexcept {
  return mi::alloc_aligned(size, mi::page_size(), ALLOY_CALLER());
}

ALLOY_EXPORT void* pvalloc(std::size_t size) noexcept {
  return mi::pvalloc(size, ALLOY_CALLER());
}

ALLOY_EXPORT std::size_t malloc_usable_size(void* p) noexcept {
  if (p == nullptr) return 0;
  if (!engine::inline_owns(p)) return mi::big_aligned_usable(p);
  if (const char* why = engine::check_block(p)) [[unlikely]] {
    mi::invalid_pointer("malloc_usable_size", p, why, ALLOY_CALLER());
    return 0;
  }
  if (mi::secure_on()) return mi::secure_usable(p, ALLOY_CALLER());
  return engine::usable_size(p);
}

ALLOY_EXPORT void free_sized(void* p, std::size_t size) noexcept {
  mi::free_sized(p, size, ALLOY_CALLER());
}

ALLOY_EXPORT void free_aligned_sized(void* p, std::size_t alignment,
                                     std::size_t size) noexcept {
  mi::free_aligned_sized(p, alignment, size, ALLOY_CALLER());
}

// glibc's internal names, for the few programs that call them directly; with
// them defined here nothing reaches glibc's allocator.
ALLOY_EXPORT void* __libc_malloc(std::size_t size) noexcept {
  return mi::alloc(size, ALLOY_CALLER());
}
ALLOY_EXPORT void __libc_free(void* p) noexcept {
  mi::free(p, ALLOY_CALLER());
}
ALLOY_EXPORT void* __libc_calloc(std::size_t n, std::size_t size) noexcept {
  return mi::calloc(n, size, ALLOY_CALLER());
}
ALLOY_EXPORT void* __libc_realloc(void* p, std::size_t size) noexcept {
  return mi::realloc(p, size, ALLOY_CALLER());
}
ALLOY_EXPORT void* __libc_memalign(std::size_t alignment,
                                   std::size_t size) noexcept {
  return mi::memalign(alignment, size, ALLOY_CALLER());
}
ALLOY_EXPORT void* __libc_valloc(std::size_t size) noexcept {
  return mi::alloc_aligned(size, mi::page_size(), ALLOY_CALLER());
}
ALLOY_EXPORT void* __libc_pvalloc(std::size_t size) noexcept {
  return mi::pvalloc(size, ALLOY_CALLER());
}

// glibc's tuning and introspection calls describe glibc's own arenas, which
// hold nothing here: accept and ignore them so they do no harm. malloc_trim
// keeps its meaning: free memory goes back to the OS.
ALLOY_EXPORT int mallopt(int, int) noexcept { return 1; }
ALLOY_EXPORT int __libc_mallopt(int, int) noexcept { return 1; }
ALLOY_EXPORT int malloc_trim(std::size_t) noexcept {
  alloy::engine::collect();
  return 1;
}
ALLOY_EXPORT void malloc_stats() noexcept {
  alloy::malloc_adapter::write_stats(2);
}
ALLOY_EXPORT struct mallinfo mallinfo() noexcept {
  struct mallinfo info;
  std::memset(&info, 0, sizeof(info));
  return info;
}
ALLOY_EXPORT struct mallinfo2 mallinfo2() noexcept {
  struct mallinfo2 info;
  std::memset(&info, 0, sizeof(info));
  return info;
}
