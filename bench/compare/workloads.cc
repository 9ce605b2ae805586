// Whole-program allocation workloads for bench/compare/run.py, which runs
// this binary under each malloc (glibc, jemalloc, tcmalloc, mimalloc, alloy)
// via LD_PRELOAD and times it. The binary itself only uses malloc/free and
// new/delete, so whichever malloc is preloaded serves every call.
//
//   workloads <name> [scale]     names: churn prodcons larson tree realloc frag
//                                bigfrag breathe churn8k mt2 procs capped
//
// Each prints one line "name checksum=<n> [key=value...]"; the checksum is
// the same under every allocator (the runner checks), so a broken allocator
// cannot look fast. `frag` also prints the resident set size after freeing
// most of its heap (from /proc/self/statm).
#include <fcntl.h>
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench/compare/rng.h"

namespace {

using alloy::bench::Rng;  // bench/compare/rng.h: the same draws in every workload

// Mixed sizes: mostly small, some medium, a few large (as in real programs).
std::size_t mixed_size(Rng& r) {
  std::uint64_t x = r.next();
  unsigned bucket = static_cast<unsigned>(x % 100);
  if (bucket < 70) return 8 + (x >> 8) % 120;      // 8..127
  if (bucket < 92) return 128 + (x >> 8) % 896;    // 128..1023
  if (bucket < 99) return 1024 + (x >> 8) % 7168;  // 1K..8K
  return 8192 + (x >> 8) % 57344;                  // 8K..64K
}

// Writes the first and last byte so the block is really used.
inline void touch(void* p, std::size_t n, unsigned char v) {
  auto* b = static_cast<unsigned char*>(p);
  b[0] = v;
  b[n - 1] = v;
}

std::size_t rss_bytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size = 0, resident = 0;
  if (std::fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
  std::fclose(f);
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

// ---- churn: one thread, random replace of slots with mixed sizes ----
std::uint64_t churn(int scale) {
  constexpr std::size_t kSlots = 8192;
  std::vector<void*> slot(kSlots, nullptr);
  std::vector<std::size_t> len(kSlots, 0);
  Rng r(1);
  std::uint64_t sum = 0;
  const long ops = 8'000'000L * scale;
  for (long i = 0; i < ops; ++i) {
    std::size_t k = r.below(kSlots);
    if (slot[k] != nullptr) {
      sum += static_cast<unsigned char*>(slot[k])[len[k] - 1];
      std::free(slot[k]);
    }
    std::size_t n = mixed_size(r);
    slot[k] = std::malloc(n);
    len[k] = n;
    touch(slot[k], n, static_cast<unsigned char>(i));
  }
  for (void* p : slot) std::free(p);
  return sum;
}

// ---- prodcons: producers allocate, consumers free (cross-thread frees) ----
struct Batch {
  void* ptr[256];
  std::size_t count = 0;
};

class BatchQueue {
 public:
  void push(Batch* b) {
    std::unique_lock<std::mutex> lock(mu_);
    not_full_.wait(lock, [&] { return q_.size() < 64; });
    q_.push_back(b);
    not_empty_.notify_one();
  }
  Batch* pop() {
    std::unique_lock<std::mutex> lock(mu_);
    not_empty_.wait(lock, [&] { return !q_.empty(); });
    Batch* b = q_.front();
    q_.erase(q_.begin());
    not_full_.notify_one();
    return b;
  }

 private:
  std::mutex mu_;
  std::condition_variable not_empty_, not_full_;
  std::vector<Batch*> q_;
};

std::uint64_t prodcons(int scale) {
  constexpr int kPairs = 2;
  const long per_producer = 3'000'000L * scale;
  std::vector<BatchQueue> queues(kPairs);
  std::atomic<std::uint64_t> sum{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kPairs; ++t) {
    threads.emplace_back([&, t] {
      Rng r(static_cast<std::uint64_t>(t) + 10);
      Batch* b = new Batch;
      for (long i = 0; i < per_producer; ++i) {
        std::size_t n = 16 + r.below(240);
        void* p = std::malloc(n);
        touch(p, n, static_cast<unsigned char>(i));
        b->ptr[b->count++] = p;
        if (b->count == 256) {
          queues[static_cast<std::size_t>(t)].push(b);
          b = new Batch;
        }
      }
      queues[static_cast<std::size_t>(t)].push(b);
      queues[static_cast<std::size_t>(t)].push(nullptr);
    });
    threads.emplace_back([&, t] {
      std::uint64_t local = 0;
      while (Batch* b = queues[static_cast<std::size_t>(t)].pop()) {
        for (std::size_t i = 0; i < b->count; ++i) {
          local += static_cast<unsigned char*>(b->ptr[i])[0];
          std::free(b->ptr[i]);
        }
        delete b;
      }
      sum += local;
    });
  }
  for (auto& th : threads) th.join();
  return sum;
}

// ---- larson: threads replace random blocks of a shared-ownership array;
// each round the arrays pass to freshly created threads, which free blocks
// allocated by threads that have exited ----
std::uint64_t larson(int scale) {
  constexpr int kThreads = 4;
  constexpr std::size_t kSlots = 2000;
  const int rounds = 100 * scale;
  constexpr int kOpsPerRound = 20000;
  std::vector<std::vector<void*>> arrays(kThreads, std::vector<void*>(kSlots));
  for (auto& a : arrays) {
    for (auto& p : a) {
      p = std::malloc(64);
      touch(p, 64, 1);
    }
  }
  std::atomic<std::uint64_t> sum{0};
  for (int round = 0; round < rounds; ++round) {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      // Rotate: thread t of this round takes the array of thread t-1.
      std::vector<void*>* a = &arrays[static_cast<std::size_t>((t + round) % kThreads)];
      threads.emplace_back([a, &sum, round, t] {
        Rng r(static_cast<std::uint64_t>(round * 131 + t));
        std::uint64_t local = 0;
        for (int i = 0; i < kOpsPerRound; ++i) {
          std::size_t k = r.below(kSlots);
          local += static_cast<unsigned char*>((*a)[k])[0];
          std::free((*a)[k]);
          std::size_t n = 16 + r.below(1000);
          (*a)[k] = std::malloc(n);
          touch((*a)[k], n, static_cast<unsigned char>(i));
        }
        sum += local;
      });
    }
    for (auto& th : threads) th.join();
  }
  for (auto& a : arrays) {
    for (void* p : a) std::free(p);
  }
  return sum;
}

// ---- tree: build a big binary search tree of heap nodes with strings,
// walk it, free it ----
struct Node {
  Node* left = nullptr;
  Node* right = nullptr;
  std::uint64_t key;
  std::string name;
  explicit Node(std::uint64_t k) : key(k), name("node-" + std::to_string(k)) {}
};

void free_tree(Node* n) {
  // Iterative post-order via pointer reversal is overkill: use an explicit
  // stack (std::vector, which also allocates).
  std::vector<Node*> stack;
  if (n != nullptr) stack.push_back(n);
  while (!stack.empty()) {
    Node* x = stack.back();
    stack.pop_back();
    if (x->left != nullptr) stack.push_back(x->left);
    if (x->right != nullptr) stack.push_back(x->right);
    delete x;
  }
}

std::uint64_t tree(int scale) {
  std::uint64_t sum = 0;
  for (int rep = 0; rep < 2 * scale; ++rep) {
    Rng r(static_cast<std::uint64_t>(rep) + 77);
    Node* root = nullptr;
    const int n = 250000;
    for (int i = 0; i < n; ++i) {
      std::uint64_t k = r.next() % 100000000;
      Node** at = &root;
      while (*at != nullptr) at = k < (*at)->key ? &(*at)->left : &(*at)->right;
      *at = new Node(k);
    }
    std::vector<Node*> stack;
    stack.push_back(root);
    while (!stack.empty()) {
      Node* x = stack.back();
      stack.pop_back();
      sum += x->name.size() + (x->key & 0xFF);
      if (x->left != nullptr) stack.push_back(x->left);
      if (x->right != nullptr) stack.push_back(x->right);
    }
    free_tree(root);
  }
  return sum;
}

// ---- realloc: many buffers grown in small steps, interleaved, then shrunk ----
std::uint64_t realloc_heavy(int scale) {
  constexpr std::size_t kBuffers = 512;
  std::uint64_t sum = 0;
  for (int rep = 0; rep < 2 * scale; ++rep) {
    std::vector<unsigned char*> buf(kBuffers, nullptr);
    std::vector<std::size_t> len(kBuffers, 0);
    Rng r(static_cast<std::uint64_t>(rep) + 5);
    for (int step = 0; step < 1200; ++step) {
      for (std::size_t b = 0; b < kBuffers; ++b) {
        std::size_t grow = 1 + r.below(64);
        auto* q = static_cast<unsigned char*>(std::realloc(buf[b], len[b] + grow));
        std::memset(q + len[b], static_cast<int>(step & 0xFF), grow);
        buf[b] = q;
        len[b] += grow;
      }
    }
    for (std::size_t b = 0; b < kBuffers; ++b) {
      sum += buf[b][len[b] / 2];
      buf[b] = static_cast<unsigned char*>(std::realloc(buf[b], len[b] / 8));
      sum += buf[b][0];
      std::free(buf[b]);
    }
  }
  return sum;
}

// ---- frag: fill a big heap with mixed small blocks, free 90% scattered,
// then allocate a working set of larger blocks; report RSS at each step ----
std::uint64_t frag(std::size_t n, std::string* extra) {
  std::vector<void*> blocks(n);
  Rng r(99);
  for (std::size_t i = 0; i < n; ++i) {
    std::size_t size = 16 + r.below(240);
    blocks[i] = std::malloc(size);
    touch(blocks[i], size, static_cast<unsigned char>(i));
  }
  std::size_t rss_full = rss_bytes();
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (r.below(10) != 0) {
      sum += static_cast<unsigned char*>(blocks[i])[0];
      std::free(blocks[i]);
      blocks[i] = nullptr;
    }
  }
  std::size_t rss_freed = rss_bytes();
  // A new phase with different sizes: can the freed space be reused?
  std::vector<void*> big(n / 100);
  for (auto& p : big) {
    std::size_t size = 2048 + r.below(6144);
    p = std::malloc(size);
    touch(p, size, 3);
  }
  std::size_t rss_phase2 = rss_bytes();
  for (void* p : big) std::free(p);
  for (void* p : blocks) std::free(p);
  char line[160];
  std::snprintf(line, sizeof line, " rss_full_mb=%.1f rss_after_free_mb=%.1f rss_phase2_mb=%.1f",
                rss_full / 1048576.0, rss_freed / 1048576.0, rss_phase2 / 1048576.0);
  *extra = line;
  return sum;
}

// ---- breathe: a working set of 16 large blocks (2-5 slices of 64 KiB)
// replaced at random: it breathes by a few slices, and a purge policy that
// hands slices back right before it takes fresh ones pays a madvise and a
// page fault per round (issue 12's storm) ----
std::uint64_t breathe(int scale) {
  constexpr std::size_t kBlocks = 16;
  void* blk[kBlocks] = {};
  std::size_t len[kBlocks] = {};
  Rng r(3);
  std::uint64_t sum = 0;
  const long rounds = 400'000L * scale;
  for (long i = 0; i < rounds; ++i) {
    const std::size_t k = r.below(kBlocks);
    if (blk[k] != nullptr) {
      sum += static_cast<unsigned char*>(blk[k])[len[k] - 1];
      std::free(blk[k]);
    }
    len[k] = (2 + r.below(4)) * 65536 - 512;
    blk[k] = std::malloc(len[k]);
    touch(blk[k], len[k], static_cast<unsigned char>(i));
  }
  for (void* p : blk) std::free(p);
  return sum;
}

// ---- churn8k: random replace on 8192 slots of 1-8 KiB blocks: pages of
// eight blocks fill and empty all the time, so spans are freed and taken
// again at a high rate ----
std::uint64_t churn8k(int scale) {
  constexpr std::size_t kSlots = 8192;
  std::vector<void*> slot(kSlots, nullptr);
  std::vector<std::size_t> len(kSlots, 0);
  Rng r(8);
  std::uint64_t sum = 0;
  const long ops = 3'000'000L * scale;
  for (long i = 0; i < ops; ++i) {
    // The live set drifts between a quarter and all of the slots.
    const std::size_t live = kSlots / 4 + static_cast<std::size_t>((i / 50000) % 4) * (kSlots / 4);
    std::size_t k = r.below(live);
    if (slot[k] != nullptr) {
      sum += static_cast<unsigned char*>(slot[k])[len[k] - 1];
      std::free(slot[k]);
    }
    std::size_t n = 1024 + r.below(7168);
    slot[k] = std::malloc(n);
    len[k] = n;
    touch(slot[k], n, static_cast<unsigned char>(i));
    // Shrinking phases free the slots above the live set.
    if (i % 50000 == 0) {
      for (std::size_t j = live; j < kSlots; ++j) {
        if (slot[j] != nullptr) {
          sum += static_cast<unsigned char*>(slot[j])[0];
          std::free(slot[j]);
          slot[j] = nullptr;
        }
      }
    }
  }
  for (void* p : slot) std::free(p);
  return sum;
}

// ---- mt2: glibc's bench-malloc-thread shape at 2 threads (fixed work
// rather than fixed time, so the checksum and the time compare): each thread
// replaces random blocks of its own working set, sizes 1/size-distributed
// up to 32 KiB ----
std::uint64_t mt2(int scale) {
  constexpr int kThreads = 2;
  std::atomic<std::uint64_t> sum{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      constexpr std::size_t kSlots = 1024;
      std::vector<void*> slot(kSlots, nullptr);
      Rng r(static_cast<std::uint64_t>(t) + 40);
      std::uint64_t local = 0;
      const long iters = 6'000'000L * scale;
      for (long i = 0; i < iters; ++i) {
        const std::size_t k = r.below(kSlots);
        if (slot[k] != nullptr) {
          local += static_cast<unsigned char*>(slot[k])[0];
          std::free(slot[k]);
        }
        // 1/size: an exponent 4..15, then a size below 2^exponent.
        const unsigned e = 4 + static_cast<unsigned>(r.below(12));
        const std::size_t n = 1 + r.below(std::size_t{1} << e);
        slot[k] = std::malloc(n);
        static_cast<unsigned char*>(slot[k])[0] = static_cast<unsigned char>(i);
      }
      for (void* p : slot) std::free(p);
      sum += local;
    });
  }
  for (auto& th : threads) th.join();
  return sum;
}

// ---- procs: 300 short processes (this binary, workload "tiny"), each
// starting the allocator, allocating a little and exiting ----
std::uint64_t tiny() {
  std::uint64_t sum = 0;
  std::vector<void*> v;
  for (int i = 0; i < 200; ++i) {
    v.push_back(std::malloc(16 + static_cast<std::size_t>(i) * 24));
    touch(v.back(), 16, 1);
  }
  for (void* p : v) {
    sum += static_cast<unsigned char*>(p)[0];
    std::free(p);
  }
  return sum;
}

std::uint64_t procs(int scale, const char* self) {
  std::uint64_t ok = 0;
  for (int i = 0; i < 300 * scale; ++i) {
    const pid_t pid = fork();
    if (pid == 0) {
      int devnull = open("/dev/null", O_WRONLY);
      if (devnull >= 0) dup2(devnull, 1);
      execl(self, self, "tiny", static_cast<char*>(nullptr));
      _exit(127);
    }
    int status = 0;
    if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0) ++ok;
  }
  return ok;
}

// ---- capped: 20000 buffers, each grown by 16-128 byte reallocs to its
// own cap of 1-6 KiB and then kept (redis's listpacks); 500 grow at a time,
// in random order, a new one starting when one reaches its cap, so buffers
// pass each size at different times (as keys of a server are created over
// time). Peak RSS shows what realloc headroom costs ----
std::uint64_t capped(int scale) {
  const std::size_t n = 20000 * static_cast<std::size_t>(scale);
  std::vector<unsigned char*> buf(n, nullptr);
  std::vector<std::size_t> len(n, 0), cap(n, 0), active;
  Rng r(12);
  for (std::size_t i = 0; i < n; ++i) cap[i] = 1024 + r.below(5 * 1024);
  std::size_t started = 0;
  while (started < n || !active.empty()) {
    while (active.size() < 500 && started < n) active.push_back(started++);
    const std::size_t at = r.below(active.size());
    const std::size_t i = active[at];
    std::size_t grow = 16 + r.below(113);
    if (len[i] + grow > cap[i]) grow = cap[i] - len[i];
    auto* q = static_cast<unsigned char*>(std::realloc(buf[i], len[i] + grow));
    std::memset(q + len[i], static_cast<int>(i & 0xFF), grow);
    buf[i] = q;
    len[i] += grow;
    if (len[i] == cap[i]) {
      active[at] = active.back();
      active.pop_back();
    }
  }
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    sum += buf[i][len[i] - 1] + len[i];
    std::free(buf[i]);
  }
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: %s churn|prodcons|larson|tree|realloc|frag|bigfrag|breathe|churn8k|mt2|"
                 "procs|capped [scale]\n",
                 argv[0]);
    return 2;
  }
  std::string name = argv[1];
  int scale = argc > 2 ? std::atoi(argv[2]) : 1;
  if (scale < 1) scale = 1;
  std::string extra;
  std::uint64_t sum;
  if (name == "churn") sum = churn(scale);
  else if (name == "prodcons") sum = prodcons(scale);
  else if (name == "larson") sum = larson(scale);
  else if (name == "tree") sum = tree(scale);
  else if (name == "realloc") sum = realloc_heavy(scale);
  else if (name == "frag") sum = frag(1'000'000 * static_cast<std::size_t>(scale), &extra);
  // issue 12's fragmentation test: ~340 MiB of small blocks first.
  else if (name == "bigfrag") sum = frag(2'200'000 * static_cast<std::size_t>(scale), &extra);
  else if (name == "breathe") sum = breathe(scale);
  else if (name == "churn8k") sum = churn8k(scale);
  else if (name == "mt2") sum = mt2(scale);
  else if (name == "procs") sum = procs(scale, argv[0]);
  else if (name == "tiny") sum = tiny();
  else if (name == "capped") sum = capped(scale);
  else {
    std::fprintf(stderr, "unknown workload %s\n", name.c_str());
    return 2;
  }
  std::printf("%s checksum=%llu%s\n", name.c_str(), static_cast<unsigned long long>(sum),
              extra.c_str());
  return 0;
}
