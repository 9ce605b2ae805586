#include "debug/debug_allocator.h"

#include <absl/debugging/stacktrace.h>
#include <fmt/format.h>

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
  void* frames[debug::internal::kMaxFrames];
};

class DebugAllocator::Guard {
 public:
  explicit Guard(absl::Mutex* mu) : mu_(mu) {
    if (mu_ != nullptr) mu_->Lock();
  }
  ~Guard() { unlock(); }
  void unlock() {
    if (mu_ != nullptr) {
      mu_->Unlock();
      mu_ = nullptr;
    }
  }
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;

 private:
  absl::Mutex* mu_;
};

const VTable DebugAllocator::kVTable = {DebugAllocator::vt_alloc, DebugAllocator::vt_resize,
                                        DebugAllocator::vt_remap, DebugAllocator::vt_free};

DebugAllocator::DebugAllocator(Allocator child, DebugOptions options)
    : child_(child), options_(std::move(options)) {
  if (options_.thread_safe) mu_ = std::make_unique<absl::Mutex>();
  if (options_.sample_every == 0) options_.sample_every = 1;
}

DebugAllocator::~DebugAllocator() {
  if (!deinit_done_) (void)deinit();
  // Traces still referenced by freed-block history, and the pool itself.
  for (auto& [addr, f] : freed_) {
    release_trace_locked(f.rec.trace);
    release_trace_locked(f.free_trace);
  }
  freed_.clear();
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
  return t;
}

void DebugAllocator::release_trace_locked(StackTrace* t) {
  if (t != nullptr) trace_pool_.push_back(t);
}

bool DebugAllocator::should_sample_locked() {
  switch (options_.traces) {
    case TraceMode::kNever:
      return false;
    case TraceMode::kAlways:
      return true;
    case TraceMode::kSampled:
      if (--sample_countdown_ == 0) {
        sample_countdown_ = options_.sample_every;
        return true;
      }
      return false;
  }
  return false;
}

void DebugAllocator::write_canary(std::byte* block, std::size_t size) const {
  if (options_.canary_bytes != 0) {
    std::memset(block + size, static_cast<int>(debug::internal::kCanaryByte),
                options_.canary_bytes);
  }
}

namespace {
std::pair<std::size_t, std::size_t> find_changed(const std::byte* p, std::size_t n,
                                                 std::byte expected) {
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
  auto r = find_changed(block, size, debug::internal::kFreedByte);
  if (r.second != 0) return r;
  // A write just past a freed block is a write after free as well.
  return check_canary(block, size);
}

CallSite DebugAllocator::site_of(std::uintptr_t ret, const StackTrace* t) const {
  CallSite s;
  s.ret_addr = ret;
  if (t != nullptr) s.frames.assign(t->frames, t->frames + t->depth);
  return s;
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
  if (auto it = freed_.find(addr); it != freed_.end()) {
    const Freed& f = it->second;
    r.kind = op == Operation::kFree ? ErrorKind::kDoubleFree : ErrorKind::kUseOfFreed;
    fill_block_report(r, addr, f.rec);
    r.free_site = site_of(f.free_ret, f.free_trace);
    if (!f.quarantined) r.note = "the block had already left the quarantine";
    return r;
  }
  r.kind = ErrorKind::kInvalidPointer;
  // Rare path: a linear search says whether it points inside a live block.
  for (const auto& [base, rec] : live_) {
    if (addr > base && addr < base + rec.size) {
      fill_block_report(r, base, rec);
      r.note = fmt::format("points {} bytes into a live block of {} bytes", addr - base,
                           rec.size);
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

void DebugAllocator::release_to_child_locked(std::uintptr_t addr, Freed& f,
                                             std::vector<Report>& out) {
  auto* block = reinterpret_cast<std::byte*>(addr);
  if (f.quarantined) {
    auto [first, count] = check_pattern(block, f.rec.size);
    if (count != 0) {
      Report r;
      r.kind = ErrorKind::kUseAfterFree;
      r.operation = Operation::kCheck;
      r.address = addr;
      fill_block_report(r, addr, f.rec);
      r.free_site = site_of(f.free_ret, f.free_trace);
      r.offset = first;
      r.bad_bytes = count;
      r.note = "found when the block left the quarantine";
      out.push_back(std::move(r));
    }
    stats_.quarantined_bytes -= f.rec.size;
    f.quarantined = false;
  }
  child_.raw_free(Bytes(block, f.rec.size + options_.canary_bytes), f.rec.alignment,
                  f.free_ret);
  if (options_.freed_history == 0) {
    release_trace_locked(f.rec.trace);
    release_trace_locked(f.free_trace);
    freed_.erase(addr);
    return;
  }
  history_.push_back({addr, f.free_seq});
  while (history_.size() > options_.freed_history) forget_history_locked();
}

void DebugAllocator::forget_history_locked() {
  FifoEntry e = history_.front();
  history_.pop_front();
  auto it = freed_.find(e.addr);
  // A newer free of the same address replaced the entry: nothing to forget.
  if (it == freed_.end() || it->second.free_seq != e.free_seq || it->second.quarantined) return;
  release_trace_locked(it->second.rec.trace);
  release_trace_locked(it->second.free_trace);
  freed_.erase(it);
}

void DebugAllocator::evict_one_locked(std::vector<Report>& out) {
  FifoEntry e = quarantine_.front();
  quarantine_.pop_front();
  auto it = freed_.find(e.addr);
  if (it == freed_.end() || it->second.free_seq != e.free_seq) return;
  release_to_child_locked(e.addr, it->second, out);
}

void DebugAllocator::quarantine_locked(std::uintptr_t addr, Freed f, std::vector<Report>& out) {
  f.free_seq = next_free_seq_++;
  const bool hold = options_.quarantine_bytes != 0 &&
                    f.rec.size <= options_.quarantine_max_block &&
                    f.rec.size <= options_.quarantine_bytes;
  f.quarantined = hold;
  auto [it, inserted] = freed_.try_emplace(addr, f);
  if (!inserted) {
    // The child reused this address since its last free: forget the old one.
    release_trace_locked(it->second.rec.trace);
    release_trace_locked(it->second.free_trace);
    it->second = f;
  }
  if (!hold) {
    release_to_child_locked(addr, it->second, out);
    return;
  }
  std::memset(reinterpret_cast<void*>(addr), static_cast<int>(debug::internal::kFreedByte),
              f.rec.size);
  stats_.quarantined_bytes += f.rec.size;
  quarantine_.push_back({addr, f.free_seq});
  while (stats_.quarantined_bytes > options_.quarantine_bytes && !quarantine_.empty()) {
    evict_one_locked(out);
  }
}

// ---------------------------------------------------------------- calls

void* DebugAllocator::do_alloc(std::size_t len, Alignment alignment, std::uintptr_t ret) {
  Guard guard(mu_.get());
  deinit_done_ = false;
  const auto index = static_cast<std::int64_t>(stats_.alloc_calls++);
  void* result = nullptr;
  std::size_t total = 0;
  if (options_.fail_alloc_from >= 0 && index >= options_.fail_alloc_from) {
    if (!injected_) {
      injected_ = InjectedFailure{false, index, len, this_call_site(ret)};
      if (options_.on_injected_failure) options_.on_injected_failure(*injected_);
    }
  } else if (len <= options_.memory_limit - std::min(options_.memory_limit, stats_.live_bytes) &&
             !__builtin_add_overflow(len, options_.canary_bytes, &total)) {
    result = child_.raw_alloc(total, alignment, ret);
  }
  if (result == nullptr) {
    ++stats_.failed_allocs;
  } else {
    auto* block = static_cast<std::byte*>(result);
    write_canary(block, len);
    StackTrace* trace = should_sample_locked() ? new_trace_locked() : nullptr;
    live_.insert_or_assign(reinterpret_cast<std::uintptr_t>(result),
                           Record{len, ret, trace, next_seq_++, alignment});
    stats_.live_bytes += len;
    stats_.total_bytes += len;
    ++stats_.live_count;
    ++stats_.total_allocs;
    stats_.peak_live_bytes = std::max(stats_.peak_live_bytes, stats_.live_bytes);
    stats_.peak_live_count = std::max(stats_.peak_live_count, stats_.live_count);
  }
  if (options_.verbose) log_call("alloc", len, 0, alignment, nullptr, result, ret);
  return result;
}

void* DebugAllocator::do_resize(Bytes memory, Alignment alignment, std::size_t new_len,
                                std::uintptr_t ret, bool may_move) {
  const Operation op = may_move ? Operation::kRemap : Operation::kResize;
  const auto addr = reinterpret_cast<std::uintptr_t>(memory.data());
  std::vector<Report> reports;
  void* result = nullptr;
  {
    Guard guard(mu_.get());
    const auto index = static_cast<std::int64_t>(stats_.resize_calls++);
    auto it = live_.find(addr);
    if (it == live_.end()) {
      Report r = not_live_report_locked(addr, memory.size(), alignment, op);
      r.new_size = new_len;
      r.this_call = this_call_site(ret);
      reports.push_back(std::move(r));
    } else if (it->second.size != memory.size() || it->second.alignment != alignment) {
      Report r;
      r.kind = it->second.size != memory.size() ? ErrorKind::kWrongSize
                                                : ErrorKind::kWrongAlignment;
      r.operation = op;
      r.address = addr;
      r.passed_size = memory.size();
      r.passed_alignment = alignment;
      r.new_size = new_len;
      fill_block_report(r, addr, it->second);
      r.this_call = this_call_site(ret);
      reports.push_back(std::move(r));
    } else {
      Record& rec = it->second;
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
        if (!injected_) {
          injected_ = InjectedFailure{true, index, new_len, this_call_site(ret)};
          if (options_.on_injected_failure) options_.on_injected_failure(*injected_);
        }
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
          Record moved_rec = rec;
          moved_rec.ret_addr = ret;  // the block now comes from this call
          live_.erase(it);
          live_.insert_or_assign(reinterpret_cast<std::uintptr_t>(moved), moved_rec);
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
  std::vector<Report> reports;
  {
    Guard guard(mu_.get());
    auto it = live_.find(addr);
    if (it == live_.end()) {
      Report r = not_live_report_locked(addr, memory.size(), alignment, Operation::kFree);
      r.this_call = this_call_site(ret);
      reports.push_back(std::move(r));
    } else if (it->second.size != memory.size() || it->second.alignment != alignment) {
      Report r;
      r.kind = it->second.size != memory.size() ? ErrorKind::kWrongSize
                                                : ErrorKind::kWrongAlignment;
      r.operation = Operation::kFree;
      r.address = addr;
      r.passed_size = memory.size();
      r.passed_alignment = alignment;
      fill_block_report(r, addr, it->second);
      r.this_call = this_call_site(ret);
      reports.push_back(std::move(r));
    } else {
      Record rec = it->second;
      live_.erase(it);
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
      --stats_.live_count;
      ++stats_.total_frees;
      // Blocks with an allocation trace get a free trace too.
      StackTrace* free_trace = rec.trace != nullptr ? new_trace_locked() : nullptr;
      quarantine_locked(addr, Freed{rec, ret, free_trace, 0, false}, reports);
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
    Guard guard(mu_.get());
    std::vector<std::pair<std::uintptr_t, const Record*>> order;
    order.reserve(live_.size());
    for (const auto& [addr, rec] : live_) order.emplace_back(addr, &rec);
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
    Guard guard(mu_.get());
    for (const auto& [addr, rec] : live_) {
      auto [first, count] = check_canary(reinterpret_cast<const std::byte*>(addr), rec.size);
      if (count == 0) continue;
      Report r;
      r.kind = ErrorKind::kOverrun;
      r.operation = Operation::kCheck;
      r.address = addr;
      r.offset = first;
      r.bad_bytes = count;
      fill_block_report(r, addr, rec);
      reports.push_back(std::move(r));
      write_canary(reinterpret_cast<std::byte*>(addr), rec.size);
    }
    for (auto& [addr, f] : freed_) {
      if (!f.quarantined) continue;
      auto* block = reinterpret_cast<std::byte*>(addr);
      auto [first, count] = check_pattern(block, f.rec.size);
      if (count == 0) continue;
      Report r;
      r.kind = ErrorKind::kUseAfterFree;
      r.operation = Operation::kCheck;
      r.address = addr;
      r.offset = first;
      r.bad_bytes = count;
      fill_block_report(r, addr, f.rec);
      r.free_site = site_of(f.free_ret, f.free_trace);
      reports.push_back(std::move(r));
      // Restore so the same write is reported once.
      std::memset(block, static_cast<int>(debug::internal::kFreedByte), f.rec.size);
      write_canary(block, f.rec.size);
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
    Guard guard(mu_.get());
    while (!quarantine_.empty()) evict_one_locked(reports);
    if (options_.free_leaks_on_deinit) {
      for (auto& [addr, rec] : live_) {
        child_.raw_free(Bytes(reinterpret_cast<std::byte*>(addr), rec.size + options_.canary_bytes),
                        rec.alignment, rec.ret_addr);
        release_trace_locked(rec.trace);
        stats_.live_bytes -= rec.size;
        --stats_.live_count;
      }
      live_.clear();
    }
    stats_.errors += reports.size();
    deinit_done_ = true;
  }
  emit_all(reports);
  return leaks;
}

void DebugAllocator::visit(const std::function<void(const AllocationInfo&)>& fn) const {
  Guard guard(mu_.get());
  std::vector<std::pair<std::uintptr_t, const Record*>> order;
  order.reserve(live_.size());
  for (const auto& [addr, rec] : live_) order.emplace_back(addr, &rec);
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
  Guard guard(mu_.get());
  return stats_;
}

std::optional<InjectedFailure> DebugAllocator::injected_failure() const {
  Guard guard(mu_.get());
  return injected_;
}

}  // namespace alloy
