#include "alloy/debug/debug_allocator.h"

#include <absl/debugging/stacktrace.h>
#include <fmt/format.h>

#if __has_include(<sys/single_threaded.h>)
#include <sys/single_threaded.h>
#define ALLOY_DEBUG_HAS_SINGLE_THREADED 1
#endif

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace alloy {

namespace debug::internal {

constexpr int kMaxFrames = 32;
constexpr std::byte kCanaryByte{0xCA};
constexpr std::byte kFreedByte{0xDD};

// Captures the current stack into `frames`. Frames of the debug allocator
// itself stay in the trace; report formatting drops them by name, which
// keeps working whatever the optimizer inlined.
[[gnu::noinline]] int capture_stack(void** frames, int max) {
  return absl::GetStackTrace(frames, max, 0);
}

}  // namespace debug::internal

using debug::CallSite;
using debug::ErrorKind;
using debug::Operation;
using debug::Report;

struct DebugAllocator::StackTrace {
  int depth = 0;
  int free_depth = 0;  // 0 until the block is freed
  void* frames[debug::internal::kMaxFrames];
  void* free_frames[debug::internal::kMaxFrames];
};

class DebugAllocator::Guard {
 public:
  // Takes `lock` unless it is null (thread_safe off) or the process has
  // never started a thread (glibc's __libc_single_threaded, which only turns
  // false in pthread_create, before the new thread's first call).
  explicit Guard(BiasedLock* lock) : lock_(lock) {
#if ALLOY_DEBUG_HAS_SINGLE_THREADED
    if (__libc_single_threaded) lock_ = nullptr;
#endif
    if (lock_ != nullptr) mode_ = lock_->acquire();
  }
  ~Guard() { unlock(); }
  void unlock() {
    if (lock_ != nullptr) {
      lock_->release(mode_);
      lock_ = nullptr;
    }
  }
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;

 private:
  BiasedLock* lock_;
  BiasedLock::Mode mode_ = BiasedLock::Mode::kOwner;
};

const VTable DebugAllocator::kVTable = {DebugAllocator::vt_alloc, DebugAllocator::vt_resize,
                                        DebugAllocator::vt_remap, DebugAllocator::vt_free};

DebugAllocator::DebugAllocator(Allocator child, DebugOptions options)
    : child_(child), options_(std::move(options)) {
  if (options_.sample_every == 0) options_.sample_every = 1;
  hold_limit_ = std::min(options_.quarantine_max_block, options_.quarantine_bytes);
  if (options_.thread_safe) lock_if_thread_safe_ = &lock_;
  if (options_.fail_alloc_from >= 0) {
    fail_alloc_at_ = static_cast<std::uint64_t>(options_.fail_alloc_from);
  }
}

DebugAllocator::~DebugAllocator() {
  if (!deinit_done_) (void)deinit();
  // Traces still referenced by freed-block history, and the pool itself.
  while (!freed_traces_.empty()) {
    release_trace_locked(freed_traces_.front().trace);
    freed_traces_.pop_front();
  }
  for (StackTrace* t : trace_pool_) delete t;
}

// ---------------------------------------------------------------- vtable

void* DebugAllocator::vt_alloc(void* ctx, std::size_t len, Alignment alignment,
                               std::uintptr_t ret) {
  return static_cast<DebugAllocator*>(ctx)->do_alloc(len, alignment, ret);
}
bool DebugAllocator::vt_resize(void* ctx, Bytes memory, Alignment alignment,
                               std::size_t new_len, std::uintptr_t ret) {
  return static_cast<DebugAllocator*>(ctx)->do_resize(memory, alignment, new_len, ret,
                                                      false) != nullptr;
}
void* DebugAllocator::vt_remap(void* ctx, Bytes memory, Alignment alignment,
                               std::size_t new_len, std::uintptr_t ret) {
  return static_cast<DebugAllocator*>(ctx)->do_resize(memory, alignment, new_len, ret, true);
}
void DebugAllocator::vt_free(void* ctx, Bytes memory, Alignment alignment,
                             std::uintptr_t ret) {
  static_cast<DebugAllocator*>(ctx)->do_free(memory, alignment, ret);
}

// ---------------------------------------------------------------- helpers

DebugAllocator::StackTrace* DebugAllocator::new_trace_locked() {
  StackTrace* t;
  if (!trace_pool_.empty()) {
    t = trace_pool_.back();
    trace_pool_.pop_back();
  } else {
    t = new StackTrace;
  }
  t->depth = debug::internal::capture_stack(t->frames, debug::internal::kMaxFrames);
  t->free_depth = 0;
  return t;
}

void DebugAllocator::capture_free_trace_locked(StackTrace* t) {
  t->free_depth = debug::internal::capture_stack(t->free_frames, debug::internal::kMaxFrames);
}

void DebugAllocator::release_trace_locked(StackTrace* t) {
  if (t != nullptr) trace_pool_.push_back(t);
}



namespace {
// 16 bytes as one SSE2/NEON register (GCC and Clang vector extension).
using Vec16 = std::uint64_t __attribute__((vector_size(16)));

inline Vec16 load16(const std::byte* p) {
  Vec16 v;
  std::memcpy(&v, p, 16);
  return v;
}
inline void store16(std::byte* p, Vec16 v) { std::memcpy(p, &v, 16); }

// Fills n bytes with `byte`. From 16 to 256 bytes (the blocks that
// dominate) with a fixed set of 16-byte stores per size tier, the tail ones
// overlapping, rather than a loop; memset otherwise. GCC must not see a fill
// loop: it turns it into memset expanded inline as `rep stos`, which made a
// 64-byte free ~10 ns slower on the build machine.
inline void fill_small(std::byte* p, std::size_t n, std::byte byte) {
  const std::uint64_t w = 0x0101010101010101ull * static_cast<std::uint8_t>(byte);
  const Vec16 v = {w, w};
  if (n > 64 && n <= 256) [[likely]] {
    store16(p, v);  // [0, 64) and [n - 64, n)
    store16(p + 16, v);
    store16(p + 32, v);
    store16(p + 48, v);
    store16(p + n - 64, v);
    store16(p + n - 48, v);
    store16(p + n - 32, v);
    store16(p + n - 16, v);
    if (n > 128) {  // and [64, 128), [n - 128, n - 64)
      store16(p + 64, v);
      store16(p + 80, v);
      store16(p + 96, v);
      store16(p + 112, v);
      store16(p + n - 128, v);
      store16(p + n - 112, v);
      store16(p + n - 96, v);
      store16(p + n - 80, v);
    }
  } else if (n >= 16 && n <= 64) {
    store16(p, v);
    store16(p + n - 16, v);
    if (n > 32) {
      store16(p + 16, v);
      store16(p + n - 32, v);
    }
  } else {
    std::memset(p, static_cast<int>(byte), n);
  }
}

bool all_are(const std::byte* p, std::size_t n, std::byte expected);

// all_are() for the quarantine's eviction check, shaped like fill_small.
inline bool all_are_small(const std::byte* p, std::size_t n, std::byte expected) {
  const std::uint64_t w = 0x0101010101010101ull * static_cast<std::uint8_t>(expected);
  const Vec16 v = {w, w};
  Vec16 diff;
  if (n > 64 && n <= 256) [[likely]] {
    diff = ((load16(p) ^ v) | (load16(p + 16) ^ v)) | ((load16(p + 32) ^ v) | (load16(p + 48) ^ v)) |
           ((load16(p + n - 64) ^ v) | (load16(p + n - 48) ^ v)) |
           ((load16(p + n - 32) ^ v) | (load16(p + n - 16) ^ v));
    if (n > 128) {
      diff |= ((load16(p + 64) ^ v) | (load16(p + 80) ^ v)) |
              ((load16(p + 96) ^ v) | (load16(p + 112) ^ v)) |
              ((load16(p + n - 128) ^ v) | (load16(p + n - 112) ^ v)) |
              ((load16(p + n - 96) ^ v) | (load16(p + n - 80) ^ v));
    }
  } else if (n >= 16 && n <= 64) {
    diff = (load16(p) ^ v) | (load16(p + n - 16) ^ v);
    if (n > 32) diff |= (load16(p + 16) ^ v) | (load16(p + n - 32) ^ v);
  } else {
    return all_are(p, n, expected);
  }
  return (diff[0] | diff[1]) == 0;
}

// All bytes equal to `expected`? 32 bytes per step in four independent
// words (GCC -O2 does not vectorise this loop itself); the byte loop in
// find_changed runs only when something did change.
bool all_are(const std::byte* p, std::size_t n, std::byte expected) {
  const std::uint64_t w = 0x0101010101010101ull * static_cast<std::uint8_t>(expected);
  std::uint64_t diff = 0;
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    std::uint64_t a, b, c, d;
    std::memcpy(&a, p + i, 8);
    std::memcpy(&b, p + i + 8, 8);
    std::memcpy(&c, p + i + 16, 8);
    std::memcpy(&d, p + i + 24, 8);
    diff |= (a ^ w) | (b ^ w) | (c ^ w) | (d ^ w);
  }
  for (; i + 8 <= n; i += 8) {
    std::uint64_t a;
    std::memcpy(&a, p + i, 8);
    diff |= a ^ w;
  }
  for (; i < n; ++i) diff |= static_cast<std::uint8_t>(p[i]) ^ (w & 0xff);
  return diff == 0;
}

std::pair<std::size_t, std::size_t> find_changed(const std::byte* p, std::size_t n,
                                                 std::byte expected) {
  if (all_are(p, n, expected)) return {0, 0};
  std::size_t first = 0, count = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (p[i] != expected) {
      if (count == 0) first = i;
      ++count;
    }
  }
  return {first, count};
}
}  // namespace

std::pair<std::size_t, std::size_t> DebugAllocator::check_canary(const std::byte* block,
                                                                 std::size_t size) const {
  auto [first, count] =
      find_changed(block + size, options_.canary_bytes, debug::internal::kCanaryByte);
  return {size + first, count};
}

std::pair<std::size_t, std::size_t> DebugAllocator::check_pattern(const std::byte* block,
                                                                  std::size_t size) const {
  // The canary was checked at free time and then overwritten with the freed
  // pattern too: a write just past a freed block is a write after free.
  return find_changed(block, size + options_.canary_bytes, debug::internal::kFreedByte);
}

CallSite DebugAllocator::site_of(std::uintptr_t ret, const StackTrace* t) const {
  CallSite s;
  s.ret_addr = ret;
  if (t != nullptr) s.frames.assign(t->frames, t->frames + t->depth);
  return s;
}

CallSite DebugAllocator::free_site_of(std::uintptr_t ret, const StackTrace* t) const {
  CallSite s;
  s.ret_addr = ret;
  if (t != nullptr) s.frames.assign(t->free_frames, t->free_frames + t->free_depth);
  return s;
}

const DebugAllocator::StackTrace* DebugAllocator::trace_of_freed(std::uint64_t pos) const {
  if ((freed_.at(pos).bits & Freed::kTraced) == 0) return nullptr;
  for (std::uint64_t i = freed_traces_.end(); i-- != freed_traces_.begin();) {
    if (freed_traces_.at(i).pos == pos) return freed_traces_.at(i).trace;
  }
  return nullptr;
}

// Block, allocation site and free site of freed_ entry `pos`.
void DebugAllocator::fill_freed_report(Report& r, std::uint64_t pos) const {
  const Freed& f = freed_.at(pos);
  const StackTrace* t = trace_of_freed(pos);
  r.block_address = f.addr;
  r.block_size = f.size();
  r.block_alignment = f.alignment();
  r.alloc_site = site_of(f.alloc_ret, t);
  r.free_site = free_site_of(f.free_ret, t);
}

void DebugAllocator::fill_block_report(Report& r, std::uintptr_t addr,
                                       const Record& rec) const {
  r.block_address = addr;
  r.block_size = rec.size;
  r.block_alignment = rec.alignment;
  r.alloc_site = site_of(rec.ret_addr, rec.trace);
}

namespace debug::internal {
CallSite this_call_site(std::uintptr_t ret) {
  CallSite s;
  s.ret_addr = ret;
  void* frames[debug::internal::kMaxFrames];
  int n = debug::internal::capture_stack(frames, debug::internal::kMaxFrames);
  s.frames.assign(frames, frames + n);
  return s;
}
}  // namespace debug::internal

using debug::internal::this_call_site;

Report DebugAllocator::not_live_report_locked(std::uintptr_t addr, std::size_t len,
                                              Alignment alignment, Operation op) {
  Report r;
  r.operation = op;
  r.address = addr;
  r.passed_size = len;
  r.passed_alignment = alignment;
  for (std::uint64_t pos = freed_.end(); pos-- != freed_.begin();) {  // newest first
    if (freed_.at(pos).addr != addr) continue;
    r.kind = op == Operation::kFree ? ErrorKind::kDoubleFree : ErrorKind::kUseOfFreed;
    fill_freed_report(r, pos);
    if (!freed_.at(pos).held()) r.note = "the block had already left the quarantine";
    return r;
  }
  r.kind = ErrorKind::kInvalidPointer;
  // Rare path: a linear search says whether it points inside a live block.
  live_.for_each([&](std::uintptr_t base, const Record& rec) {
    if (addr > base && addr < base + rec.size && r.block_address == 0) {
      fill_block_report(r, base, rec);
      r.note = fmt::format("points {} bytes into a live block of {} bytes", addr - base,
                           rec.size);
    }
  });
  return r;
}

void DebugAllocator::emit(Report r) {
  if (options_.sink) {
    options_.sink(r);
  } else {
    std::string t = options_.json_to_stderr ? r.json() + "\n" : r.text();
    std::fwrite(t.data(), 1, t.size(), stderr);
  }
  if (options_.abort_on_error) {
    std::fflush(stderr);
    std::abort();
  }
}

void DebugAllocator::emit_all(std::vector<Report>& reports) {
  if (reports.empty()) return;
  for (auto& r : reports) emit(std::move(r));
  reports.clear();
}

void DebugAllocator::log_call(std::string_view op, std::size_t len, std::size_t new_len,
                              Alignment alignment, const void* in, const void* out,
                              std::uintptr_t ret) {
  std::string line = fmt::format(
      "alloy debug: {} len={} new_len={} align={} in={} -> {} from {:#x} {}\n", op, len,
      new_len, alignment.bytes(), in, out, ret,
      debug::symbolize(reinterpret_cast<void*>(ret), true));
  if (options_.log) {
    options_.log(line);
  } else {
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
}

// ---------------------------------------------------------------- quarantine

void DebugAllocator::report_use_after_free_locked(std::uint64_t pos,
                                                   std::vector<Report>& out) {
  const Freed& f = freed_.at(pos);
  auto [first, count] = check_pattern(reinterpret_cast<const std::byte*>(f.addr), f.size());
  Report r;
  r.kind = ErrorKind::kUseAfterFree;
  r.operation = Operation::kCheck;
  r.address = f.addr;
  fill_freed_report(r, pos);
  r.offset = first;
  r.bad_bytes = count;
  r.note = "found when the block left the quarantine";
  out.push_back(std::move(r));
}

inline void DebugAllocator::release_held_locked(std::uint64_t pos, std::vector<Report>& out) {
  Freed& f = freed_.at(pos);
  auto* block = reinterpret_cast<std::byte*>(f.addr);
  const std::size_t size = f.size();
  if (!all_are_small(block, size + options_.canary_bytes, debug::internal::kFreedByte))
      [[unlikely]] {
    report_use_after_free_locked(pos, out);
  }
  stats_.quarantined_bytes -= size;
  f.bits &= ~Freed::kHeld;
  child_.raw_free(Bytes(block, size + options_.canary_bytes), f.alignment(), f.free_ret);
}

inline bool DebugAllocator::evict_one_locked(std::vector<Report>& out) {
  while (released_ != freed_.end()) {
    const std::uint64_t pos = released_++;
    if (freed_.at(pos).held()) {
      release_held_locked(pos, out);
      return true;
    }
  }
  return false;
}

void DebugAllocator::forget_history_locked() {
  const std::uint64_t keep_from = released_ - options_.freed_history;
  while (!freed_traces_.empty() && freed_traces_.front().pos < keep_from) {
    release_trace_locked(freed_traces_.front().trace);
    freed_traces_.pop_front();
  }
  freed_.drop_until(keep_from);
}

void DebugAllocator::quarantine_locked(std::uintptr_t addr, const Record& rec,
                                       std::uintptr_t free_ret, std::vector<Report>& out) {
  const std::size_t size = rec.size;
  const bool hold = size <= hold_limit_;
  if (!hold) {
    child_.raw_free(Bytes(reinterpret_cast<std::byte*>(addr), size + options_.canary_bytes),
                    rec.alignment, free_ret);
    if (options_.freed_history == 0) {  // nothing to remember
      release_trace_locked(rec.trace);
      return;
    }
  }
  const std::uint64_t pos = freed_.end();
  std::uint64_t bits = static_cast<std::uint64_t>(size) | (std::uint64_t{rec.alignment.log2()} << 48);
  if (hold) bits |= Freed::kHeld;
  if (rec.trace != nullptr) [[unlikely]] {
    // Blocks with an allocation trace get a free trace too.
    bits |= Freed::kTraced;
    capture_free_trace_locked(rec.trace);
    freed_traces_.push_back(FreedTrace{pos, rec.trace});
  }
  freed_.push_back(Freed{addr, rec.ret_addr, free_ret, bits});
  if (hold) {
    fill_small(reinterpret_cast<std::byte*>(addr), size + options_.canary_bytes,
               debug::internal::kFreedByte);
    stats_.quarantined_bytes += size;
    while (stats_.quarantined_bytes > options_.quarantine_bytes && evict_one_locked(out)) {
    }
  }
  trim_history_locked();
}

// ---------------------------------------------------------------- calls

void DebugAllocator::inject_failure_locked(bool resize, std::int64_t index, std::size_t len,
                                           std::uintptr_t ret) {
  if (injected_) return;
  injected_ = InjectedFailure{resize, index, len, this_call_site(ret)};
  if (options_.on_injected_failure) options_.on_injected_failure(*injected_);
}

void* DebugAllocator::do_alloc(std::size_t len, Alignment alignment, std::uintptr_t ret) {
  Guard guard(lock_ptr());
  deinit_done_ = false;
  const std::uint64_t index = stats_.alloc_calls++;
  void* result = nullptr;
  std::size_t total = 0;
  if (index >= fail_alloc_at_) [[unlikely]] {
    inject_failure_locked(false, static_cast<std::int64_t>(index), len, ret);
  } else if (len <= options_.memory_limit - std::min(options_.memory_limit, stats_.live_bytes) &&
             !__builtin_add_overflow(len, options_.canary_bytes, &total)) [[likely]] {
    result = child_.raw_alloc(total, alignment, ret);
  }
  if (result == nullptr) [[unlikely]] {
    ++stats_.failed_allocs;
  } else {
    auto* block = static_cast<std::byte*>(result);
    write_canary(block, len);
    StackTrace* trace = should_sample_locked() ? new_trace_locked() : nullptr;
    Record* rec = live_.claim_new(reinterpret_cast<std::uintptr_t>(result));
    rec->size = len;
    rec->ret_addr = ret;
    rec->trace = trace;
    rec->seq = next_seq_++;
    rec->alignment = alignment;
    stats_.live_bytes += len;
    stats_.total_bytes += len;
    stats_.peak_live_bytes = std::max(stats_.peak_live_bytes, stats_.live_bytes);
    stats_.peak_live_count = std::max(stats_.peak_live_count, live_.size());
  }
  if (options_.verbose) [[unlikely]] log_call("alloc", len, 0, alignment, nullptr, result, ret);
  return result;
}

void* DebugAllocator::do_resize(Bytes memory, Alignment alignment, std::size_t new_len,
                                std::uintptr_t ret, bool may_move) {
  const Operation op = may_move ? Operation::kRemap : Operation::kResize;
  const auto addr = reinterpret_cast<std::uintptr_t>(memory.data());
  std::vector<Report> reports;
  void* result = nullptr;
  {
    Guard guard(lock_ptr());
    const auto index = static_cast<std::int64_t>(stats_.resize_calls++);
    Record* found = live_.find(addr);
    if (found == nullptr) {
      Report r = not_live_report_locked(addr, memory.size(), alignment, op);
      r.new_size = new_len;
      r.this_call = this_call_site(ret);
      reports.push_back(std::move(r));
    } else if (found->size != memory.size() || found->alignment != alignment) {
      Report r;
      r.kind = found->size != memory.size() ? ErrorKind::kWrongSize
                                            : ErrorKind::kWrongAlignment;
      r.operation = op;
      r.address = addr;
      r.passed_size = memory.size();
      r.passed_alignment = alignment;
      r.new_size = new_len;
      fill_block_report(r, addr, *found);
      r.this_call = this_call_site(ret);
      reports.push_back(std::move(r));
    } else {
      Record& rec = *found;
      auto* block = memory.data();
      if (auto [first, count] = check_canary(block, rec.size); count != 0) {
        Report r;
        r.kind = ErrorKind::kOverrun;
        r.operation = op;
        r.address = addr;
        r.passed_size = memory.size();
        r.passed_alignment = alignment;
        r.new_size = new_len;
        r.offset = first;
        r.bad_bytes = count;
        fill_block_report(r, addr, rec);
        r.this_call = this_call_site(ret);
        reports.push_back(std::move(r));
        write_canary(block, rec.size);  // reported once; the call goes on
      }
      std::size_t total = 0;
      const bool grows = new_len > rec.size;
      const bool over_limit =
          grows && new_len - rec.size > options_.memory_limit -
                                            std::min(options_.memory_limit, stats_.live_bytes);
      if (options_.fail_resize_from >= 0 && index >= options_.fail_resize_from) {
        inject_failure_locked(true, index, new_len, ret);
      } else if (!over_limit &&
                 !__builtin_add_overflow(new_len, options_.canary_bytes, &total)) {
        Bytes whole(block, rec.size + options_.canary_bytes);
        if (may_move) {
          result = child_.raw_remap(whole, alignment, total, ret);
        } else if (child_.raw_resize(whole, alignment, total, ret)) {
          result = block;
        }
      }
      if (result != nullptr) {
        auto* moved = static_cast<std::byte*>(result);
        write_canary(moved, new_len);
        stats_.live_bytes = stats_.live_bytes - rec.size + new_len;
        stats_.peak_live_bytes = std::max(stats_.peak_live_bytes, stats_.live_bytes);
        if (grows) stats_.total_bytes += new_len - rec.size;
        rec.size = new_len;
        if (moved != block) {
          // Same block at a new address: it keeps its allocation site.
          const Record moved_rec = rec;
          live_.erase(addr);
          live_.insert_new(reinterpret_cast<std::uintptr_t>(moved), moved_rec);
        }
      }
    }
    if (options_.verbose) {
      log_call(may_move ? "remap" : "resize", memory.size(), new_len, alignment,
               memory.data(), result, ret);
    }
    stats_.errors += reports.size();
  }
  emit_all(reports);
  return result;
}

void DebugAllocator::do_free(Bytes memory, Alignment alignment, std::uintptr_t ret) {
  const auto addr = reinterpret_cast<std::uintptr_t>(memory.data());
  const std::size_t size = memory.size();
  {
    // Fast path: a correct free of a live, untraced block with an intact
    // canary. Everything else (errors, sampled blocks, verbose) goes through
    // free_slow, which looks again.
    Guard guard(lock_ptr());
    Record* found = live_.find(addr);
    if (found != nullptr && found->size == size && found->alignment == alignment &&
        found->trace == nullptr && !options_.verbose &&
        canary_intact(memory.data(), size)) [[likely]] {
      const std::uintptr_t alloc_ret = found->ret_addr;
      live_.erase_value(found);
      stats_.live_bytes -= size;
      ++stats_.total_frees;
      const std::uint64_t bits =
          static_cast<std::uint64_t>(size) | (std::uint64_t{alignment.log2()} << 48);
      if (size <= hold_limit_) [[likely]] {
        fill_small(memory.data(), size + options_.canary_bytes, debug::internal::kFreedByte);
        freed_.push_back(Freed{addr, alloc_ret, ret, bits | Freed::kHeld});
        stats_.quarantined_bytes += size;
        // One block in, about one out: the child takes them back one at a
        // time, which keeps glibc in its per-thread cache (evicting in
        // batches overflowed it and cost ~50 more instructions per free).
        if (stats_.quarantined_bytes > options_.quarantine_bytes) {
          while (stats_.quarantined_bytes > options_.quarantine_bytes &&
                 evict_one_locked(pending_)) {
          }
          trim_history_locked();
        }
        if (pending_.empty()) [[likely]] return;
      } else {
        // Too big to hold (or no quarantine): straight back to the child,
        // remembered in the history only.
        child_.raw_free(Bytes(memory.data(), size + options_.canary_bytes), alignment, ret);
        if (options_.freed_history == 0) return;
        freed_.push_back(Freed{addr, alloc_ret, ret, bits});
      }
      trim_history_locked();
      if (pending_.empty()) [[likely]] return;
      // A block leaving the quarantine had been written to.
      std::vector<Report> reports = std::move(pending_);
      pending_.clear();
      stats_.errors += reports.size();
      guard.unlock();
      emit_all(reports);
      return;
    }
  }
  free_slow(memory, alignment, ret);
}

void DebugAllocator::free_slow(Bytes memory, Alignment alignment, std::uintptr_t ret) {
  const auto addr = reinterpret_cast<std::uintptr_t>(memory.data());
  std::vector<Report> reports;
  {
    Guard guard(lock_ptr());
    Record* found = live_.find(addr);
    if (found == nullptr) {
      Report r = not_live_report_locked(addr, memory.size(), alignment, Operation::kFree);
      r.this_call = this_call_site(ret);
      reports.push_back(std::move(r));
    } else if (found->size != memory.size() || found->alignment != alignment) {
      Report r;
      r.kind = found->size != memory.size() ? ErrorKind::kWrongSize
                                            : ErrorKind::kWrongAlignment;
      r.operation = Operation::kFree;
      r.address = addr;
      r.passed_size = memory.size();
      r.passed_alignment = alignment;
      fill_block_report(r, addr, *found);
      r.this_call = this_call_site(ret);
      reports.push_back(std::move(r));
    } else {
      Record rec = *found;
      live_.erase(addr);
      if (auto [first, count] = check_canary(memory.data(), rec.size); count != 0) {
        Report r;
        r.kind = ErrorKind::kOverrun;
        r.operation = Operation::kFree;
        r.address = addr;
        r.passed_size = memory.size();
        r.passed_alignment = alignment;
        r.offset = first;
        r.bad_bytes = count;
        fill_block_report(r, addr, rec);
        r.this_call = this_call_site(ret);
        reports.push_back(std::move(r));
        write_canary(memory.data(), rec.size);
      }
      stats_.live_bytes -= rec.size;
      ++stats_.total_frees;
      quarantine_locked(addr, rec, ret, reports);
    }
    if (options_.verbose) {
      log_call("free", memory.size(), 0, alignment, memory.data(), nullptr, ret);
    }
    stats_.errors += reports.size();
  }
  emit_all(reports);
}

// ---------------------------------------------------------------- queries

std::size_t DebugAllocator::check_leaks() {
  std::vector<Report> reports;
  {
    Guard guard(lock_ptr());
    std::vector<std::pair<std::uintptr_t, const Record*>> order;
    order.reserve(live_.size());
    live_.for_each([&](std::uintptr_t addr, const Record& rec) { order.emplace_back(addr, &rec); });
    std::sort(order.begin(), order.end(),
              [](const auto& a, const auto& b) { return a.second->seq < b.second->seq; });
    for (const auto& [addr, rec] : order) {
      Report r;
      r.kind = ErrorKind::kLeak;
      r.operation = Operation::kLeakCheck;
      r.address = addr;
      fill_block_report(r, addr, *rec);
      reports.push_back(std::move(r));
    }
  }
  const std::size_t n = reports.size();
  for (auto& r : reports) {
    if (options_.sink) {
      options_.sink(r);
    } else {
      std::string t = options_.json_to_stderr ? r.json() + "\n" : r.text();
      std::fwrite(t.data(), 1, t.size(), stderr);
    }
  }
  // A leak is not a misuse of a call: abort_on_error does not apply here.
  return n;
}

std::size_t DebugAllocator::check() {
  std::vector<Report> reports;
  {
    Guard guard(lock_ptr());
    live_.for_each([&](std::uintptr_t addr, const Record& rec) {
      auto [first, count] = check_canary(reinterpret_cast<const std::byte*>(addr), rec.size);
      if (count == 0) return;
      Report r;
      r.kind = ErrorKind::kOverrun;
      r.operation = Operation::kCheck;
      r.address = addr;
      r.offset = first;
      r.bad_bytes = count;
      fill_block_report(r, addr, rec);
      reports.push_back(std::move(r));
      write_canary(reinterpret_cast<std::byte*>(addr), rec.size);
    });
    for (std::uint64_t pos = released_; pos != freed_.end(); ++pos) {
      const Freed& f = freed_.at(pos);
      if (!f.held()) continue;
      const std::uintptr_t addr = f.addr;
      auto* block = reinterpret_cast<std::byte*>(addr);
      auto [first, count] = check_pattern(block, f.size());
      if (count == 0) continue;
      Report r;
      r.kind = ErrorKind::kUseAfterFree;
      r.operation = Operation::kCheck;
      r.address = addr;
      r.offset = first;
      r.bad_bytes = count;
      fill_freed_report(r, pos);
      reports.push_back(std::move(r));
      // Restore so the same write is reported once.
      std::memset(block, static_cast<int>(debug::internal::kFreedByte),
                  f.size() + options_.canary_bytes);
    }
    stats_.errors += reports.size();
  }
  const std::size_t n = reports.size();
  emit_all(reports);
  return n;
}

std::size_t DebugAllocator::deinit() {
  const std::size_t leaks = check_leaks();
  std::vector<Report> reports;
  {
    Guard guard(lock_ptr());
    while (stats_.quarantined_bytes > 0 && evict_one_locked(reports)) {
    }
    trim_history_locked();
    if (options_.free_leaks_on_deinit) {
      live_.for_each([&](std::uintptr_t addr, const Record& rec) {
        child_.raw_free(Bytes(reinterpret_cast<std::byte*>(addr), rec.size + options_.canary_bytes),
                        rec.alignment, rec.ret_addr);
        release_trace_locked(rec.trace);
        stats_.live_bytes -= rec.size;
      });
      live_.clear();
    }
    stats_.errors += reports.size();
    deinit_done_ = true;
  }
  emit_all(reports);
  return leaks;
}

void DebugAllocator::visit(const std::function<void(const AllocationInfo&)>& fn) const {
  Guard guard(lock_ptr());
  std::vector<std::pair<std::uintptr_t, const Record*>> order;
  order.reserve(live_.size());
  live_.for_each([&](std::uintptr_t addr, const Record& rec) { order.emplace_back(addr, &rec); });
  std::sort(order.begin(), order.end(),
            [](const auto& a, const auto& b) { return a.second->seq < b.second->seq; });
  for (const auto& [addr, rec] : order) {
    std::span<void* const> frames;
    if (rec->trace != nullptr) {
      frames = std::span<void* const>(rec->trace->frames,
                                      static_cast<std::size_t>(rec->trace->depth));
    }
    fn(AllocationInfo{reinterpret_cast<void*>(addr), rec->size, rec->alignment, rec->ret_addr,
                      frames});
  }
}

DebugStats DebugAllocator::stats() const {
  Guard guard(lock_ptr());
  DebugStats s = stats_;
  // Derived here rather than counted on every call.
  s.live_count = live_.size();
  s.total_allocs = s.alloc_calls - s.failed_allocs;
  return s;
}

std::optional<InjectedFailure> DebugAllocator::injected_failure() const {
  Guard guard(lock_ptr());
  return injected_;
}

}  // namespace alloy
