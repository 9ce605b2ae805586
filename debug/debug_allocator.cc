#include "alloy/debug/debug_allocator.h"

#include <fmt/format.h>

#if __has_include(<sys/single_threaded.h>)
#include <sys/single_threaded.h>
#define ALLOY_DEBUG_HAS_SINGLE_THREADED 1
#endif

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "alloy/debug/internal/pattern.h"
#include "alloy/debug/internal/symbolizer.h"
#include "alloy/profile/pprof_writer.h"

namespace alloy {

using debug::CallSite;
using debug::ErrorKind;
using debug::Operation;
using debug::Report;
using debug::internal::Freed;
using debug::internal::kFreedByte;
using debug::internal::StackTrace;
using debug::internal::this_call_site;

namespace {

// Changed bytes of a quarantined block. The canary was checked at free time
// and then overwritten with the freed pattern too: a write just past a freed
// block is a write after free.
debug::internal::Mismatch check_pattern(const std::byte* block, std::size_t size,
                                        std::size_t canary_bytes) {
  return debug::internal::find_changed(block, size + canary_bytes, kFreedByte);
}

// The freed pattern's fill and check, with the byte folded in: one copy
// each for the free path's call sites (as the pattern functions were when
// they lived in this file; passing the byte cost instructions per free).
[[gnu::noinline]] void fill_freed(std::byte* p, std::size_t n) {
  debug::internal::fill(p, n, kFreedByte);
}
[[gnu::noinline]] bool all_freed(const std::byte* p, std::size_t n) {
  return debug::internal::all_are(p, n, kFreedByte);
}

}  // namespace

// One lock per call when thread_safe: a BiasedLock. The first thread to use
// the allocator takes it with plain stores (no atomic read-modify-write)
// until another thread calls; from then on it is a test-and-set spin lock for
// everyone. (Hence the callbacks run under the lock -- log,
// on_injected_failure -- must not start a thread that calls this allocator
// and wait for it.)
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

DebugAllocator::DebugAllocator(Allocator child, DebugOptions options)
    : child_(child),
      options_(std::move(options)),
      quarantine_({.bytes = options_.quarantine_bytes,
                   .max_block = options_.quarantine_max_block,
                   .history = options_.freed_history}) {
  if (options_.sample_every == 0) options_.sample_every = 1;
  if (options_.thread_safe) lock_if_thread_safe_ = &lock_;
  if (options_.fail_alloc_index != DebugOptions::kNever) fail_alloc_at_ = options_.fail_alloc_index;
  if (options_.fail_resize_index != DebugOptions::kNever) {
    fail_resize_at_ = options_.fail_resize_index;
  }
  // The deprecated spellings, for one release: the stricter value applies.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  options_.ceiling = std::min(options_.ceiling, options_.memory_limit);
  options_.memory_limit = options_.ceiling;
  if (options_.fail_alloc_from >= 0) {
    fail_alloc_at_ =
        std::min(fail_alloc_at_, static_cast<std::uint64_t>(options_.fail_alloc_from));
  }
  if (options_.fail_resize_from >= 0) {
    fail_resize_at_ =
        std::min(fail_resize_at_, static_cast<std::uint64_t>(options_.fail_resize_from));
  }
#pragma GCC diagnostic pop
}

std::size_t DebugAllocator::ceiling() const {
  Guard guard(lock_ptr());
  return options_.ceiling;
}

void DebugAllocator::set_ceiling(std::size_t bytes) {
  Guard guard(lock_ptr());
  options_.ceiling = bytes;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  options_.memory_limit = bytes;  // options() reads the same under either name
#pragma GCC diagnostic pop
}

DebugAllocator::~DebugAllocator() {
  if (!deinit_done_) (void)deinit();
  // Traces still referenced by freed-block history go back to the pool,
  // which deletes them all.
  quarantine_.release_traces(traces_);
}

// ---------------------------------------------------------------- vtable

void* DebugAllocator::vt_alloc(void* ctx, std::size_t len, Alignment alignment,
                               std::uintptr_t ret) {
  auto* self = static_cast<DebugAllocator*>(ctx);
  return self->do_alloc<AllocKind::kPlain>(len, alignment, ret).data();
}
Bytes DebugAllocator::vt_alloc_at_least(void* ctx, std::size_t len, Alignment alignment,
                                        std::uintptr_t ret) {
  return static_cast<DebugAllocator*>(ctx)->do_alloc<AllocKind::kAtLeast>(len, alignment, ret);
}
void* DebugAllocator::vt_alloc_zeroed(void* ctx, std::size_t len, Alignment alignment,
                                      std::uintptr_t ret) {
  auto* self = static_cast<DebugAllocator*>(ctx);
  return self->do_alloc<AllocKind::kZeroed>(len, alignment, ret).data();
}
// A live block of this allocator; a freed (or quarantined) one is not.
Ownership DebugAllocator::vt_owns(void* ctx, const void* ptr) {
  auto* self = static_cast<DebugAllocator*>(ctx);
  Guard guard(self->lock_ptr());
  return ownership(self->live_.find(reinterpret_cast<std::uintptr_t>(ptr)) != nullptr);
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

inline bool DebugAllocator::should_sample_locked() {
  if (options_.traces == TraceMode::kNever) return false;
  if (options_.traces == TraceMode::kAlways) return true;
  if (--sample_countdown_ != 0) return false;
  sample_countdown_ = options_.sample_every;
  return true;
}

// Block, allocation site and free site of quarantine entry `pos`.
void DebugAllocator::fill_freed_report(Report& r, std::uint64_t pos) const {
  const Freed& f = quarantine_.at(pos);
  const StackTrace* t = quarantine_.trace_of(pos);
  r.block_address = f.addr;
  r.block_size = f.size();
  r.block_alignment = f.alignment();
  r.alloc_site = debug::internal::alloc_site(f.alloc_ret, t);
  r.free_site = debug::internal::free_site(f.free_ret, t);
}

void DebugAllocator::fill_block_report(Report& r, std::uintptr_t addr,
                                       const Record& rec) const {
  r.block_address = addr;
  r.block_size = rec.size;
  r.block_alignment = rec.alignment;
  r.alloc_site = debug::internal::alloc_site(rec.ret_addr, rec.trace);
}

Report DebugAllocator::not_live_report_locked(std::uintptr_t addr, std::size_t len,
                                              Alignment alignment, Operation op) {
  Report r;
  r.operation = op;
  r.address = addr;
  r.passed_size = len;
  r.passed_alignment = alignment;
  if (std::optional<std::uint64_t> pos = quarantine_.find(addr)) {  // the newest free
    r.kind = op == Operation::kFree ? ErrorKind::kDoubleFree : ErrorKind::kUseOfFreed;
    fill_freed_report(r, *pos);
    if (!quarantine_.at(*pos).held()) r.note = "the block had already left the quarantine";
    return r;
  }
  r.kind = ErrorKind::kInvalidPointer;
  // Rare path: a linear search says whether it points inside a live block.
  live_.for_each([&](std::uintptr_t base, const Record& rec) {
    if (addr > base && addr < base + rec.usable() && r.block_address == 0) {
      fill_block_report(r, base, rec);
      r.note = fmt::format("points {} bytes into a live block of {} bytes", addr - base,
                           rec.size);
    }
  });
  if (r.block_address == 0) {
    // Not ours at all: the child's owns entry (if it has one) says whose.
    switch (child_.owns(reinterpret_cast<const void*>(addr))) {
      case Ownership::kYes:
        r.note = "the child allocator owns it: its memory, not handed out through this "
                 "DebugAllocator (or a block the quarantine already gave back)";
        break;
      case Ownership::kNo:
        r.note = "foreign: not memory of the child allocator either";
        break;
      case Ownership::kUnknown:
        break;
    }
  }
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
  const Freed& f = quarantine_.at(pos);
  auto [first, count] =
      check_pattern(reinterpret_cast<const std::byte*>(f.addr), f.size(), options_.canary_bytes);
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

// Gives the oldest held block back to the child, checking its pattern.
inline bool DebugAllocator::evict_one_locked(std::vector<Report>& out) {
  std::uint64_t pos;
  Freed* f = quarantine_.take_oldest(pos);
  if (f == nullptr) return false;
  auto* block = reinterpret_cast<std::byte*>(f->addr);
  const std::size_t size = f->size();
  if (!all_freed(block, size + options_.canary_bytes)) [[unlikely]] {
    report_use_after_free_locked(pos, out);
  }
  quarantine_.released(*f);
  child_.raw_free(Bytes(block, size + options_.canary_bytes), f->alignment(), f->free_ret);
  return true;
}

// Ends a correct free: remembers it, fills and holds the block (or gives it
// back to the child at once if too big), evicts what no longer fits.
void DebugAllocator::quarantine_locked(std::uintptr_t addr, const Record& rec,
                                       std::uintptr_t free_ret, std::vector<Report>& out) {
  const std::size_t size = rec.usable();
  const bool hold = quarantine_.would_hold(size);
  if (!hold) {
    child_.raw_free(Bytes(reinterpret_cast<std::byte*>(addr), size + options_.canary_bytes),
                    rec.alignment, free_ret);
    if (!quarantine_.keeps_history()) {  // nothing to remember
      traces_.release(rec.trace);
      return;
    }
  }
  const std::uint64_t pos =
      hold ? quarantine_.push_held(addr, rec.ret_addr, free_ret, size, rec.alignment)
           : quarantine_.push_released(addr, rec.ret_addr, free_ret, size, rec.alignment);
  if (rec.trace != nullptr) [[unlikely]] {
    // Blocks with an allocation trace get a free trace too.
    debug::internal::TracePool::capture_free(rec.trace);
    quarantine_.attach_trace(pos, rec.trace);
  }
  if (hold) {
    fill_freed(reinterpret_cast<std::byte*>(addr), size + options_.canary_bytes);
    while (quarantine_.over_budget() && evict_one_locked(out)) {
    }
  }
  quarantine_.trim(traces_);
}

// ---------------------------------------------------------------- calls

void DebugAllocator::inject_failure_locked(bool resize, std::int64_t index, std::size_t len,
                                           std::uintptr_t ret) {
  if (injected_) return;
  injected_ = InjectedFailure{resize, index, len, this_call_site(ret)};
  if (options_.on_injected_failure) options_.on_injected_failure(*injected_);
}

template <DebugAllocator::AllocKind kKind>
Bytes DebugAllocator::do_alloc(std::size_t len, Alignment alignment, std::uintptr_t ret) {
  Guard guard(lock_ptr());
  deinit_done_ = false;
  const std::uint64_t index = stats_.alloc_calls++;
  Bytes result;
  std::size_t total = 0;
  if (index >= fail_alloc_at_) [[unlikely]] {
    inject_failure_locked(false, static_cast<std::int64_t>(index), len, ret);
  } else if (len <= options_.ceiling - std::min(options_.ceiling, stats_.live_bytes) &&
             !__builtin_add_overflow(len, options_.canary_bytes, &total)) [[likely]] {
    if constexpr (kKind == AllocKind::kAtLeast) {
      // The child's extra bytes, less the canary, are the user's too.
      result = child_.raw_alloc_at_least(total, alignment, ret);
      if (result.data() != nullptr) {
        result = Bytes(result.data(), result.size() - options_.canary_bytes);
      }
    } else {
      void* p = kKind == AllocKind::kZeroed ? child_.raw_alloc_zeroed(total, alignment, ret)
                                            : child_.raw_alloc(total, alignment, ret);
      if (p != nullptr) result = Bytes(static_cast<std::byte*>(p), len);
    }
  }
  if (result.data() == nullptr) [[unlikely]] {
    ++stats_.failed_allocs;
    result = Bytes();
  } else {
    std::size_t extra = 0;
    if constexpr (kKind == AllocKind::kAtLeast) {
      extra = std::min<std::size_t>(result.size() - len, std::numeric_limits<std::uint32_t>::max());
      result = Bytes(result.data(), len + extra);
    }
    std::byte* block = result.data();
    debug::internal::write_canary(block, len + extra, options_.canary_bytes);
    StackTrace* trace = should_sample_locked() ? traces_.take() : nullptr;
    Record* rec = live_.claim_new(reinterpret_cast<std::uintptr_t>(block));
    rec->size = len;
    rec->extra = static_cast<std::uint32_t>(extra);
    rec->ret_addr = ret;
    rec->trace = trace;
    rec->seq = next_seq_++;
    rec->alignment = alignment;
    stats_.live_bytes += len + extra;
    stats_.total_bytes += len + extra;
    stats_.peak_live_bytes = std::max(stats_.peak_live_bytes, stats_.live_bytes);
    stats_.peak_live_count = std::max(stats_.peak_live_count, live_.size());
  }
  if (options_.verbose) [[unlikely]] {
    log_call(kKind == AllocKind::kAtLeast  ? "alloc_at_least"
             : kKind == AllocKind::kZeroed ? "alloc_zeroed"
                                           : "alloc",
             len, result.size(), alignment, nullptr, result.data(), ret);
  }
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
    } else if (!found->accepts(memory.size()) || found->alignment != alignment) {
      Report r;
      r.kind = !found->accepts(memory.size()) ? ErrorKind::kWrongSize
                                            : ErrorKind::kWrongAlignment;
      r.operation = op;
      r.address = addr;
      r.passed_size = memory.size();
      r.passed_alignment = alignment;
      r.new_size = new_len;
      fill_block_report(r, addr, *found);
      if (found->extra != 0) {
        r.note = fmt::format("the freed-length rule: alloc_at_least reported {} bytes, so any "
                             "length from {} to {} is right",
                             found->usable(), found->size, found->usable());
      }
      r.this_call = this_call_site(ret);
      reports.push_back(std::move(r));
    } else {
      Record& rec = *found;
      auto* block = memory.data();
      if (auto [first, count] =
              debug::internal::check_canary(block, rec.usable(), options_.canary_bytes);
          count != 0) {
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
        debug::internal::write_canary(block, rec.usable(), options_.canary_bytes);  // reported once
      }
      std::size_t total = 0;
      const bool grows = new_len > rec.usable();
      const bool over_limit =
          grows && new_len - rec.usable() > options_.ceiling -
                                            std::min(options_.ceiling, stats_.live_bytes);
      if (static_cast<std::uint64_t>(index) >= fail_resize_at_) {
        inject_failure_locked(true, index, new_len, ret);
      } else if (!over_limit &&
                 !__builtin_add_overflow(new_len, options_.canary_bytes, &total)) {
        Bytes whole(block, rec.usable() + options_.canary_bytes);
        if (may_move) {
          result = child_.raw_remap(whole, alignment, total, ret);
        } else if (child_.raw_resize(whole, alignment, total, ret)) {
          result = block;
        }
      }
      if (result != nullptr) {
        auto* moved = static_cast<std::byte*>(result);
        debug::internal::write_canary(moved, new_len, options_.canary_bytes);
        stats_.live_bytes = stats_.live_bytes - rec.usable() + new_len;
        stats_.peak_live_bytes = std::max(stats_.peak_live_bytes, stats_.live_bytes);
        if (grows) stats_.total_bytes += new_len - rec.usable();
        rec.size = new_len;
        rec.extra = 0;  // resized: new_len exactly
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
    if (found != nullptr && found->accepts(size) && found->alignment == alignment &&
        found->trace == nullptr && !options_.verbose &&
        debug::internal::canary_intact(memory.data(), found->usable(),
                                       options_.canary_bytes)) [[likely]] {
      const std::uintptr_t alloc_ret = found->ret_addr;
      // The whole usable length (alloc_at_least may have given more than
      // the length freed), canary after it.
      const std::size_t usable = found->usable();
      live_.erase_value(found);
      stats_.live_bytes -= usable;
      ++stats_.total_frees;
      if (quarantine_.would_hold(usable)) [[likely]] {
        fill_freed(memory.data(), usable + options_.canary_bytes);
        quarantine_.push_held(addr, alloc_ret, ret, usable, alignment);
        // One block in, about one out: the child takes them back one at a
        // time, which keeps glibc in its per-thread cache (evicting in
        // batches overflowed it and cost ~50 more instructions per free).
        if (quarantine_.over_budget()) {
          while (quarantine_.over_budget() && evict_one_locked(pending_)) {
          }
          quarantine_.trim(traces_);
        }
        if (pending_.empty()) [[likely]] return;
      } else {
        // Too big to hold (or no quarantine): straight back to the child,
        // remembered in the history only.
        child_.raw_free(Bytes(memory.data(), usable + options_.canary_bytes), alignment, ret);
        if (!quarantine_.keeps_history()) return;
        quarantine_.push_released(addr, alloc_ret, ret, usable, alignment);
      }
      quarantine_.trim(traces_);
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
    } else if (!found->accepts(memory.size()) || found->alignment != alignment) {
      Report r;
      r.kind = !found->accepts(memory.size()) ? ErrorKind::kWrongSize
                                            : ErrorKind::kWrongAlignment;
      r.operation = Operation::kFree;
      r.address = addr;
      r.passed_size = memory.size();
      r.passed_alignment = alignment;
      fill_block_report(r, addr, *found);
      if (found->extra != 0) {
        r.note = fmt::format("the freed-length rule: alloc_at_least reported {} bytes, so any "
                             "length from {} to {} is right",
                             found->usable(), found->size, found->usable());
      }
      r.this_call = this_call_site(ret);
      reports.push_back(std::move(r));
    } else {
      Record rec = *found;
      live_.erase(addr);
      if (auto [first, count] =
              debug::internal::check_canary(memory.data(), rec.usable(), options_.canary_bytes);
          count != 0) {
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
        debug::internal::write_canary(memory.data(), rec.usable(), options_.canary_bytes);
      }
      stats_.live_bytes -= rec.usable();
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
      auto [first, count] = debug::internal::check_canary(reinterpret_cast<const std::byte*>(addr),
                                                          rec.usable(), options_.canary_bytes);
      if (count == 0) return;
      Report r;
      r.kind = ErrorKind::kOverrun;
      r.operation = Operation::kCheck;
      r.address = addr;
      r.offset = first;
      r.bad_bytes = count;
      fill_block_report(r, addr, rec);
      reports.push_back(std::move(r));
      debug::internal::write_canary(reinterpret_cast<std::byte*>(addr), rec.usable(),
                                    options_.canary_bytes);
    });
    quarantine_.for_each_held([&](std::uint64_t pos, const Freed& f) {
      const std::uintptr_t addr = f.addr;
      auto* block = reinterpret_cast<std::byte*>(addr);
      auto [first, count] = check_pattern(block, f.size(), options_.canary_bytes);
      if (count == 0) return;
      Report r;
      r.kind = ErrorKind::kUseAfterFree;
      r.operation = Operation::kCheck;
      r.address = addr;
      r.offset = first;
      r.bad_bytes = count;
      fill_freed_report(r, pos);
      reports.push_back(std::move(r));
      // Restore so the same write is reported once.
      std::memset(block, static_cast<int>(kFreedByte), f.size() + options_.canary_bytes);
    });
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
    while (quarantine_.held_bytes() > 0 && evict_one_locked(reports)) {
    }
    quarantine_.trim(traces_);
    if (options_.free_leaks_on_deinit) {
      live_.for_each([&](std::uintptr_t addr, const Record& rec) {
        child_.raw_free(Bytes(reinterpret_cast<std::byte*>(addr), rec.usable() + options_.canary_bytes),
                        rec.alignment, rec.ret_addr);
        traces_.release(rec.trace);
        stats_.live_bytes -= rec.usable();
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

namespace {

// Names for the profile's locations, from the same libdw symbolizer reports
// use. ctx holds the strings until the next call.
bool symbolize_for_profile(void* ctx, std::uintptr_t pc, profile::Frame* out) {
  auto* f = static_cast<debug::internal::SourceFrame*>(ctx);
  if (!debug::internal::symbolize_pc(pc, f)) return false;
  out->function = f->function.empty() ? nullptr : f->function.c_str();
  out->system_name = f->system_name.empty() ? nullptr : f->system_name.c_str();
  out->file = f->file.empty() ? nullptr : f->file.c_str();
  out->line = f->line;
  return true;
}

}  // namespace

bool DebugAllocator::write_profile(const char* path) const {
  // Copy the live blocks' sites under the lock, symbolize outside it.
  struct Live {
    std::size_t size;
    debug::CallSite site;
  };
  std::vector<Live> live;
  visit([&](const AllocationInfo& info) {
    debug::CallSite site;
    site.ret_addr = info.ret_addr;
    site.frames.assign(info.frames.begin(), info.frames.end());
    live.push_back({info.size, std::move(site)});
  });
  profile::PprofWriter w;
  std::uintptr_t pcs[64];
  for (const Live& b : live) {
    // The frames reports print: alloy's own dropped from the top.
    int n = 0;
    for (const debug::FrameInfo& f : b.site.symbolized_frames()) {
      if (n == 64) break;
      pcs[n++] = f.pc;
    }
    const auto bytes = static_cast<std::int64_t>(b.size);
    w.add(pcs, n, profile::SampleValues{1, bytes, 1, bytes});
  }
  debug::internal::SourceFrame scratch;
  return w.write_file(path, symbolize_for_profile, &scratch);
}

DebugStats DebugAllocator::stats() const {
  Guard guard(lock_ptr());
  DebugStats s = stats_;
  // Derived here rather than counted on every call.
  s.live_count = live_.size();
  s.total_allocs = s.alloc_calls - s.failed_allocs;
  s.quarantined_bytes = quarantine_.held_bytes();
  return s;
}

std::optional<InjectedFailure> DebugAllocator::injected_failure() const {
  Guard guard(lock_ptr());
  return injected_;
}

}  // namespace alloy
