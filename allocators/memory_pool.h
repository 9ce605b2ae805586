// alloy::NodePool and alloy::MemoryPool<T> — fixed-size nodes with O(1)
// acquire/release through an intrusive free list.
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
// Cost: acquire/release are a few instructions (pop/push or a carve bump);
// a new slab is one child alloc. The destructor frees each slab once, never
// runs destructors of live objects (destroy() them, or use plain data).
// Thread safety: none.
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
#include "alloy/allocators/reset_mode.h"

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
  ~NodePool();
  NodePool(const NodePool&) = delete;
  NodePool& operator=(const NodePool&) = delete;

  Allocator allocator();

  // One node, or null when the child (or a fixed capacity) refuses.
  [[gnu::always_inline]] inline void* acquire() {
    if (FreeNode* n = free_) [[likely]] {
      free_ = n->next;
      ++in_use_;
      return n;
    }
    if (carve_ != carve_end_) [[likely]] {
      void* p = carve_;
      carve_ += node_size_;
      ++in_use_;
      return p;
    }
    return acquire_slow();
  }
  // Returns a node from acquire(); null is a no-op.
  [[gnu::always_inline]] inline void release(void* p) {
    if (p == nullptr) return;
    auto* n = static_cast<FreeNode*>(p);
    n->next = free_;
    free_ = n;
    --in_use_;
  }

  // Makes sure `n` more nodes can be acquired without calling the child.
  // False if the child or the fixed capacity cannot provide them.
  bool preheat(std::size_t n);
  // Every node becomes free (no destructors run). free_all returns the
  // slabs; retain_capacity keeps them; retain_with_limit(bytes) keeps whole
  // slabs, oldest first, while they fit in `bytes`. Returns true.
  bool reset(ResetMode mode = ResetMode::retain_capacity());

  std::size_t node_size() const { return node_size_; }
  Alignment node_alignment() const { return node_alignment_; }
  std::size_t in_use() const { return in_use_; }
  std::size_t capacity() const { return capacity_nodes_; }  // nodes in held slabs
  std::size_t available() const { return capacity_nodes_ - in_use_; }
  std::size_t slab_count() const;
  std::size_t slab_bytes() const { return slab_bytes_; }
  bool growable() const { return fixed_capacity_ == 0; }
  bool owns(const void* p) const;

 private:
  struct FreeNode {
    FreeNode* next;
  };
  struct Slab {
    Slab* next;
    std::size_t bytes;  // from the child, header included
    std::size_t nodes;
  };

  [[gnu::noinline]] void* acquire_slow();
  bool add_slab(std::size_t nodes);
  void start_carving(Slab* s);
  std::uintptr_t first_node(const Slab* s) const;
  std::size_t slab_size_for(std::size_t nodes) const;

  Allocator child_;
  std::size_t node_size_;
  Alignment node_alignment_;
  std::size_t next_slab_nodes_;
  std::size_t max_slab_nodes_;
  std::size_t fixed_capacity_;

  FreeNode* free_ = nullptr;
  std::byte* carve_ = nullptr;      // next never-used node in carve_slab_
  std::byte* carve_end_ = nullptr;
  Slab* carve_slab_ = nullptr;
  Slab* first_ = nullptr;
  Slab* last_ = nullptr;
  std::size_t in_use_ = 0;
  std::size_t capacity_nodes_ = 0;
  std::size_t slab_bytes_ = 0;
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

  // Constructs a T in a pooled node.
  template <class... Args>
  Result<T*> create(Args&&... args) {
    void* p = nodes_.acquire();
    if (p == nullptr) return Err(AllocError::kOutOfMemory);
    return ::new (p) T(std::forward<Args>(args)...);
  }
  // Runs ~T and returns the node. Null is a no-op.
  void destroy(T* p) {
    if (p == nullptr) return;
    p->~T();
    nodes_.release(p);
  }
  // Uninitialised node for a T (or null) and its return.
  T* allocate() { return static_cast<T*>(nodes_.acquire()); }
  void deallocate(T* p) { nodes_.release(p); }

  bool preheat(std::size_t n) { return nodes_.preheat(n); }
  bool reset(ResetMode mode = ResetMode::retain_capacity()) { return nodes_.reset(mode); }
  Allocator allocator() { return nodes_.allocator(); }
  NodePool& nodes() { return nodes_; }
  const NodePool& nodes() const { return nodes_; }
  std::size_t in_use() const { return nodes_.in_use(); }
  std::size_t capacity() const { return nodes_.capacity(); }

 private:
  NodePool nodes_;
};

}  // namespace alloy
