// alloy::NodePool and alloy::MemoryPool<T> — fixed-size nodes with O(1)
// acquire and checked release through an intrusive free list.
//
// NodePool (untyped) hands out nodes of one size and alignment. Nodes are
// carved lazily from slabs taken from a child allocator; slabs double in
// node count (up to a cap) as the pool grows. A released node stores the
// free-list link in its own first word, so there is no per-node header.
// preheat(n) takes the slabs for n more nodes up front; a non-growable pool
// (Options::capacity) holds exactly that many nodes and refuses (null) past
// it; reset(mode) makes every node free again at once and keeps or gives
// back slabs per ResetMode. MemoryPool<T, Align> is the typed face:
// create(args...) / destroy(p), with an optional stronger alignment.
// Through the handle, alloc serves len <= node size and alignment <= node
// alignment (others get null); free takes the node back.
//
// Optional entries (NodePool's handle, MemoryPool's too): alloc_at_least
// reports node_size(); owns() (a walk of the slabs) is the handle's owns; no
// zeroed entry.
//
// Wrong frees (release(), MemoryPool::destroy/deallocate, the handle's free)
// are REFUSED: the node is not put on the free list, in_use() does not move,
// ~T is not run, and the refusal is counted (refused_frees()), kept
// (last_wrong_free()) and printed to stderr with the caller's address. Caught
// in every build: a pointer outside the nodes this pool has handed out
// (foreign, another pool's, or a node of a retained slab not handed out since
// the last reset), a pointer inside a node but not at its start (interior,
// misaligned), and through the handle a length larger than the node (wrong
// size). Caught in checked builds only (no NDEBUG, or a sanitizer; see
// allocators/wrong_free.h): a double free, found by a per-node free mark and
// confirmed by walking the free list, so a node is never handed out twice.
// Release builds do not check double frees; nobody can check a double free
// of a node that was handed out again in between (it is a free of the new
// owner's node). In checked builds a node is at least two words.
//
// Cost: acquire is a few instructions (pop or a carve bump); release of a
// node from the slab being carved is a range check, a modulo and a push,
// others walk the slab list once (O(slabs), cached for the last slab hit);
// checked builds always take the walk and add the mark test (and a free-list
// walk when the mark is set). A new slab is one child alloc. The destructor
// frees each slab once, never runs destructors of live objects (destroy()
// them, or use plain data).
// Thread safety: none.
// Return addresses: a slab is asked of the child with the address of the
// user's call that needed it (the ret_addr the handle passed in, or the call
// of acquire/create/allocate/preheat); slabs go back with the address of the
// reset() or of the scope end that destroyed the pool.
//
// Example:
//   alloy::MemoryPool<Order> orders(alloy::c_allocator());
//   orders.preheat(10000);                               // no child calls later
//   Order* o = orders.create(id, price).value_or(nullptr);
//   ...
//   orders.destroy(o);                                   // back on the free list
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/allocators/internal/chunk_list.h"
#include "alloy/allocators/reset_mode.h"
#include "alloy/allocators/wrong_free.h"

namespace alloy {

class NodePool {
 public:
  struct Options {
    std::size_t first_slab_nodes = 64;       // nodes in the first slab; doubles
    std::size_t max_slab_nodes = 64 * 1024;  // growth cap per slab
    std::size_t capacity = 0;                // >0: non-growable, exactly this many nodes
  };

  NodePool(Allocator child, std::size_t node_size, Alignment node_alignment)
      : NodePool(child, node_size, node_alignment, Options{}) {}
  NodePool(Allocator child, std::size_t node_size, Alignment node_alignment,
           Options options);
  ALLOY_HELPER ~NodePool();
  NodePool(const NodePool&) = delete;
  NodePool& operator=(const NodePool&) = delete;

  Allocator allocator();

  // One node, or null when the child (or a fixed capacity) refuses. Inlined
  // into the caller (ALLOY_INLINE_ENTRY): a new slab is asked of the child
  // with the address of the caller's call.
  ALLOY_INLINE_ENTRY void* acquire() {
    if (void* p = take()) [[likely]] return p;
    return acquire_slow();
  }
  // Returns a node from acquire(); null is a no-op (true). A wrong free is
  // refused and reported (false); see the header comment. `ret_addr` names
  // the caller in the report (0: the address release() was called from).
  [[gnu::always_inline]] inline bool release(void* p, std::uintptr_t ret_addr = 0) {
    if (p == nullptr) return true;
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    if (!kCheckedFrees && a >= carve_lo_ && a < reinterpret_cast<std::uintptr_t>(carve_) &&
        (a - carve_lo_) % node_size_ == 0) [[likely]] {
      push(static_cast<FreeNode*>(p));
      return true;
    }
    return release_slow(p, 0, ret_addr);
  }
  // As release(), through the handle: `len` (the length the caller holds)
  // larger than the node is a wrong size.
  bool release_sized(void* p, std::size_t len, std::uintptr_t ret_addr);

  // Makes sure `n` more nodes can be acquired without calling the child.
  // False if the child or the fixed capacity cannot provide them.
  // The child sees the caller's address.
  ALLOY_HELPER bool preheat(std::size_t n);
  // Every node becomes free (no destructors run). free_all returns the
  // slabs; retain_capacity keeps them; retain_with_limit(bytes) keeps whole
  // slabs, oldest first, while they fit in `bytes`. Returns true. The
  // child's frees carry the caller's address.
  ALLOY_HELPER bool reset(ResetMode mode = ResetMode::retain_capacity());

  std::size_t node_size() const { return node_size_; }
  Alignment node_alignment() const { return node_alignment_; }
  std::size_t in_use() const { return in_use_; }
  std::size_t capacity() const { return capacity_nodes_; }  // nodes in held slabs
  std::size_t available() const { return capacity_nodes_ - in_use_; }
  std::size_t slab_count() const;
  std::size_t slab_bytes() const { return slabs_.bytes(); }
  bool growable() const { return fixed_capacity_ == 0; }
  bool owns(const void* p) const;

  // Wrong frees refused so far, and the last one.
  std::size_t refused_frees() const { return log_.count(); }
  WrongFreeRecord last_wrong_free() const { return log_.last(); }
  // stderr reports are on by default; tests of the refusal path may mute them.
  void set_report_to_stderr(bool on) { log_.set_report(on); }

 private:
  template <class, std::size_t>
  friend class MemoryPool;

  struct FreeNode {
    FreeNode* next;
#if ALLOY_CHECKED_FREES
    std::uintptr_t mark;  // free_mark(this) while on the free list
#endif
  };
  static std::uintptr_t free_mark(const void* n) {
    return reinterpret_cast<std::uintptr_t>(n) ^ std::uintptr_t{0x9e3779b97f4a7c15};
  }
  [[gnu::always_inline]] static void clear_mark([[maybe_unused]] FreeNode* n) {
#if ALLOY_CHECKED_FREES
    n->mark = 0;
#endif
  }
  [[gnu::always_inline]] inline void push(FreeNode* n) {
    n->next = free_;
#if ALLOY_CHECKED_FREES
    n->mark = free_mark(n);
#endif
    free_ = n;
    --in_use_;
  }
  // What is wrong with freeing `p` (`len` bytes; 0: not known), or kNone.
  WrongFree check_free(const void* p, std::size_t len) const;
  // check_free, then refuse and report or push. `ret_addr` 0: our caller.
  [[gnu::noinline]] bool release_slow(void* p, std::size_t len, std::uintptr_t ret_addr);
  // A slab is a chunk of the family's chunk list
  // (allocators/internal/chunk_list.h); its `user` word counts its nodes.
  using Slab = internal::Chunk;

  // A node from the free list or the slab being carved, or null.
  [[gnu::always_inline]] inline void* take() {
    if (FreeNode* n = free_) [[likely]] {
      free_ = n->next;
      ++in_use_;
      clear_mark(n);
      return n;
    }
    if (carve_ != carve_end_) [[likely]] {
      void* p = carve_;
      carve_ += node_size_;
      ++in_use_;
      clear_mark(static_cast<FreeNode*>(p));
      return p;
    }
    return nullptr;
  }
  struct Entries;  // the handle's table (memory_pool.cc)
  // acquire()'s slow path: its return address is the caller's call.
  ALLOY_HELPER void* acquire_slow();
  // A node from the next slab (a new one from the child, given `ret_addr`).
  void* acquire_slow_at(std::uintptr_t ret_addr);
  bool preheat_at(std::size_t n, std::uintptr_t ret_addr);
  bool reset_at(ResetMode mode, std::uintptr_t ret_addr);
  bool add_slab(std::size_t nodes, std::uintptr_t ret_addr);
  void start_carving(Slab* s);
  std::uintptr_t first_node(const Slab* s) const;
  std::size_t slab_size_for(std::size_t nodes) const;

  internal::ChunkList slabs_;  // oldest first
  std::size_t node_size_;
  Alignment node_alignment_;
  std::size_t next_slab_nodes_;
  std::size_t max_slab_nodes_;
  std::size_t fixed_capacity_;

  FreeNode* free_ = nullptr;
  std::byte* carve_ = nullptr;      // next never-used node in carve_slab_
  std::byte* carve_end_ = nullptr;
  std::uintptr_t carve_lo_ = 0;     // first node of carve_slab_
  Slab* carve_slab_ = nullptr;
  mutable const Slab* hit_ = nullptr;  // last fully carved slab a free was found in
  std::size_t in_use_ = 0;
  std::size_t capacity_nodes_ = 0;
  WrongFreeLog log_;
};

// Typed pool. Align raises the node alignment above alignof(T) (the
// "aligned pool": e.g. MemoryPool<Packet, 64> for cache-line nodes).
template <class T, std::size_t Align = alignof(T)>
class MemoryPool {
  static_assert(Align >= alignof(T) && (Align & (Align - 1)) == 0,
                "Align must be a power of two, at least alignof(T)");

 public:
  static constexpr std::size_t kNodeAlign =
      Align > alignof(void*) ? Align : alignof(void*);
  static constexpr std::size_t kNodeSize =
      ((sizeof(T) > sizeof(void*) ? sizeof(T) : sizeof(void*)) + kNodeAlign - 1) /
      kNodeAlign * kNodeAlign;

  explicit MemoryPool(Allocator child, NodePool::Options options = {})
      : nodes_(child, kNodeSize, *Alignment::from_bytes(kNodeAlign), options) {}
  // Inlined, so the slabs go back with the address of the caller's scope end.
  ALLOY_INLINE_ENTRY ~MemoryPool() {}
  MemoryPool(const MemoryPool&) = delete;
  MemoryPool& operator=(const MemoryPool&) = delete;

  // Constructs a T in a pooled node. This entry and the ones below are
  // inlined into the caller (ALLOY_INLINE_ENTRY), so the child sees the
  // caller's address when a new slab is needed.
  template <class... Args>
  ALLOY_INLINE_ENTRY Result<T*> create(Args&&... args) {
    void* p = nodes_.acquire();
    if (p == nullptr) return Err(AllocError::kOutOfMemory);
    return ::new (p) T(std::forward<Args>(args)...);
  }
  // Runs ~T and returns the node. Null is a no-op. A wrong free is refused
  // before ~T runs (see NodePool) and returns false.
  [[gnu::noinline]] bool destroy(T* p) {
    if (p == nullptr) return true;
    const WrongFree wrong = nodes_.check_free(p, sizeof(T));
    if (wrong != WrongFree::kNone) {
      nodes_.log_.refuse("alloy::MemoryPool", wrong, p, sizeof(T), ALLOY_RETURN_ADDRESS());
      return false;
    }
    p->~T();
    nodes_.push(reinterpret_cast<NodePool::FreeNode*>(p));
    return true;
  }
  // Uninitialised node for a T (or null) and its return (false if refused).
  ALLOY_INLINE_ENTRY T* allocate() { return static_cast<T*>(nodes_.acquire()); }
  ALLOY_INLINE_ENTRY bool deallocate(T* p) { return nodes_.release(p); }

  ALLOY_INLINE_ENTRY bool preheat(std::size_t n) { return nodes_.preheat(n); }
  ALLOY_INLINE_ENTRY bool reset(ResetMode mode = ResetMode::retain_capacity()) {
    return nodes_.reset(mode);
  }
  Allocator allocator() { return nodes_.allocator(); }
  NodePool& nodes() { return nodes_; }
  const NodePool& nodes() const { return nodes_; }
  std::size_t in_use() const { return nodes_.in_use(); }
  std::size_t capacity() const { return nodes_.capacity(); }
  std::size_t refused_frees() const { return nodes_.refused_frees(); }
  WrongFreeRecord last_wrong_free() const { return nodes_.last_wrong_free(); }
  void set_report_to_stderr(bool on) { nodes_.set_report_to_stderr(on); }

 private:
  NodePool nodes_;
};

}  // namespace alloy
