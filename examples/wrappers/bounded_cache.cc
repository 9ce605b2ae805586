// A bounded LRU cache whose memory is capped by a LimitAllocator.
//
// Every entry (list links, key and value in one block) comes from a handle
// capped at a fixed number of bytes. The cache never measures itself: when an
// alloc returns null it evicts the least recently used entry and tries again,
// so the cap is enforced by the allocator and honoured by construction. A
// CountingAllocator on top shows the numbers, including every refused alloc.
// Halfway through, the cap is lowered at run time and the cache shrinks to fit.
// (The key index is a std::unordered_map outside the cap: bookkeeping, not
// cached data.)
//
//   bazel run //examples/wrappers:bounded_cache
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <new>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include <fmt/format.h>

#include "alloy/allocators/c_allocator.h"
#include "alloy/allocators/wrappers/counting_allocator.h"
#include "alloy/allocators/wrappers/limit_allocator.h"

namespace {

class BoundedCache {
 public:
  explicit BoundedCache(alloy::Allocator memory) : memory_(memory) {}
  BoundedCache(const BoundedCache&) = delete;
  BoundedCache& operator=(const BoundedCache&) = delete;
  ~BoundedCache() {
    while (oldest_ != nullptr) drop(oldest_);
  }

  // Stores a copy of `value` under `key`, evicting least recently used
  // entries until the allocator has room. False if it cannot fit even alone.
  bool put(std::string_view key, std::span<const std::byte> value) {
    if (auto it = index_.find(key); it != index_.end()) drop(it->second);
    const std::size_t size = sizeof(Entry) + key.size() + value.size();
    for (;;) {
      auto block = memory_.alloc_bytes(size, alloy::Alignment::of<Entry>());
      if (block) {
        link(new (block->data()) Entry{key.size(), value.size()}, key, value);
        return true;
      }
      if (oldest_ == nullptr) return false;  // empty and still no room
      ++evictions_;
      if (on_evict) on_evict(oldest_->key(), oldest_->value_len);
      drop(oldest_);
    }
  }

  // The value under `key` (and marks it most recently used), or empty.
  std::span<const std::byte> get(std::string_view key) {
    auto it = index_.find(key);
    if (it == index_.end()) {
      ++misses_;
      return {};
    }
    ++hits_;
    Entry* e = it->second;
    unlink(e);
    push_newest(e);
    return e->value();
  }

  std::size_t size() const { return index_.size(); }
  std::size_t evictions() const { return evictions_; }
  std::size_t hits() const { return hits_; }
  std::size_t misses() const { return misses_; }

  void (*on_evict)(std::string_view key, std::size_t value_len) = nullptr;

 private:
  struct Entry {
    std::size_t key_len;
    std::size_t value_len;
    Entry* newer = nullptr;
    Entry* older = nullptr;
    char* key_data() { return reinterpret_cast<char*>(this + 1); }
    std::string_view key() { return {key_data(), key_len}; }
    std::span<std::byte> value() {
      return {reinterpret_cast<std::byte*>(key_data() + key_len), value_len};
    }
    std::size_t block_size() const { return sizeof(Entry) + key_len + value_len; }
  };

  void link(Entry* e, std::string_view key, std::span<const std::byte> value) {
    std::memcpy(e->key_data(), key.data(), key.size());
    if (!value.empty()) std::memcpy(e->value().data(), value.data(), value.size());
    push_newest(e);
    index_.emplace(e->key(), e);
  }
  void push_newest(Entry* e) {
    e->older = newest_;
    e->newer = nullptr;
    if (newest_ != nullptr) newest_->newer = e;
    newest_ = e;
    if (oldest_ == nullptr) oldest_ = e;
  }
  void unlink(Entry* e) {
    (e->older ? e->older->newer : oldest_) = e->newer;
    (e->newer ? e->newer->older : newest_) = e->older;
  }
  void drop(Entry* e) {
    index_.erase(e->key());
    unlink(e);
    const std::size_t size = e->block_size();
    e->~Entry();
    memory_.free_bytes(std::span(reinterpret_cast<std::byte*>(e), size),
                       alloy::Alignment::of<Entry>());
  }

  alloy::Allocator memory_;
  std::unordered_map<std::string_view, Entry*> index_;
  Entry* newest_ = nullptr;
  Entry* oldest_ = nullptr;
  std::size_t evictions_ = 0, hits_ = 0, misses_ = 0;
};

int printed_evictions = 0;
void print_eviction(std::string_view key, std::size_t value_len) {
  if (++printed_evictions <= 8) fmt::print("  evict {} ({} B value)\n", key, value_len);
  if (printed_evictions == 9) fmt::print("  ... (further evictions counted, not printed)\n");
}

}  // namespace

int main() {
  constexpr std::size_t kCap = 64 * 1024;
  constexpr std::size_t kLoweredCap = 16 * 1024;

  alloy::LimitAllocator limit(alloy::c_allocator(), kCap);
  alloy::CountingAllocator counting(limit.allocator());
  bool cap_honoured = true;

  {
    BoundedCache cache(counting.allocator());
    cache.on_evict = print_eviction;
    std::mt19937 rng(42);
    std::string value(4096, '\0');
    auto put_random = [&](int i) {
      const std::size_t len = 64 + rng() % 2048;
      std::memset(value.data(), 'a' + i % 26, len);
      const std::string key = fmt::format("item-{}", i);
      if (!cache.put(key, std::as_bytes(std::span(value.data(), len)))) {
        fmt::print("  {} does not fit even in an empty cache\n", key);
      }
      // Read back a few recent keys so LRU order differs from insertion order.
      (void)cache.get(fmt::format("item-{}", i - static_cast<int>(rng() % 40)));
      if (limit.used() > limit.ceiling()) cap_honoured = false;
    };

    fmt::print("cap {} B; inserting 2000 entries of 64..2111 B\n", kCap);
    for (int i = 0; i < 2000; ++i) put_random(i);
    fmt::print("after 2000 puts: {} entries, {} evictions, {} B used of {} B, peak {} B\n",
               cache.size(), cache.evictions(), limit.used(), limit.ceiling(),
               limit.peak());
    fmt::print("  counting: {}\n", counting.stats());

    fmt::print("lowering the cap to {} B at run time\n", kLoweredCap);
    limit.set_ceiling(kLoweredCap);
    const std::size_t evictions_before = cache.evictions();
    for (int i = 2000; i < 2500; ++i) put_random(i);
    fmt::print("after 500 more puts: {} entries, {} more evictions, {} B used of {} B\n",
               cache.size(), cache.evictions() - evictions_before, limit.used(),
               limit.ceiling());
    fmt::print("  hits {}, misses {}\n", cache.hits(), cache.misses());
    fmt::print("  counting: {}\n", counting.stats());
  }

  const bool cap_never_exceeded = counting.peak_bytes() <= kCap && limit.peak() <= kCap;
  fmt::print("cache destroyed: {} B live; peak {} B <= cap {} B: {}\n",
             counting.live_bytes(), counting.peak_bytes(), kCap,
             cap_never_exceeded ? "yes" : "NO");
  return cap_honoured && cap_never_exceeded && counting.live_bytes() == 0 ? 0 : 1;
}
