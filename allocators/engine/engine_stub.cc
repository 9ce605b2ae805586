// Temporary first implementation of engine.h: one mapping per block. Correct
// and malloc-free, but slow; replaced by the size-class engine.
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "allocators/engine/engine.h"

namespace alloy::engine {
namespace {

constexpr std::uintptr_t kGranule = std::uintptr_t{1} << 16;
constexpr std::size_t kHeader = 64;
std::atomic<std::uint64_t*> g_bits{nullptr};

std::uint64_t* bits() {
  std::uint64_t* b = g_bits.load(std::memory_order_acquire);
  if (b) return b;
  void* m = mmap(nullptr, (std::size_t{1} << 47) / kGranule / 8, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  std::uint64_t* expected = nullptr;
  if (!g_bits.compare_exchange_strong(expected, static_cast<std::uint64_t*>(m))) {
    munmap(m, (std::size_t{1} << 47) / kGranule / 8);
    return expected;
  }
  return static_cast<std::uint64_t*>(m);
}

void mark(std::uintptr_t base, std::size_t len, bool on) {
  std::uint64_t* b = bits();
  for (std::uintptr_t g = base / kGranule; g < (base + len + kGranule - 1) / kGranule; ++g) {
    auto* w = reinterpret_cast<std::atomic<std::uint64_t>*>(&b[g / 64]);
    if (on) w->fetch_or(std::uint64_t{1} << (g % 64)); else w->fetch_and(~(std::uint64_t{1} << (g % 64)));
  }
}

struct Header { std::uintptr_t base; std::size_t map_len; std::size_t usable; };

Header* header_of(const void* p) {
  return reinterpret_cast<Header*>(reinterpret_cast<std::uintptr_t>(p) - kHeader);
}

void* map_block(std::size_t size, std::size_t alignment) {
  if (alignment < 16) alignment = 16;
  if (size > (std::size_t{1} << 46)) return nullptr;
  std::size_t align = alignment < kGranule ? kGranule : alignment;
  std::size_t len = size + kHeader + align + kGranule;
  len = (len + kGranule - 1) & ~(kGranule - 1);
  void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  auto base = reinterpret_cast<std::uintptr_t>(m);
  std::uintptr_t start = (base + kHeader + alignment - 1) & ~(std::uintptr_t{alignment} - 1);
  auto* h = reinterpret_cast<Header*>(start - kHeader);
  h->base = base;
  h->map_len = len;
  h->usable = base + len - start;
  mark(base, len, true);
  return reinterpret_cast<void*>(start);
}

}  // namespace

void* alloc(std::size_t size) noexcept { return map_block(size, 16); }
void* alloc_aligned(std::size_t size, std::size_t alignment) noexcept {
  return map_block(size, alignment);
}
void free(void* p) noexcept {
  if (!p) return;
  Header* h = header_of(p);
  mark(h->base, h->map_len, false);
  munmap(reinterpret_cast<void*>(h->base), h->map_len);
}
void free_sized(void* p, std::size_t) noexcept { free(p); }
std::size_t usable_size(const void* p) noexcept { return header_of(p)->usable; }
bool owns(const void* p) noexcept {
  std::uint64_t* b = bits();
  auto g = reinterpret_cast<std::uintptr_t>(p) / kGranule;
  if (!b || g >= (std::uintptr_t{1} << 47) / kGranule) return false;
  return (reinterpret_cast<std::atomic<std::uint64_t>*>(&b[g / 64])->load(std::memory_order_relaxed) >> (g % 64)) & 1;
}
void* realloc(void* p, std::size_t size) noexcept {
  if (size <= usable_size(p)) return p;
  void* q = alloc(size);
  if (!q) return nullptr;
  std::memcpy(q, p, usable_size(p));
  free(p);
  return q;
}
bool resize_in_place(void* p, std::size_t size) noexcept { return size <= usable_size(p); }
void fork_prepare() noexcept {}
void fork_parent() noexcept {}
void fork_child() noexcept {}
void write_stats(int fd) noexcept {
  const char msg[] = "alloy engine: stub implementation, no statistics\n";
  ssize_t r = write(fd, msg, sizeof msg - 1);
  (void)r;
}
void set_eager_purge(bool) noexcept {}

}  // namespace alloy::engine
