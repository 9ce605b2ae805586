// alloy::profile::Sampler — the sampled heap profile's state: which
// allocations to sample (Poisson by bytes), the sampled blocks' stacks, and
// writing them as a pprof profile. Malloc-free: the malloc adapter's engine
// drives it from inside malloc.
//
// Sampling: each thread keeps a countdown of bytes, drawn from an exponential
// distribution with mean `rate` (next_distance()). The allocator charges
// every allocation's bytes to it; the allocation that crosses zero is
// sampled: its stack is recorded (record()) and the countdown redrawn. A
// sampled block of s bytes stands for s / (1 - exp(-s/rate)) bytes (see
// unsampled() in pprof_writer.h), so the profile estimates every call site's
// bytes without bias. forget() is told when a sampled block is freed (the
// allocator recognises those blocks itself, without asking the sampler).
//
// Outputs: write() gives alloc_objects/alloc_space of every sample since the
// start and inuse_objects/inuse_space of those still live; with live_only
// (a leak profile) only stacks with live blocks, their alloc values set to
// the live ones. Stacks are named with ElfSymbols (no malloc, no DWARF);
// leading frames of the allocator itself (malloc, operator new, alloy's
// engine and profiler, alloy::Heap and alloy::Allocator) are dropped, so
// frame 0 is the caller of malloc (or of Heap::alloc, or of the handle).
//
// Cost: record() and forget() are O(depth) and O(1) expected under one spin
// lock (only sampled allocations pay them: one per `rate` bytes); write() is
// O(samples + stacks) plus symbolization. Memory: mmap'd tables, ~600 bytes
// per distinct stack and 32 per live sample. Thread safety: thread-safe.
// Fork: fork_prepare/parent/child hold the lock across fork(), so the child
// inherits a consistent table (register them with pthread_atfork, or call
// them from the allocator's own atfork handlers).
// Instances: the process's (instance(), the malloc adapter's profile) and
// one per profiled alloy::Heap (the engine keeps it in zeroed mmap'd memory,
// which is a valid empty Sampler; release() gives its tables back).
//
// Example (what the engine does, in outline):
//   alloy::profile::Sampler& s = alloy::profile::Sampler::instance();
//   s.set_rate(512 * 1024);
//   if ((countdown -= size) <= 0) {
//     countdown = s.next_distance(&rng);
//     std::uintptr_t frames[64];
//     int n = alloy::profile::capture_stack(frames, 64, 0);
//     s.record(p, size, frames, n);
//   }
//   ...
//   s.forget(p);                           // when a sampled block is freed
//   s.write("/tmp/heap.pb.gz", false);     // go tool pprof -top /tmp/heap.pb.gz
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "alloy/profile/pprof_writer.h"

namespace alloy::profile {

class Sampler {
 public:
  // The process's sampler (a constant-initialized global: usable before
  // main and after exit).
  static Sampler& instance() noexcept;

  // Mean bytes between samples; 0 turns sampling off.
  void set_rate(std::int64_t mean_bytes) noexcept {
    rate_.store(mean_bytes < 0 ? 0 : mean_bytes, std::memory_order_relaxed);
  }
  std::int64_t rate() const noexcept { return rate_.load(std::memory_order_relaxed); }

  // The next distance in bytes, exponential with mean rate() (at least 1),
  // from the caller's per-thread generator state (any non-zero seed).
  std::int64_t next_distance(std::uint64_t* rng) const noexcept;

  // A sampled block of `size` bytes at `p`, allocated by `frames` (return
  // addresses, innermost first, allocator frames included or not).
  // `charged`: the bytes the countdown was charged for it, if not `size`
  // (an allocator that charges whole size classes): the block stands for
  // 1 / (1 - exp(-charged/rate)) blocks of `size` bytes.
  void record(const void* p, std::size_t size, const std::uintptr_t* frames, int depth,
              std::size_t charged = 0) noexcept;
  // The sampled block at `p` was freed; false if it was not recorded.
  bool forget(const void* p) noexcept;

  // Writes the profile (see the header comment); false if it failed.
  bool write(const char* path, bool live_only) noexcept;
  bool write_fd(int fd, bool live_only) noexcept;

  std::size_t live_samples() const noexcept;
  std::size_t total_samples() const noexcept;

  // Every live sample forgotten (their blocks went at once: a heap's
  // destroy or reset); the alloc_* totals stay.
  void forget_all() noexcept;
  // Unmaps the tables; the Sampler is empty (and usable) again.
  void release() noexcept;

  // Hold the lock across fork() (see the header comment).
  void fork_prepare() noexcept;
  void fork_parent() noexcept;
  void fork_child() noexcept;

  // The state is a plain aggregate so the process-wide instance is
  // constant-initialized; all-zero bytes are an empty Sampler.
  struct Stack;
  struct Live;
  std::atomic<std::int64_t> rate_{0};
  std::atomic<bool> lock_{false};
  Stack* stacks_ = nullptr;         // append-only; a stack's index never changes
  std::size_t stacks_cap_ = 0;      // entries mapped
  std::size_t stacks_count_ = 0;
  std::uint32_t* stack_index_ = nullptr;  // open addressing by hash: index + 1
  std::size_t stack_index_cap_ = 0;
  Live* live_ = nullptr;            // open addressing by block address (tombstones)
  std::size_t live_cap_ = 0;
  std::size_t live_count_ = 0;
  std::size_t live_used_ = 0;       // live + tombstones
  std::size_t total_ = 0;

 private:
  void lock() noexcept;
  void unlock() noexcept { lock_.store(false, std::memory_order_release); }
  std::int64_t find_or_add_stack(const std::uintptr_t* frames, int depth,
                                 std::uint64_t hash) noexcept;
  bool grow_stack_index() noexcept;
  bool grow_live() noexcept;
};

}  // namespace alloy::profile
