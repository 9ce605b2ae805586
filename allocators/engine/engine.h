// alloy::engine — the size-class engine's process-wide C-style entry points.
//
// What it is for: the base of the global malloc adapter. Every function works
// before main, from any thread, during thread exit and in a forked child, and
// none of them calls malloc (only syscalls, atomics and the engine's own
// memory), so they are safe to run as the process malloc under LD_PRELOAD.
// They all use the process default heap (alloy::Heap::default_allocator(),
// which //allocators/engine:heap builds on this core; the core itself, the
// target //allocators/engine:core, depends on neither alloy::Heap nor alloc_iface);
// `free` and friends accept blocks from any alloy::Heap as well, and
// `realloc` keeps such a block in its own heap (that heap's ceiling).
//
// Cost per call: alloc/free of a small block on the thread that owns its page
// is a handful of loads and stores (no lock, no atomic read-modify-write);
// a free from another thread is one compare-and-swap; new pages, large and huge
// blocks take a slower path (span search, occasionally mmap/madvise).
// Thread safety: every function may be called from any thread at any time.
//
// Example:
//   void* p = alloy::engine::alloc(100);            // 16-byte aligned, or null
//   std::size_t n = alloy::engine::usable_size(p);  // >= 100
//   p = alloy::engine::realloc(p, 4000);            // in place when it fits
//   if (alloy::engine::owns(p)) alloy::engine::free_sized(p, 4000);
//   alloy::engine::write_stats(2);                  // human-readable, to stderr
#pragma once

#include <cstddef>
#include <cstdint>

namespace alloy::engine {

// The largest alignment alloc_aligned serves (2 MiB); larger ones return null.
inline constexpr std::size_t kMaxAlignment = std::size_t{2} << 20;

// `size` bytes (> 0) from the default heap, 16-byte aligned; null on failure
// (the caller sets errno).
void* alloc(std::size_t size) noexcept;

// As alloc(), all bytes zero (calloc). Blocks above 64 KiB that come from
// memory the OS has not handed out yet (or that was purged since) are not
// written, so a big zeroed block costs no RSS until it is touched.
void* alloc_zeroed(std::size_t size) noexcept;

// `size` bytes aligned to `alignment` (a power of two). Up to 64 KiB the
// block is an ordinary size-class block (no padding), up to 1 MiB whole
// aligned slices, up to 2 MiB a dedicated mapping; larger alignments return
// null (a block's segment header must precede it within its 4 MiB unit).
void* alloc_aligned(std::size_t size, std::size_t alignment) noexcept;

// Any block from the engine (default heap or any alloy::Heap), from any
// thread. Null is a no-op.
void free(void* p) noexcept;

// As free(), with the size given at allocation. Debug builds (no NDEBUG)
// check it and report a mismatch to stderr instead of freeing.
void free_sized(void* p, std::size_t size) noexcept;

// Usable bytes of a live block (>= the size asked for).
std::size_t usable_size(const void* p) noexcept;

// True if p lies in memory the engine manages. A bit test, no lock.
bool owns(const void* p) noexcept;

// p non-null, size > 0. Grows or shrinks in place when it can (usable size,
// following free slices for large blocks, mremap for huge ones), else
// alloc + copy + free; a large block (> 64 KiB) that moves to grow gets ~25%
// headroom so append loops rarely move (a small one only its size class's
// slack, so buffers grown to a cap cost no extra memory). Null on failure with
// p untouched. Keeps 16-byte alignment. A block of an alloy::Heap is
// handled as Heap::realloc does: it stays in that heap.
void* realloc(void* p, std::size_t size) noexcept;

// True if p now has at least `size` usable bytes without moving (usable
// size, following free slices of a large block, mremap of a huge one).
bool resize_in_place(void* p, std::size_t size) noexcept;

// Take (prepare) and release (parent / child: reinitialise) every engine lock
// around fork(). The engine registers these itself with pthread_atfork at
// first use; they are exported for callers that manage fork themselves.
void fork_prepare() noexcept;
void fork_parent() noexcept;
void fork_child() noexcept;

// Human-readable statistics of the default heap and process totals, written
// with write(2); no allocation.
void write_stats(int fd) noexcept;

// Why p may not be freed, resized or measured: null when p is the start of
// a live engine block; else a short reason ("not the start of a block",
// "already free (a double free)", "segment metadata", ...). Checks p's span
// (kind, block boundary, never-carved part of a page), a huge or large
// block's state and the heads of a small block's free lists (the block freed
// last on its page); with `walk`, when the calling thread owns p's page, it
// also walks the page's free lists (O(free blocks of the page)). Slow paths
// only (a division, a few loads).
const char* check_block(const void* p, bool walk = false) noexcept;

// What the engine does after it reported a misuse it found on its own (a
// corrupted free list, a double or interior free caught on a slow path):
// abort() when on (the default), or go on without following the bad
// pointer when off (the malloc adapter's ALLOY_ON_ERROR=report).
void set_abort_on_error(bool on) noexcept;

// The secure mode (ALLOY_SECURE=1 in the environment at the first
// allocation, or a build with --define=alloy_secure=1): true when on. The
// engine's part is to send every default-heap malloc and free to the slow
// paths (where the malloc adapter adds canaries, fill checks and a
// quarantine), to carve fresh blocks in random order, and to keep guard
// pages (PROT_NONE) at the end of every huge mapping, right after its
// block, and in every segment's last slice.
bool secure_mode() noexcept;
// In the secure mode, the adapter's free of p once it is done with it: p is
// a checked live block of the default heap.
void secure_release(void* p) noexcept;
// A function the engine calls on an exiting thread before it collects that
// thread's heap (the malloc adapter empties its per-thread quarantine
// there); null for none. Set once, before threads exit.
void set_thread_exit_hook(void (*hook)()) noexcept;
// True if p (a live engine block) belongs to the process default heap (not
// to an alloy::Heap).
bool in_default_heap(const void* p) noexcept;

// When on, empty pages and spans go back to the OS immediately instead of
// after the purge delay.
void set_eager_purge(bool on) noexcept;

// Returns the default heap's free memory to the OS now: this thread's pages,
// exited threads' pages, and the caches of huge blocks and segments
// (malloc_trim; alloy::Heap::collect_default() is this). Takes the heap's
// lock; O(pages of those threads).
void collect() noexcept;

// Sampled heap profiles (sampling.cc; profile/sampler.h writes them): one
// allocation per `mean_bytes` allocated on average is sampled with its stack
// (Poisson by bytes, per thread); 0 turns sampling off. The inline fast path
// is unchanged either way; with sampling off the slow path pays one load.
void set_profile_rate(std::int64_t mean_bytes) noexcept;
std::int64_t profile_rate() noexcept;

}  // namespace alloy::engine
