// What the holes of bigfrag (workloads.cc, issue 12) could give back, under
// whichever malloc is preloaded: fills 2.2M blocks of 16-255 B with the
// workload's seed, frees 90% scattered, then from the live blocks' addresses
// and malloc_usable_size reports
//   - the 4 KiB OS pages of the fill's footprint that hold no live byte (what
//     an interior purge, madvise of whole free OS pages inside live pages,
//     could release) and the contiguous runs they form (its madvise calls);
//   - how many of phase 2's 2-8 KiB requests best fit into the free runs
//     between live blocks inside each 64 KiB slice, at byte granularity
//     (16-byte aligned, glibc-style hole reuse) and at 4 KiB granularity
//     (whole free OS pages only).
// Phase 2 itself is not run: the numbers are the ceiling of each idea.
//
//   LD_PRELOAD=bazel-bin/adapters/liballoy_malloc.so bazel-bin/bench/compare/frag_holes
#include <malloc.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <set>
#include <utility>
#include <vector>

#include "bench/compare/rng.h"

namespace {

using alloy::bench::Rng;  // bench/compare/rng.h: the same draws in every workload

using Holes = std::multiset<std::pair<std::size_t, std::uintptr_t>>;  // (length, start)

// Best fit of each request (rounded up to `gran`) into `holes`; returns bytes placed.
std::size_t best_fit(Holes holes, const std::vector<std::size_t>& req, std::size_t gran,
                     std::size_t* placed) {
  std::size_t bytes = 0;
  *placed = 0;
  for (std::size_t s : req) {
    const std::size_t need = (s + gran - 1) / gran * gran;
    auto it = holes.lower_bound({need, 0});
    if (it == holes.end()) continue;
    auto h = *it;
    holes.erase(it);
    if (h.first > need) holes.insert({h.first - need, h.second + need});
    bytes += s;
    ++*placed;
  }
  return bytes;
}

}  // namespace

int main() {
  const std::size_t n = 2'200'000;
  std::vector<void*> blocks(n);
  Rng r(99);
  for (auto& p : blocks) {
    const std::size_t size = 16 + r.below(240);
    p = std::malloc(size);
    static_cast<unsigned char*>(p)[0] = 1;
  }
  std::vector<std::uint64_t> foot_pages, live_pages;
  std::vector<std::pair<std::uintptr_t, std::size_t>> live;
  std::set<std::uintptr_t> slices;
  foot_pages.reserve(2 * n);
  for (auto& p : blocks) {
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    const std::size_t usable = malloc_usable_size(p);
    const bool keep = r.below(10) == 0;
    slices.insert(a >> 16);
    for (auto pg = a >> 12; pg <= (a + usable - 1) >> 12; ++pg) {
      foot_pages.push_back(pg);
      if (keep) live_pages.push_back(pg);
    }
    if (keep) {
      live.push_back({a, usable});
    } else {
      std::free(p);
      p = nullptr;
    }
  }
  std::vector<std::size_t> req(n / 100);
  for (auto& s : req) s = 2048 + r.below(6144);

  std::sort(foot_pages.begin(), foot_pages.end());
  foot_pages.erase(std::unique(foot_pages.begin(), foot_pages.end()), foot_pages.end());
  std::sort(live_pages.begin(), live_pages.end());
  live_pages.erase(std::unique(live_pages.begin(), live_pages.end()), live_pages.end());
  std::vector<std::uint64_t> free_pages;
  std::set_difference(foot_pages.begin(), foot_pages.end(), live_pages.begin(), live_pages.end(),
                      std::back_inserter(free_pages));
  std::size_t runs = 0;
  for (std::size_t i = 0; i < free_pages.size(); ++i) {
    if (i == 0 || free_pages[i] != free_pages[i - 1] + 1) ++runs;
  }

  std::sort(live.begin(), live.end());
  Holes bytes_holes, page_holes;
  std::size_t li = 0;
  for (std::uintptr_t sl : slices) {
    const std::uintptr_t base = sl << 16, end = base + 65536;
    std::uintptr_t cur = base;
    auto add = [&](std::uintptr_t lo, std::uintptr_t hi) {
      lo = (lo + 15) & ~std::uintptr_t{15};
      if (hi > lo) bytes_holes.insert({hi - lo, lo});
      const std::uintptr_t plo = (lo + 4095) & ~std::uintptr_t{4095}, phi = hi & ~std::uintptr_t{4095};
      if (phi > plo) page_holes.insert({phi - plo, plo});
    };
    while (li < live.size() && live[li].first < base) ++li;
    for (; li < live.size() && live[li].first < end; ++li) {
      add(cur, live[li].first);
      cur = live[li].first + live[li].second;
    }
    add(cur, end);
  }
  std::size_t req_bytes = 0;
  for (std::size_t s : req) req_bytes += s;
  std::size_t placed_b = 0, placed_p = 0;
  const std::size_t fit_b = best_fit(bytes_holes, req, 16, &placed_b);
  const std::size_t fit_p = best_fit(page_holes, req, 4096, &placed_p);
  const double mib = 1048576.0;
  std::printf("fill footprint %.1f MiB; OS pages without a live byte %.1f MiB in %zu runs\n",
              foot_pages.size() * 4096 / mib, free_pages.size() * 4096 / mib, runs);
  std::printf("phase 2: %zu requests, %.1f MiB; byte-granularity holes fit %zu (%.1f MiB); "
              "4 KiB-granularity holes fit %zu (%.1f MiB)\n",
              req.size(), req_bytes / mib, placed_b, fit_b / mib, placed_p, fit_p / mib);
  for (void* p : blocks) std::free(p);
  return 0;
}
