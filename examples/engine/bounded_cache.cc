// A bounded cache on a capped heap: values live in an alloy::Heap with a
// ceiling, and the cache evicts its oldest entries whenever the heap says no.
// The memory bound is enforced by the allocator, not by byte counting in the
// cache, so it covers fragmentation and metadata too.
//
//   bazel build //examples/engine:bounded_cache && bazel-bin/examples/engine/bounded_cache
#include <fmt/core.h>

#include <cstring>
#include <list>
#include <random>
#include <string>
#include <unordered_map>

#include "alloy/allocators/engine/heap.h"

namespace {

class BoundedCache {
 public:
  explicit BoundedCache(alloy::Heap heap) : heap_(std::move(heap)), a_(heap_.allocator()) {}
  ~BoundedCache() {
    for (auto& [key, e] : map_) a_.free(e.value);
  }

  // Stores a copy of `value`, evicting the oldest entries until it fits.
  // False only if the value cannot fit even in an empty cache.
  bool put(const std::string& key, std::string_view value) {
    erase(key);
    for (;;) {
      auto copy = a_.dupe(value);
      if (copy) {
        order_.push_front(key);
        map_[key] = Entry{*copy, order_.begin()};
        return true;
      }
      if (order_.empty()) return false;  // heap empty and still no room
      erase(order_.back());
      ++evictions_;
    }
  }

  const std::span<char>* get(const std::string& key) {
    auto it = map_.find(key);
    if (it == map_.end()) return nullptr;
    order_.splice(order_.begin(), order_, it->second.pos);  // most recent
    return &it->second.value;
  }

  std::size_t size() const { return map_.size(); }
  std::size_t evictions() const { return evictions_; }
  alloy::Heap& heap() { return heap_; }

 private:
  struct Entry {
    std::span<char> value;
    std::list<std::string>::iterator pos;
  };
  void erase(const std::string& key) {
    auto it = map_.find(key);
    if (it == map_.end()) return;
    a_.free(it->second.value);
    order_.erase(it->second.pos);
    map_.erase(it);
  }

  alloy::Heap heap_;
  alloy::Allocator a_;
  std::unordered_map<std::string, Entry> map_;
  std::list<std::string> order_;  // front = most recently used
  std::size_t evictions_ = 0;
};

}  // namespace

int main() {
  constexpr std::size_t kCeiling = std::size_t{8} << 20;  // 8 MiB for values
  auto heap = alloy::Heap::create({.ceiling = kCeiling});
  if (!heap) {
    fmt::print("cannot create heap: {}\n", alloy::to_string(heap.error()));
    return 1;
  }
  BoundedCache cache(std::move(*heap));
  std::mt19937 rng(11);
  std::string value;
  std::size_t hits = 0, misses = 0, max_committed = 0;
  for (int i = 0; i < 200000; ++i) {
    const std::string key = "k" + std::to_string(rng() % 20000);
    if (cache.get(key) != nullptr) {
      ++hits;
      continue;
    }
    ++misses;
    value.assign(100 + rng() % 3000, static_cast<char>('a' + i % 26));
    if (!cache.put(key, value)) return 1;
    max_committed = std::max(max_committed, cache.heap().committed());
  }
  const alloy::HeapStats s = cache.heap().stats();
  fmt::print("entries {}  hits {}  misses {}  evictions {}\n", cache.size(), hits, misses,
             cache.evictions());
  fmt::print("live {} KiB in {} blocks, committed {} KiB (max seen {} KiB), ceiling {} KiB\n",
             s.live_bytes >> 10, s.live_blocks, s.committed_bytes >> 10, max_committed >> 10,
             kCeiling >> 10);
  return max_committed <= kCeiling ? 0 : 1;
}
