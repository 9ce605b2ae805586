// The global malloc adapter: alloy's size-class engine behind malloc, free,
// calloc, realloc, the aligned family, malloc_usable_size, free_sized and
// every form of operator new/delete.
//
// Two ways in: link `//adapters/malloc:alloy_malloc` (static, alwayslink) into
// a program, or run any program with LD_PRELOAD=.../liballoy_malloc.so
// (`//adapters:liballoy_malloc.so`). Either way every allocation of the
// process, including libc's and libstdc++'s own, goes to the engine. Pointers
// the engine does not own (blocks handed out by ld.so's start-up allocator
// before the replacement was bound) are never passed to the engine: free()
// ignores them, realloc() copies them out. Alignments above the engine's
// 2 MiB limit get a mapping of their own (rare; one mmap each).
//
// Environment (read once at start-up with getenv, which does not allocate):
//   ALLOY_STATS=1          engine statistics on stderr at exit
//   ALLOY_STATS=/path      ... appended to that file instead
//   ALLOY_VERBOSE=1        report failed allocations, invalid arguments and
//                          foreign frees on stderr (with the caller's address)
//   ALLOY_EAGER_PURGE=1    give empty spans back to the OS immediately
//   ALLOY_PROF=/path       sample the heap and write a pprof profile there at
//                          exit (alloc_* since start, inuse_* still live);
//                          "%p" in the path is the process id
//   ALLOY_PROF_LEAKS=/path ... and a leak profile (live blocks only) there
//   ALLOY_PROF_RATE=512k   mean bytes between samples (default 512 KiB)
//   ALLOY_ON_ERROR=report  report a free, realloc or malloc_usable_size of a
//                          pointer inside alloy's memory that is not a live
//                          block (and a corrupted free list) and go on; by
//                          default such a misuse is reported and abort()s
//
// Verbose reports are rate-limited (the first 100, then 10 a second); the
// count of suppressed lines is printed at exit.
//
// Cost: one call into the engine per operation, plus one ownership check on
// free. Failure paths set errno = ENOMEM (EINVAL for bad alignments) and
// never abort; misuses of engine pointers abort (see ALLOY_ON_ERROR). Thread safety: fully thread-safe, fork-safe (the engine
// registers its own pthread_atfork handlers), async-signal-unsafe like malloc.
//
// Example:
//   // BUILD:  cc_binary(name = "server", srcs = [...],
//   //                   deps = ["//adapters/malloc:alloy_malloc"])
//   // or:     LD_PRELOAD=bazel-bin/adapters/liballoy_malloc.so ./server
//   void* p = std::malloc(100);   // served by alloy::engine
//   std::free(p);
#pragma once

#include <cstddef>
#include <cstdint>

namespace alloy::malloc_adapter {

// The options the adapter runs with, from the environment variables above.
struct Options {
  bool stats = false;        // ALLOY_STATS set (and not "0")
  int stats_fd = 2;          // where the exit report goes
  bool verbose = false;      // ALLOY_VERBOSE set (and not "0")
  bool abort_on_error = true;  // false with ALLOY_ON_ERROR=report
  bool eager_purge = false;  // ALLOY_EAGER_PURGE set (and not "0")
  const char* profile_path = nullptr;       // ALLOY_PROF
  const char* leak_profile_path = nullptr;  // ALLOY_PROF_LEAKS
  std::int64_t profile_rate = 0;            // ALLOY_PROF_RATE (0: not set)
};

// The options in effect (read from the environment on first use).
const Options& options() noexcept;

// Writes the engine's statistics to `fd` with write(2); never allocates.
void write_stats(int fd) noexcept;

// Number of frees of pointers the engine does not own since start-up (they
// are ignored). Exposed for tests and for the ALLOY_STATS report.
std::size_t foreign_frees() noexcept;

}  // namespace alloy::malloc_adapter

// The process's sampled heap profile, for a program whose malloc is alloy's
// (these live in the adapter). Sampling is Poisson by bytes with the mean
// set_rate() gives (ALLOY_PROF / ALLOY_PROF_RATE set it at start-up); each
// sampled allocation keeps its stack (frame pointers, up to 64 frames). The
// files are gzip'd pprof profile.proto with function names from the ELF
// symbol tables: `go tool pprof -top FILE`. Writing allocates nothing, so it
// neither samples itself nor waits for a thread that is allocating, and it
// works in a forked child. False if the file could not be written.
//   alloy::profile::set_rate(512 * 1024);
//   ... run ...
//   alloy::profile::write("/tmp/heap.pb.gz");        // alloc_* and inuse_*
//   alloy::profile::write_leaks("/tmp/leaks.pb.gz"); // live blocks only
namespace alloy::profile {
bool write(const char* path) noexcept;
bool write_leaks(const char* path) noexcept;
// Mean bytes between samples; 0 turns sampling off (the default).
void set_rate(std::int64_t mean_bytes) noexcept;
std::int64_t rate() noexcept;
}  // namespace alloy::profile
