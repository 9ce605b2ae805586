// The classic heap-misuse probes (issue 13): double, invalid, interior and
// unaligned frees, overflows, writes after free, sized-delete mismatches,
// malloc_usable_size and realloc of bad pointers, on small (32 B), large
// (256 KiB) and huge (8 MiB) blocks.
//
// A plain program that links no allocator: run it under glibc, or under
// LD_PRELOAD=liballoy_malloc.so with or without ALLOY_SECURE=1.
//   heap_probes            runs every probe in a forked child and prints a
//                          table: caught (stopped with a message), fault
//                          (killed by a signal without one), missed (exit 0)
//   heap_probes NAME       runs one probe in this process
//   heap_probes --correct-use      correct use every mode must accept (exit 0)
//   heap_probes --fork-in-signal   glibc's fork-from-a-signal-handler test:
//                          a single-threaded process whose SIGALRM handler
//                          forks while the main thread is inside fork(),
//                          malloc() or free(); exits 0 unless it hangs
// probes_test runs it in every mode and asserts what each mode promises.
#include <malloc.h>
#include <errno.h>
#include <signal.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <thread>

namespace {

constexpr std::size_t kSmall = 32;
constexpr std::size_t kLarge = 256 * 1024;
constexpr std::size_t kHuge = 8 * 1024 * 1024;

// Hides where a pointer came from, so the compiler neither warns about nor
// folds the misuse.
[[gnu::noinline]] void* launder(void* p) {
  __asm__ volatile("" : "+r"(p));
  return p;
}
char* at(void* p, std::ptrdiff_t off) { return static_cast<char*>(launder(p)) + off; }

void* volatile g_sink;
long g_global[8];

void use(void* p) { g_sink = p; }

void double_free(std::size_t n) {
  void* p = malloc(n);
  free(p);
  free(launder(p));
}
void invalid_free(std::size_t n, std::ptrdiff_t off) {
  void* p = malloc(n);
  std::memset(p, 0, n < 64 ? n : 64);
  free(at(p, off));
}
void overflow(std::size_t n, std::size_t by) {
  char* p = static_cast<char*>(malloc(n));
  std::memset(at(p, static_cast<std::ptrdiff_t>(n)), 0x41, by);
  free(p);
  use(malloc(n));
  use(malloc(n));
}
void write_after_free(std::size_t n, std::size_t off, std::uintptr_t value) {
  char* p = static_cast<char*>(malloc(n));
  free(p);
  std::memcpy(at(p, static_cast<std::ptrdiff_t>(off)), &value, sizeof value);
  // Enough allocations of the size for any allocator to hand p out again
  // and then follow the link written into it, half of them freed again (so
  // a quarantine moves on).
  for (int i = 0; i < (n <= 1024 ? 5000 : 4); ++i) {
    char* b = static_cast<char*>(malloc(n));
    // A steered allocation: the write after free chose b's address.
    if (reinterpret_cast<std::uintptr_t>(b) == value) std::memset(b, 0x42, 8);
    use(b);
    if (i % 2 == 1) free(b);
  }
}

// A linear overflow: `by` bytes written one at a time past p's n bytes (a
// loop the compiler cannot turn into one memset of a known-bad range).
void overflow_linear(void* p, std::size_t n, std::size_t by) {
  volatile char* c = at(p, static_cast<std::ptrdiff_t>(n));
  for (std::size_t i = 0; i < by; ++i) c[i] = 0x41;
}

struct Probe {
  const char* name;
  void (*run)();
};

const Probe kProbes[] = {
    {"double_free_small", [] { double_free(kSmall); }},
    {"double_free_small_later", [] {
       void* a = malloc(kSmall);
       void* b = malloc(kSmall);
       free(a);
       free(b);
       free(launder(a));
     }},
    {"double_free_large", [] { double_free(kLarge); }},
    {"double_free_huge", [] { double_free(kHuge); }},
    {"double_delete", [] {
       int* p = new int[4];
       delete[] p;
       delete[] static_cast<int*>(launder(p));
     }},
    {"interior_free_small", [] { invalid_free(kSmall, 16); }},
    {"interior_free_large", [] { invalid_free(kLarge, 4096); }},
    {"interior_free_huge", [] { invalid_free(kHuge, 4096); }},
    {"unaligned_free_small", [] { invalid_free(kSmall, 1); }},
    {"unaligned_free_large", [] { invalid_free(kLarge, 1); }},
    {"unaligned_free_huge", [] { invalid_free(kHuge, 1); }},
    {"free_never_handed_out", [] {
       void* p = malloc(kSmall);
       free(at(p, 16 * 1024));  // same page, far past what was carved
     }},
    {"free_stack", [] {
       long x[4] = {0, 0, 0, 0};
       free(launder(&x[2]));
     }},
    {"free_global", [] { free(launder(&g_global[2])); }},
    {"overflow_1_small", [] { overflow(24, 1); }},
    {"overflow_8_small", [] { overflow(24, 8); }},
    {"overflow_1_large", [] { overflow(kLarge - 100, 1); }},
    {"overflow_8_large", [] { overflow(kLarge - 100, 8); }},
    {"overflow_1_huge", [] { overflow(kHuge - 100, 1); }},
    // Guard pages (the secure mode: a fault, not a message).
    {"overflow_page_huge", [] {
       void* p = malloc(kHuge - 100);
       overflow_linear(p, kHuge - 100, 8192);
       free(p);
     }},
    {"overflow_segment_end", [] {
       // A large block that ends where its segment's usable slices end (the
       // last slice, or the one before it when the last is a guard), then
       // 64 KiB + 1 written past its end.
       constexpr std::size_t kSeg = 4 << 20, kSlice = 64 << 10, kN = 100 << 10;
       for (int i = 0; i < 200; ++i) {
         char* p = static_cast<char*>(malloc(kN));
         const std::uintptr_t end = (reinterpret_cast<std::uintptr_t>(p) + kN + kSlice - 1) & ~(kSlice - 1);
         if ((end & (kSeg - 1)) == 0 || ((end + kSlice) & (kSeg - 1)) == 0) {
           overflow_linear(p, kN, end - reinterpret_cast<std::uintptr_t>(p) - kN + kSlice + 1);
           free(p);
           return;
         }
       }
     }},
    {"write_after_free_link_small", [] { write_after_free(kSmall, 0, 0x4141414141414141u); }},
    {"write_after_free_steer_small", [] {
       write_after_free(kSmall, 0, reinterpret_cast<std::uintptr_t>(&g_global[0]));
     }},
    {"write_after_free_tail_small", [] { write_after_free(kSmall, 16, 0x4141414141414141u); }},
    {"write_after_free_large", [] { write_after_free(kLarge, 4096, 0x4141414141414141u); }},
    {"sized_delete_mismatch_small", [] {
       void* p = ::operator new(kSmall);
       ::operator delete(launder(p), 4 * kSmall);
     }},
    {"sized_delete_mismatch_large", [] {
       void* p = ::operator new(kLarge);
       ::operator delete(launder(p), 4 * kLarge);
     }},
    {"usable_size_interior", [] {
       void* p = malloc(kSmall);
       g_sink = reinterpret_cast<void*>(malloc_usable_size(at(p, 16)));
     }},
    {"usable_size_unaligned", [] {
       void* p = malloc(kLarge);
       g_sink = reinterpret_cast<void*>(malloc_usable_size(at(p, 1)));
     }},
    {"usable_size_freed_large", [] {
       void* p = malloc(kLarge);
       free(p);
       g_sink = reinterpret_cast<void*>(malloc_usable_size(launder(p)));
     }},
    {"realloc_interior", [] {
       void* p = malloc(kSmall);
       use(realloc(at(p, 16), 20));
     }},
    {"realloc_unaligned_large", [] {
       void* p = malloc(kLarge);
       use(realloc(at(p, 1), kLarge + 4096));
     }},
    {"realloc_freed", [] {
       void* p = malloc(kSmall);
       free(p);
       use(realloc(launder(p), 20));
     }},
    {"realloc_freed_large", [] {
       void* p = malloc(kLarge);
       free(p);
       use(realloc(launder(p), kLarge + 4096));
     }},
    {"realloc_wild_0x1", [] { use(realloc(launder(reinterpret_cast<void*>(1)), 64)); }},
    {"free_wild_0x1000", [] { free(launder(reinterpret_cast<void*>(0x1000))); }},
};

// Runs probe `i` in a child; returns "caught", "fault" or "missed" and the
// child's first line of stderr in *msg.
const char* run_child(const Probe& probe, std::string* msg) {
  int fds[2];
  if (pipe(fds) != 0) return "error";
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    probe.run();
    _exit(0);
  }
  close(fds[1]);
  char buf[4096];
  std::string err;
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) err.append(buf, static_cast<std::size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  *msg = err.substr(0, err.find('\n'));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "missed";
  if (!err.empty()) return "caught";
  return "fault";
}

}  // namespace

namespace {
// The handler forks at most once per call of the main loop: a fork here
// takes about 300 us on the 2-core VMs, longer than the timer's 200 us
// period, so an ungated handler would fire again the moment it returned and
// starve the main loop (a livelock that looks like the hang under test).
// Signals still land at random points of malloc, free and fork.
volatile sig_atomic_t g_main_steps = 0;
volatile sig_atomic_t g_forked_at_step = -1;

void fork_in_handler(int) {
  if (g_forked_at_step == g_main_steps) return;
  g_forked_at_step = g_main_steps;
  const int saved = errno;
  const pid_t pid = fork();
  if (pid == 0) _exit(0);
  if (pid > 0) waitpid(pid, nullptr, 0);
  errno = saved;
}

int fork_in_signal() {
  struct sigaction sa {};
  sa.sa_handler = fork_in_handler;
  sigaction(SIGALRM, &sa, nullptr);
  itimerval every{{0, 200}, {0, 200}};
  setitimer(ITIMER_REAL, &every, nullptr);
  for (int i = 0; i < 3000; ++i) {
    void* blocks[16];
    for (auto& b : blocks) {
      g_main_steps = g_main_steps + 1;
      b = malloc(16 + static_cast<std::size_t>(i % 7) * 100);
    }
    for (auto& b : blocks) {
      g_main_steps = g_main_steps + 1;
      free(b);
    }
    if (i % 10 == 0) {
      g_main_steps = g_main_steps + 1;
      const pid_t pid = fork();
      if (pid == 0) _exit(0);
      if (pid > 0) {
        while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
        }
      }
    }
  }
  itimerval off{};
  setitimer(ITIMER_REAL, &off, nullptr);
  return 0;
}
}  // namespace

// Correct use that the secure mode must not mistake for misuse: a foreign
// block realloc'd into alloy and freed, realloc in place and moving,
// malloc_usable_size, sized delete with the right size, frees on a thread
// that then exits (its quarantine goes back). Exits 0.
int correct_use() {
  static char foreign[64] = "foreign";
  char* f = static_cast<char*>(realloc(launder(foreign), 100));
  if (f == nullptr || std::strcmp(f, "foreign") != 0) return 1;
  free(f);
  char* g = nullptr;
  for (std::size_t n = 1; n < 100000; n += n / 3 + 1) {
    g = static_cast<char*>(realloc(g, n));
    if (g == nullptr || malloc_usable_size(g) < n) return 2;
    std::memset(g, 'x', n);
  }
  free(g);
  void* s = ::operator new(48);
  ::operator delete(s, 48);
  std::thread t([] {
    for (int i = 0; i < 1000; ++i) free(malloc(static_cast<std::size_t>(i % 300 + 1)));
  });
  t.join();
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--fork-in-signal") == 0) return fork_in_signal();
  if (argc == 2 && std::strcmp(argv[1], "--correct-use") == 0) return correct_use();
  if (argc == 2) {
    for (const Probe& p : kProbes) {
      if (std::strcmp(p.name, argv[1]) == 0) {
        p.run();
        return 0;
      }
    }
    std::fprintf(stderr, "no probe %s\n", argv[1]);
    return 2;
  }
  int caught = 0, fault = 0, total = 0;
  for (const Probe& p : kProbes) {
    std::string msg;
    const char* what = run_child(p, &msg);
    ++total;
    if (std::strcmp(what, "caught") == 0) ++caught;
    if (std::strcmp(what, "fault") == 0) ++fault;
    std::printf("%-30s %-7s %s\n", p.name, what, msg.substr(0, 110).c_str());
  }
  std::printf("caught %d of %d (and %d faults without a message)\n", caught, total, fault);
  return 0;
}
