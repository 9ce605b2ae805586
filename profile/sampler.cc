#include "alloy/profile/sampler.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "alloy/profile/elf_symbols.h"

namespace alloy::profile {

struct Sampler::Stack {
  std::uint64_t hash;
  std::int32_t depth;
  std::int32_t live_count;  // scratch for write()
  std::int64_t alloc_objects, alloc_space;
  std::int64_t inuse_objects, inuse_space;  // scratch for write()
  std::uintptr_t frames[64];
};

struct Sampler::Live {
  std::uintptr_t addr;  // 0: empty, 1: tombstone
  std::uint64_t size;
  std::uint64_t charged;
  std::uint64_t stack;  // index into stacks_
};

namespace {

constexpr std::uintptr_t kTombstone = 1;

Sampler g_sampler;

void* map_bytes(std::size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

std::uint64_t mix(std::uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

// ln(x) for x > 0 without libm: x = m * 2^e with m in [sqrt(1/2), sqrt(2)),
// ln m = 2 atanh(s), s = (m-1)/(m+1), |s| < 0.172: the odd series to s^17
// (Horner, no division but the one for s) is within 1e-14 of it.
double ln(double x) {
  std::uint64_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  int e = static_cast<int>((bits >> 52) & 0x7ff) - 1023;
  bits = (bits & ~(std::uint64_t{0x7ff} << 52)) | (std::uint64_t{1023} << 52);
  double m;
  std::memcpy(&m, &bits, sizeof m);  // in [1, 2)
  if (m > 1.4142135623730951) {
    m *= 0.5;
    ++e;
  }
  const double s = (m - 1) / (m + 1), z = s * s;
  const double series =
      1 + z * (1.0 / 3 + z * (1.0 / 5 + z * (1.0 / 7 + z * (1.0 / 9 + z * (1.0 / 11 +
      z * (1.0 / 13 + z * (1.0 / 15 + z * (1.0 / 17))))))));
  return 2 * s * series + e * 0.6931471805599453;
}

// Frames of the allocator itself, by mangled (or C) name: dropped from the
// top of each stack.
bool is_allocator_frame(const char* name) {
  if (name == nullptr) return false;
  static const char* const kPrefixes[] = {
      "_ZN5alloy6engine", "_ZN5alloy7profile", "_ZN5alloy14malloc_adapter",
      // alloy::Heap, its Allocator handle and their file-local entries.
      "_ZN5alloy4Heap", "_ZN5alloy9Allocator", "_ZNK5alloy9Allocator", "_ZN5alloy12_GLOBAL__N_1",
      "_Znw", "_Zna", "_ZdlPv", "_ZdaPv", "__libc_malloc", "__libc_calloc", "__libc_realloc",
      "__libc_memalign"};
  for (const char* p : kPrefixes) {
    if (std::strncmp(name, p, std::strlen(p)) == 0) return true;
  }
  static const char* const kNames[] = {"malloc", "calloc", "realloc", "reallocarray",
                                       "posix_memalign", "aligned_alloc", "memalign", "valloc",
                                       "pvalloc", "strdup", "strndup"};
  for (const char* n : kNames) {
    if (std::strcmp(name, n) == 0) return true;
  }
  return false;
}

}  // namespace

Sampler& Sampler::instance() noexcept { return g_sampler; }

void Sampler::lock() noexcept {
  while (lock_.exchange(true, std::memory_order_acquire)) {
    while (lock_.load(std::memory_order_relaxed)) ::sched_yield();
  }
}

void Sampler::fork_prepare() noexcept { lock(); }
void Sampler::fork_parent() noexcept { unlock(); }
void Sampler::fork_child() noexcept { unlock(); }

std::int64_t Sampler::next_distance(std::uint64_t* rng) const noexcept {
  const std::int64_t mean = rate();
  if (mean <= 1) return 1;
  // xorshift64*, then a uniform u in (0, 1].
  std::uint64_t x = *rng != 0 ? *rng : 0x9E3779B97F4A7C15ull;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *rng = x;
  const double u = static_cast<double>(((x * 0x2545F4914F6CDD1Dull) >> 11) + 1) * 0x1.0p-53;
  const double d = -ln(u) * static_cast<double>(mean);
  return d < 1 ? 1 : static_cast<std::int64_t>(d);
}

bool Sampler::grow_stack_index() noexcept {
  const std::size_t cap = stack_index_cap_ == 0 ? 4096 : stack_index_cap_ * 2;
  auto* idx = static_cast<std::uint32_t*>(map_bytes(cap * sizeof(std::uint32_t)));
  if (idx == nullptr) return false;
  for (std::size_t i = 0; i < stacks_count_; ++i) {
    std::size_t j = mix(stacks_[i].hash) & (cap - 1);
    while (idx[j] != 0) j = (j + 1) & (cap - 1);
    idx[j] = static_cast<std::uint32_t>(i + 1);
  }
  if (stack_index_ != nullptr) ::munmap(stack_index_, stack_index_cap_ * sizeof(std::uint32_t));
  stack_index_ = idx;
  stack_index_cap_ = cap;
  return true;
}

std::int64_t Sampler::find_or_add_stack(const std::uintptr_t* frames, int depth,
                                        std::uint64_t hash) noexcept {
  if (stack_index_cap_ != 0) {
    for (std::size_t j = mix(hash) & (stack_index_cap_ - 1); stack_index_[j] != 0;
         j = (j + 1) & (stack_index_cap_ - 1)) {
      Stack& s = stacks_[stack_index_[j] - 1];
      if (s.hash == hash && s.depth == depth &&
          std::memcmp(s.frames, frames, sizeof(std::uintptr_t) * depth) == 0) {
        return stack_index_[j] - 1;
      }
    }
  }
  if ((stacks_count_ + 1) * 2 > stack_index_cap_ && !grow_stack_index()) return -1;
  if (stacks_count_ == stacks_cap_) {
    const std::size_t cap = stacks_cap_ == 0 ? 256 : stacks_cap_ * 2;
    void* p = stacks_ == nullptr
                  ? map_bytes(cap * sizeof(Stack))
                  : ::mremap(stacks_, stacks_cap_ * sizeof(Stack), cap * sizeof(Stack),
                             MREMAP_MAYMOVE);
    if (p == nullptr || p == MAP_FAILED) return -1;
    stacks_ = static_cast<Stack*>(p);
    stacks_cap_ = cap;
  }
  Stack& s = stacks_[stacks_count_];
  std::memset(&s, 0, sizeof s);
  s.hash = hash;
  s.depth = depth;
  std::memcpy(s.frames, frames, sizeof(std::uintptr_t) * depth);
  std::size_t j = mix(hash) & (stack_index_cap_ - 1);
  while (stack_index_[j] != 0) j = (j + 1) & (stack_index_cap_ - 1);
  stack_index_[j] = static_cast<std::uint32_t>(stacks_count_ + 1);
  return static_cast<std::int64_t>(stacks_count_++);
}

bool Sampler::grow_live() noexcept {
  // Rehash into a table twice the live count (at least 1024), dropping tombstones.
  std::size_t cap = 1024;
  while (cap < 4 * (live_count_ + 1)) cap *= 2;
  auto* t = static_cast<Live*>(map_bytes(cap * sizeof(Live)));
  if (t == nullptr) return false;
  for (std::size_t i = 0; i < live_cap_; ++i) {
    if (live_[i].addr <= kTombstone) continue;
    std::size_t j = mix(live_[i].addr) & (cap - 1);
    while (t[j].addr != 0) j = (j + 1) & (cap - 1);
    t[j] = live_[i];
  }
  if (live_ != nullptr) ::munmap(live_, live_cap_ * sizeof(Live));
  live_ = t;
  live_cap_ = cap;
  live_used_ = live_count_;
  return true;
}

void Sampler::record(const void* p, std::size_t size, const std::uintptr_t* frames, int depth,
                     std::size_t charged) noexcept {
  if (depth > 64) depth = 64;
  if (depth < 0) depth = 0;
  std::uint64_t hash = 0x84222325cbf29ce4ull;
  for (int i = 0; i < depth; ++i) hash = mix(hash ^ frames[i]);
  const std::int64_t r = rate();
  if (charged == 0) charged = size;
  // Count from the charged bytes, bytes from the block's own size.
  SampleValues v = unsampled(charged, r, false);
  v.alloc_space = static_cast<std::int64_t>(static_cast<double>(v.alloc_space) *
                                            static_cast<double>(size) /
                                            static_cast<double>(charged) + 0.5);
  lock();
  const std::int64_t s = find_or_add_stack(frames, depth, hash);
  if (s >= 0 && ((live_used_ + 1) * 2 <= live_cap_ || grow_live())) {
    stacks_[s].alloc_objects += v.alloc_objects;
    stacks_[s].alloc_space += v.alloc_space;
    const auto addr = reinterpret_cast<std::uintptr_t>(p);
    std::size_t j = mix(addr) & (live_cap_ - 1);
    while (live_[j].addr > kTombstone) j = (j + 1) & (live_cap_ - 1);
    if (live_[j].addr == 0) ++live_used_;
    live_[j] = Live{addr, size, charged, static_cast<std::uint64_t>(s)};
    ++live_count_;
    ++total_;
  }
  unlock();
}

bool Sampler::forget(const void* p) noexcept {
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  bool found = false;
  lock();
  if (live_cap_ != 0) {
    for (std::size_t j = mix(addr) & (live_cap_ - 1); live_[j].addr != 0;
         j = (j + 1) & (live_cap_ - 1)) {
      if (live_[j].addr == addr) {
        live_[j].addr = kTombstone;
        --live_count_;
        found = true;
        break;
      }
    }
  }
  unlock();
  return found;
}

void Sampler::forget_all() noexcept {
  lock();
  for (std::size_t i = 0; i < live_cap_; ++i) live_[i].addr = 0;
  live_count_ = 0;
  live_used_ = 0;
  unlock();
}

void Sampler::release() noexcept {
  lock();
  if (stacks_ != nullptr) ::munmap(stacks_, stacks_cap_ * sizeof(Stack));
  if (stack_index_ != nullptr) ::munmap(stack_index_, stack_index_cap_ * sizeof(std::uint32_t));
  if (live_ != nullptr) ::munmap(live_, live_cap_ * sizeof(Live));
  stacks_ = nullptr;
  stack_index_ = nullptr;
  live_ = nullptr;
  stacks_cap_ = stacks_count_ = stack_index_cap_ = 0;
  live_cap_ = live_count_ = live_used_ = total_ = 0;
  unlock();
}

std::size_t Sampler::live_samples() const noexcept { return live_count_; }
std::size_t Sampler::total_samples() const noexcept { return total_; }

bool Sampler::write_fd(int fd, bool live_only) noexcept {
  const std::int64_t r = rate();
  PprofWriter w(r < 1 ? 1 : r);
  ElfSymbols symbols;
  symbols.prepare();  // ld.so's lock, before ours (dlopen may malloc under it)
  // Copy into the writer's own memory under the lock; name and write after.
  lock();
  for (std::size_t i = 0; i < stacks_count_; ++i) {
    stacks_[i].inuse_objects = stacks_[i].inuse_space = 0;
    stacks_[i].live_count = 0;
  }
  for (std::size_t i = 0; i < live_cap_; ++i) {
    if (live_[i].addr <= kTombstone) continue;
    Stack& s = stacks_[live_[i].stack];
    const SampleValues v = unsampled(live_[i].charged, r, true);
    s.inuse_objects += v.inuse_objects;
    s.inuse_space += static_cast<std::int64_t>(static_cast<double>(v.inuse_space) *
                                               static_cast<double>(live_[i].size) /
                                               static_cast<double>(live_[i].charged) + 0.5);
    ++s.live_count;
  }
  for (std::size_t i = 0; i < stacks_count_; ++i) {
    const Stack& s = stacks_[i];
    if (live_only && s.live_count == 0) continue;
    // Drop the allocator's own frames from the top (names from the symbol
    // tables: mmap and reads only, no lock of anyone else's): everything up
    // to the deepest allocator frame among the first 16, so helpers of the
    // allocator without a telling name (file-local ones) go too.
    int top = 0;
    for (int k = 0; k < s.depth && k < 16; ++k) {
      if (is_allocator_frame(symbols.function_at(s.frames[k] - 1))) top = k + 1;
    }
    SampleValues v{s.alloc_objects, s.alloc_space, s.inuse_objects, s.inuse_space};
    if (live_only) {
      v.alloc_objects = v.inuse_objects;
      v.alloc_space = v.inuse_space;
    }
    w.add(s.frames + top, s.depth - top, v);
  }
  unlock();
  return w.write_fd(fd, ElfSymbols::symbolize, &symbols);
}

bool Sampler::write(const char* path, bool live_only) noexcept {
  const int fd = ::open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  const bool ok = write_fd(fd, live_only);
  return ::close(fd) == 0 && ok;
}

}  // namespace alloy::profile
