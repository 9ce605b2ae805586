// alloy::SharedHeap — one heap shared by several processes through a mapping.
//
// create(name, capacity) makes a POSIX shared-memory object (or, with
// create_anonymous, a memfd whose fd is handed to other processes) and lays a
// heap inside it; attach(name) maps it in another process, at whatever address
// that process picks. All metadata lives inside the mapping and refers to
// blocks by offset, never by pointer, so every process may map it elsewhere.
// Blocks travel between processes as SharedOffset<T>; a named root table lets
// a second process find the first object. allocator() is an alloy::Allocator
// (sized free, checked: a free of a block that is not a live block of this
// heap, a double free or a wrong size is refused, reported and counted).
//
// Cost: every call takes one process-shared robust mutex inside the mapping.
// alloc is O(1) for small sizes (exact size-class lists) and a short scan
// of one power-of-two bin for large ones; free coalesces with both neighbours
// in O(1). About 50 ns per uncontended alloc+free pair (glibc malloc: ~10;
// see shared_heap_bench). stats() and visit() walk the whole heap (O(blocks)).
// Thread safety: any thread of any attached process may call anything
// concurrently. A process that dies while holding the lock does not wedge
// the others: the next locker rebuilds the heap's free lists from the block
// chain (see internal/recovery.h, "Crash consistency"); blocks the dead process
// still held stay allocated (visit() shows their owner's pid). The callback
// passed to visit() runs under the lock: allocating from the same heap inside
// it fails (null; the lock is error-checking) instead of deadlocking.
//
// Example:
//   auto heap = alloy::SharedHeap::create("/jobs", 64 << 20);     // process A
//   auto msg = heap->allocator().dupe_z("hello");                 // NUL-terminated
//   (void)heap->set_root("greeting", heap->offset_of(msg->data()));
//   auto other = alloy::SharedHeap::attach("/jobs");               // process B
//   const char* s = other->get(*other->root<char>("greeting"));    // "hello"
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>

#include "alloy/alloc_iface/alignment.h"
#include "alloy/alloc_iface/allocator.h"
#include "alloy/alloc_iface/ceiling.h"

namespace alloy {

// ---- Errors ---------------------------------------------------------------

enum class SharedHeapErrc : unsigned char {
  kInvalidName,        // empty, contains '/', or too long
  kInvalidArgument,    // capacity too small or too large, bad fd, ...
  kExists,             // create() of a name that already exists
  kNotFound,           // attach() of a name that does not exist
  kSystem,             // a syscall failed (see sys_errno)
  kTooSmall,           // the object is smaller than a heap header
  kBadMagic,           // not an alloy shared heap
  kBadVersion,         // an alloy shared heap of another format version
  kBadLayout,          // same version, different header layout (ABI)
  kCorruptHeader,      // checksum or geometry of the header is wrong
  kNotReady,           // the creator has not finished initialising it
  kDestroyed,          // destroy() was called; no new attachments
  kTooManyProcesses,   // every attachment slot is taken by a live process
  kHeapCorrupt,        // the block chain is damaged; the heap refuses work
  kLockFailed,         // the robust mutex is unrecoverable
  kRootNotFound,       // no root of that name
  kRootTableFull,      // every root slot is taken
  kDetached,           // the SharedHeap object is not attached
};

std::string_view to_string(SharedHeapErrc code);

struct SharedHeapError {
  SharedHeapErrc code = SharedHeapErrc::kSystem;
  int sys_errno = 0;       // errno of the failing syscall, else 0
  char message[192] = {};  // human readable, NUL-terminated

  std::string_view what() const { return message; }
};

// A value or a SharedHeapError; never throws.
template <class T>
class [[nodiscard]] SharedResult {
 public:
  SharedResult(T v) : value_(std::move(v)) {}                // NOLINT: implicit
  SharedResult(const SharedHeapError& e) : error_(e) {}      // NOLINT: implicit
  bool ok() const { return value_.has_value(); }
  explicit operator bool() const { return ok(); }
  T& value() & { check(); return *value_; }
  const T& value() const& { check(); return *value_; }
  T&& value() && { check(); return std::move(*value_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const SharedHeapError& error() const { return error_; }

 private:
  void check() const;
  std::optional<T> value_;
  SharedHeapError error_;
};

template <>
class [[nodiscard]] SharedResult<void> {
 public:
  SharedResult() = default;
  SharedResult(const SharedHeapError& e) : ok_(false), error_(e) {}  // NOLINT
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const SharedHeapError& error() const { return error_; }

 private:
  bool ok_ = true;
  SharedHeapError error_;
};

namespace shared_heap_detail {
[[noreturn]] void value_on_error(const SharedHeapError& e);
}  // namespace shared_heap_detail

template <class T>
void SharedResult<T>::check() const {
  if (!value_) shared_heap_detail::value_on_error(error_);
}

// ---- Offsets ----------------------------------------------------------------

// A position inside a shared heap, valid in every process that maps it.
// Zero is null (offset 0 is the heap's header, never a block). Trivially
// copyable, so it can itself live inside shared memory.
template <class T>
struct SharedOffset {
  std::uint64_t offset = 0;

  constexpr bool is_null() const { return offset == 0; }
  constexpr explicit operator bool() const { return offset != 0; }
  template <class U>
  constexpr SharedOffset<U> cast() const { return SharedOffset<U>{offset}; }
  friend constexpr bool operator==(SharedOffset, SharedOffset) = default;
};
static_assert(std::is_trivially_copyable_v<SharedOffset<int>>);
static_assert(sizeof(SharedOffset<int>) == 8);

// ---- Reports ----------------------------------------------------------------

// The pragmas keep the synthesized constructors of a struct with a
// [[deprecated]] field quiet (GCC 12 flags them); user code that names the
// field still gets the warning.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
struct SharedHeapStats {
  std::size_t mapping_bytes = 0;      // size of the whole shared object
  std::size_t heap_bytes = 0;         // the part blocks are carved from
  std::size_t ceiling_bytes = 0;      // ceiling on bytes_in_use (set_ceiling)
  // The same value under its old name, for one release.
  [[deprecated("use ceiling_bytes")]] std::size_t cap_bytes = 0;
  std::size_t bytes_in_use = 0;       // live blocks, headers included
  std::size_t payload_bytes = 0;      // sum of the lengths callers asked for
  std::size_t peak_bytes_in_use = 0;
  std::size_t live_blocks = 0;
  std::size_t free_blocks = 0;
  std::size_t free_bytes = 0;
  std::size_t largest_free_block = 0; // block bytes, header included
  std::uint64_t allocs = 0;
  std::uint64_t frees = 0;
  std::uint64_t failed_allocs = 0;    // out of space or over the ceiling
  std::uint64_t rejected_frees = 0;   // not a live block / wrong size
  std::uint64_t recoveries = 0;       // lock owner died; heap rebuilt
  std::uint64_t rolled_back_allocs = 0;
  std::uint64_t rolled_forward_frees = 0;
  std::uint64_t list_repairs = 0;     // damaged free lists rebuilt from the chain
  std::uint32_t attached_processes = 0;
};
#pragma GCC diagnostic pop

// One live block, as visit() reports it.
struct SharedBlockInfo {
  std::uint64_t offset = 0;     // of the payload: heap.get(SharedOffset<T>{offset})
  void* data = nullptr;         // the payload in the calling process
  std::size_t length = 0;       // what the caller asked for
  std::size_t block_bytes = 0;  // the block, header and padding included
  Alignment alignment;
  pid_t owner = 0;              // the process that allocated it
};

// Why free_checked() refused a free.
enum class SharedFreeStatus : unsigned char {
  kFreed,
  kNotInHeap,     // the pointer is outside this heap's block area
  kNotABlock,     // inside, but not the start of a live block (or freed twice)
  kWrongSize,     // a live block, but not of that length / alignment
  kHeapUnusable,  // the lock or the heap is broken
};
std::string_view to_string(SharedFreeStatus s);

struct SharedAttachOptions {
  // Where to try to map (a hint; the kernel may pick another address).
  void* address_hint = nullptr;
};

// ---- The heap ----------------------------------------------------------------

class SharedHeap {
 public:
  static constexpr std::size_t kMinCapacity = 64 * 1024;
  static constexpr std::size_t kMaxCapacity = std::size_t{1} << 40;
  static constexpr std::size_t kMaxAlignment = 4096;
  static constexpr std::size_t kRootNameMax = 39;
  static constexpr std::size_t kRootSlots = 16;
  static constexpr std::size_t kProcessSlots = 64;

  // A named POSIX shared-memory object of `capacity` bytes (rounded up to
  // pages; header and bookkeeping come out of it). Fails with kExists if the
  // name is taken. The name may be given with or without the leading '/'.
  static SharedResult<SharedHeap> create(std::string_view name, std::size_t capacity);
  // An unnamed heap in a memfd. Other processes attach with attach_fd() on an
  // inherited or SCM_RIGHTS-passed copy of fd(). Freed when the last fd and
  // mapping go away.
  static SharedResult<SharedHeap> create_anonymous(std::size_t capacity);

  static SharedResult<SharedHeap> attach(std::string_view name,
                                         const SharedAttachOptions& options = {});
  // Attaches to the heap behind `fd` (duplicated; the caller keeps its fd).
  static SharedResult<SharedHeap> attach_fd(int fd, const SharedAttachOptions& options = {});

  // Marks the named heap for destruction: no new attach() succeeds, and the
  // name is unlinked when the last attached process detaches (now, if none
  // is attached; processes that died are not counted). A name that exists
  // but is not a valid heap is unlinked at once.
  static SharedResult<void> destroy(std::string_view name);

  SharedHeap() = default;
  SharedHeap(SharedHeap&& o) noexcept { *this = std::move(o); }
  SharedHeap& operator=(SharedHeap&& o) noexcept;
  SharedHeap(const SharedHeap&) = delete;
  SharedHeap& operator=(const SharedHeap&) = delete;
  ~SharedHeap() { detach(); }

  // Unmaps and gives up this process's attachment (unlinking the name if the
  // heap was destroy()ed and this was the last one). Handles and pointers
  // from this heap are dangling afterwards. A copy inherited through fork()
  // only unmaps; it never releases the parent's attachment.
  void detach();
  bool attached() const { return base_ != nullptr; }

  // The handle. Valid until detach(); its ctx is the mapping itself, so the
  // SharedHeap object may move freely.
  Allocator allocator() const;

  std::byte* base() const { return base_; }
  std::size_t mapping_bytes() const { return size_; }
  int fd() const { return fd_; }

  // ---- Offsets <-> pointers (bounds-checked: outside the mapping is null).
  bool contains(const void* p) const {
    auto* b = static_cast<const std::byte*>(p);
    return base_ != nullptr && b >= base_ && b < base_ + size_;
  }
  template <class T>
  T* get(SharedOffset<T> off) const {
    if (off.offset == 0 || off.offset >= size_ || base_ == nullptr) return nullptr;
    return reinterpret_cast<T*>(base_ + off.offset);
  }
  template <class T>
  SharedOffset<T> offset_of(const T* p) const {
    if (p == nullptr || !contains(p)) return {};
    return SharedOffset<T>{static_cast<std::uint64_t>(
        reinterpret_cast<const std::byte*>(p) - base_)};
  }

  // ---- Ceiling. Allocations fail (null) once bytes_in_use would pass the
  // ceiling. It is shared: every process sees and honours it. Clamped to the
  // heap, so alloy::kNoCeiling (alloc_iface/ceiling.h) is "the whole heap",
  // the initial value; stats().ceiling_bytes reads it.
  SharedResult<void> set_ceiling(std::size_t bytes);
  [[deprecated("use set_ceiling")]] SharedResult<void> set_cap(std::size_t bytes) {
    return set_ceiling(bytes);
  }

  SharedResult<SharedHeapStats> stats() const;

  // Calls `f(const SharedBlockInfo&)` for every live block, in address order,
  // under the lock. Returns how many blocks were visited.
  template <class F>
  SharedResult<std::size_t> visit(F&& f) const {
    return visit_raw(
        [](void* ctx, const SharedBlockInfo& info) { (*static_cast<F*>(ctx))(info); },
        const_cast<void*>(static_cast<const void*>(&f)));
  }
  SharedResult<std::size_t> visit_raw(void (*fn)(void*, const SharedBlockInfo&),
                                      void* ctx) const;

  // ---- Named roots: a small table of name -> offset inside the heap.
  SharedResult<void> set_root(std::string_view name, std::uint64_t offset);
  template <class T>
  SharedResult<void> set_root(std::string_view name, SharedOffset<T> off) {
    return set_root(name, off.offset);
  }
  SharedResult<std::uint64_t> root_offset(std::string_view name) const;
  template <class T>
  SharedResult<SharedOffset<T>> root(std::string_view name) const {
    auto r = root_offset(name);
    if (!r) return r.error();
    return SharedOffset<T>{*r};
  }
  SharedResult<void> remove_root(std::string_view name);

  // A free that says why it was refused instead of printing it.
  SharedFreeStatus free_checked(void* p, std::size_t len, Alignment alignment);

  // Checks the header (magic, version, layout, checksum, geometry, as
  // attach() does; the error then has that code), the ceiling, intent record,
  // attachment slots and roots, then walks the heap and cross-checks the
  // chain, free lists, block bitmap and counters: ok() or kHeapCorrupt with
  // a message that says what disagrees. Every walk is bounded (the geometry
  // is checked first; a free list longer than the free blocks is reported).
  // O(blocks x free blocks): for tests and debugging, after each batch.
  SharedResult<void> verify() const;

  // ---- Test hooks: make this process die (SIGKILL) at a point inside an
  // operation, while it holds the heap's lock. Process-wide, for tests only.
  enum class DiePoint : unsigned char {
    kNone,
    kAllocAfterIntent,      // block chosen and unlinked, nothing committed
    kAllocAfterSplit,       // remainder header written, block still free
    kAllocAfterCommit,      // block marked live, counters not yet updated
    kFreeAfterMarkFree,     // block marked free, not yet coalesced or listed
    kFreeAfterCoalesce,     // merged with the next block, not yet listed
    kHoldingLock,           // inside lock_for_test(): just holding the lock
  };
  static void set_die_point_for_test(DiePoint point);
  // Takes the lock, stores 1 into *held (if given: put it in shared memory
  // to tell another process), dies at DiePoint::kHoldingLock if set, else
  // sleeps `millis` with the lock held and releases it.
  SharedResult<void> lock_for_test(int millis = 0, std::atomic<int>* held = nullptr) const;

 private:
  static SharedResult<SharedHeap> create_on_fd(int fd, std::size_t capacity,
                                               const char* shm_name);
  static SharedResult<SharedHeap> attach_mapped(int fd, const SharedAttachOptions& options,
                                                const char* shm_name);

  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  int fd_ = -1;
  pid_t attached_pid_ = 0;   // the process that owns `slot_`
  int slot_ = -1;
  char shm_name_[256] = {};  // empty for anonymous heaps
};

}  // namespace alloy
