// The handle's optional entries, measured (issue 16's evidence):
//  1. Vec<int> push_back of 1M elements on the engine's default heap, with
//     size feedback (alloc_at_least) and without (the same heap behind a
//     table that lacks the entry): allocations, in-place grows, time.
//  2. alloc_zeroed against alloc + memset for 64 KiB .. 4 MiB blocks, on the
//     page allocator and the engine's default heap: time per alloc+free, both
//     when the caller never touches the block and when it then writes one
//     byte per 4 KiB page (the page faults it pays either way).
// A plain main printing medians and ratios (< 1.00 = the entry is faster).
// Build with --config=opt; run from bazel-bin (see bench/README.md).
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <optional>
#include <vector>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/alloc_iface/make_vtable.h"
#include "alloy/alloc_iface/vec.h"
#include "alloy/allocators/engine/heap.h"
#include "alloy/allocators/page_allocator.h"

namespace {

using alloy::Alignment;
using alloy::Allocator;
using alloy::Bytes;
using Clock = std::chrono::steady_clock;

// Counts the calls that reach a child; `feedback` off hides its
// alloc_at_least (the table then has no entry and the handle falls back).
struct Counts {
  std::size_t allocs = 0, resizes_ok = 0, remaps_ok = 0;
};
struct Counter {
  Allocator child;
  Counts counts;
};
struct Plain {
  static void* vt_alloc(void* ctx, std::size_t len, Alignment a, std::uintptr_t r) {
    auto* c = static_cast<Counter*>(ctx);
    ++c->counts.allocs;
    return c->child.raw_alloc(len, a, r);
  }
  static bool vt_resize(void* ctx, Bytes m, Alignment a, std::size_t n, std::uintptr_t r) {
    auto* c = static_cast<Counter*>(ctx);
    const bool ok = c->child.raw_resize(m, a, n, r);
    c->counts.resizes_ok += ok;
    return ok;
  }
  static void* vt_remap(void* ctx, Bytes m, Alignment a, std::size_t n, std::uintptr_t r) {
    auto* c = static_cast<Counter*>(ctx);
    void* p = c->child.raw_remap(m, a, n, r);
    c->counts.remaps_ok += p != nullptr;
    return p;
  }
  static void vt_free(void* ctx, Bytes m, Alignment a, std::uintptr_t r) {
    static_cast<Counter*>(ctx)->child.raw_free(m, a, r);
  }
};
struct WithFeedback : Plain {
  static Bytes vt_alloc_at_least(void* ctx, std::size_t len, Alignment a, std::uintptr_t r) {
    auto* c = static_cast<Counter*>(ctx);
    ++c->counts.allocs;
    return c->child.raw_alloc_at_least(len, a, r);
  }
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class F>
double time_ms(F&& f) {
  const auto t0 = Clock::now();
  f();
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// ---- 1. Vec<int> push_back of 1M. ----
struct VecRun {
  Counts counts;
  std::vector<double> times;
};
template <class Entries>
void vec_push_once(Allocator child, VecRun& run) {
  static constexpr alloy::VTable kTable = alloy::make_vtable<Entries>();
  Counter counter{child, {}};
  Allocator a{&counter, &kTable};
  run.times.push_back(time_ms([&] {
    alloy::Vec<int> v(a);
    for (int i = 0; i < 1000000; ++i) {
      if (!v.try_push(i)) std::abort();
    }
    if (v[999999] != 999999) std::abort();
  }));
  run.counts = counter.counts;
}

// ---- 2. alloc_zeroed vs alloc + memset. ----
// One alloc+free of `len`, zeroed by the entry or by memset, the caller then
// touching every page or not; microseconds.
double zero_once(Allocator a, std::size_t len, bool use_entry, bool touch, int iters) {
  const Alignment al = Alignment::from_log2(4);
  return time_ms([&] {
           for (int i = 0; i < iters; ++i) {
             void* p = nullptr;
             if (use_entry) {
               p = a.raw_alloc_zeroed(len, al, 0);
             } else {
               p = a.raw_alloc(len, al, 0);
               if (p != nullptr) std::memset(p, 0, len);
             }
             if (p == nullptr) std::abort();
             auto* bytes = static_cast<volatile unsigned char*>(p);
             if (touch) {
               for (std::size_t off = 0; off < len; off += 4096) bytes[off] = 1;
             }
             if (bytes[len - 1] != 0) std::abort();
             a.raw_free(Bytes(static_cast<std::byte*>(p), len), al, 0);
           }
         }) *
         1000 / iters;
}

}  // namespace

int main() {
  const int reps = 11;
  struct VecTarget {
    const char* name;
    Allocator a;
  };
  const VecTarget vec_targets[] = {{"engine default heap", alloy::Heap::default_allocator()},
                                   {"alloy::Heap", alloy::Heap::default_allocator()},
                                   {"page allocator", alloy::page_allocator()}};
  std::printf("Vec<int> push_back x 1M, without / with size feedback (median of %d, each "
              "configuration in a process of its own)\n",
              reps);
  std::printf("  %-20s %-9s %7s %15s %7s %9s\n", "child", "feedback", "allocs", "in-place grows",
              "remaps", "ms");
  for (std::size_t ti = 0; ti < std::size(vec_targets); ++ti) {
    VecRun runs[2];
    for (int with = 0; with < 2; ++with) {
      // A fresh process per configuration: the engine's caches (huge blocks,
      // purged spans) left by one configuration would time the other.
      int fds[2];
      if (pipe(fds) != 0) return 1;
      const pid_t pid = fork();
      if (pid == 0) {
        VecRun run;
        Allocator child = vec_targets[ti].a;
        std::optional<alloy::Heap> own;
        if (ti == 1) {  // a fresh alloy::Heap in the child process
          own.emplace(std::move(*alloy::Heap::create()));
          child = own->allocator();
        }
        for (int r = 0; r < reps + 1; ++r) {  // the first round warms up, not counted
          if (with) {
            vec_push_once<WithFeedback>(child, run);
          } else {
            vec_push_once<Plain>(child, run);
          }
          if (r == 0) run.times.clear();
        }
        const double out[4] = {static_cast<double>(run.counts.allocs),
                               static_cast<double>(run.counts.resizes_ok),
                               static_cast<double>(run.counts.remaps_ok), median(run.times)};
        if (write(fds[1], out, sizeof out) != sizeof out) _exit(1);
        _exit(0);
      }
      close(fds[1]);
      double in[4] = {};
      if (read(fds[0], in, sizeof in) != sizeof in) return 1;
      close(fds[0]);
      waitpid(pid, nullptr, 0);
      runs[with].counts = {static_cast<std::size_t>(in[0]), static_cast<std::size_t>(in[1]),
                           static_cast<std::size_t>(in[2])};
      runs[with].times = {in[3]};
    }
    const VecRun& plain = runs[0];
    const VecRun& fed = runs[1];
    const double pm = plain.times[0], fm = fed.times[0];
    std::printf("  %-20s %-9s %7zu %15zu %7zu %9.2f\n", vec_targets[ti].name, "without",
                plain.counts.allocs, plain.counts.resizes_ok, plain.counts.remaps_ok, pm);
    std::printf("  %-20s %-9s %7zu %15zu %7zu %9.2f\n", "", "with", fed.counts.allocs,
                fed.counts.resizes_ok, fed.counts.remaps_ok, fm);
    std::printf("  %-20s ratio with/without: allocs %.2f, allocator calls that grew %.2f, "
                "time %.2f\n",
                "",
                static_cast<double>(fed.counts.allocs) / static_cast<double>(plain.counts.allocs),
                static_cast<double>(fed.counts.allocs + fed.counts.resizes_ok +
                                    fed.counts.remaps_ok) /
                    static_cast<double>(plain.counts.allocs + plain.counts.resizes_ok +
                                        plain.counts.remaps_ok),
                fm / pm);
  }

  std::printf("\nalloc_zeroed / (alloc + memset), us per alloc+free (median of 7, "
              "interleaved)\n");
  std::printf("  %-7s %9s %10s %10s %6s   %12s %12s %6s\n", "", "size", "zeroed", "memset",
              "ratio", "zeroed+touch", "memset+touch", "ratio");
  const VecTarget zero_targets[] = {{"page", alloy::page_allocator()},
                                    {"engine", alloy::Heap::default_allocator()}};
  for (const VecTarget& t : zero_targets) {
    for (std::size_t len = 64 * 1024; len <= 4 * 1024 * 1024; len *= 2) {
      const int iters = static_cast<int>(std::max<std::size_t>(8, (32u << 20) / len));
      std::vector<double> z, m, zt, mt;
      for (int r = 0; r < 8; ++r) {
        m.push_back(zero_once(t.a, len, false, false, iters));
        z.push_back(zero_once(t.a, len, true, false, iters));
        mt.push_back(zero_once(t.a, len, false, true, iters));
        zt.push_back(zero_once(t.a, len, true, true, iters));
        if (r == 0) z.clear(), m.clear(), zt.clear(), mt.clear();
      }
      const double zm = median(z), mm = median(m), ztm = median(zt), mtm = median(mt);
      std::printf("  %-7s %5zu KiB %10.2f %10.2f %6.2f   %12.2f %12.2f %6.2f\n", t.name,
                  len / 1024, zm, mm, zm / mm, ztm, mtm, ztm / mtm);
    }
  }
  return 0;
}
