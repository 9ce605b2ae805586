#include "alloy/allocators/memory_pool.h"

#include <algorithm>

#include "alloy/alloc_iface/make_vtable.h"

namespace alloy {

struct NodePool::Entries {
  // A new slab is asked for with the handle's ret_addr.
  static void* vt_alloc(void* ctx, std::size_t len, Alignment alignment,
                        std::uintptr_t ret_addr) {
    auto* pool = static_cast<NodePool*>(ctx);
    if (len > pool->node_size() || alignment > pool->node_alignment()) return nullptr;
    if (void* p = pool->take()) [[likely]] return p;
    return pool->acquire_slow_at(ret_addr);
  }
  static bool vt_resize(void* ctx, Bytes, Alignment, std::size_t new_len, std::uintptr_t) {
    return new_len <= static_cast<NodePool*>(ctx)->node_size();
  }
  static void* vt_remap(void* ctx, Bytes memory, Alignment, std::size_t new_len,
                        std::uintptr_t) {
    return new_len <= static_cast<NodePool*>(ctx)->node_size() ? memory.data() : nullptr;
  }
  static void vt_free(void* ctx, Bytes memory, Alignment, std::uintptr_t ret_addr) {
    (void)static_cast<NodePool*>(ctx)->release_sized(memory.data(), memory.size(), ret_addr);
  }
  static Ownership vt_owns(void* ctx, const void* p) {
    return ownership(static_cast<NodePool*>(ctx)->owns(p));
  }
  // Size feedback: every node is node_size() bytes.
  static Bytes vt_alloc_at_least(void* ctx, std::size_t len, Alignment alignment,
                                 std::uintptr_t ret_addr) {
    void* p = vt_alloc(ctx, len, alignment, ret_addr);
    if (p == nullptr) return Bytes();
    return Bytes(static_cast<std::byte*>(p), static_cast<NodePool*>(ctx)->node_size());
  }
};

NodePool::NodePool(Allocator child, std::size_t node_size, Alignment node_alignment,
                   Options options)
    : slabs_(child),
      node_alignment_(node_alignment.max(Alignment::of<FreeNode>())),
      next_slab_nodes_(std::max<std::size_t>(options.first_slab_nodes, 1)),
      max_slab_nodes_(std::max(options.max_slab_nodes, next_slab_nodes_)),
      fixed_capacity_(options.capacity) {
  // Every node must hold a link and keep its successor aligned.
  const std::size_t a = node_alignment_.bytes();
  node_size_ = (std::max(node_size, sizeof(FreeNode)) + a - 1) / a * a;
}

NodePool::~NodePool() { (void)reset_at(ResetMode::free_all(), ALLOY_RETURN_ADDRESS()); }

Allocator NodePool::allocator() { return Allocator{this, &vtable_for<Entries>}; }

std::uintptr_t NodePool::first_node(const Slab* s) const {
  return node_alignment_.forward(s->begin());
}

std::size_t NodePool::slab_size_for(std::size_t nodes) const {
  std::size_t body = 0;
  if (__builtin_mul_overflow(nodes, node_size_, &body)) return 0;
  std::size_t total = 0;
  if (__builtin_add_overflow(body, internal::kChunkHeader + node_alignment_.bytes(), &total)) {
    return 0;
  }
  return total;
}

void NodePool::start_carving(Slab* s) {
  carve_slab_ = s;
  carve_lo_ = first_node(s);
  carve_ = reinterpret_cast<std::byte*>(carve_lo_);
  carve_end_ = carve_ + s->user * node_size_;
}

bool NodePool::add_slab(std::size_t nodes, std::uintptr_t ret_addr) {
  const std::size_t bytes = slab_size_for(nodes);
  if (bytes == 0 || bytes > PTRDIFF_MAX) return false;
  const Alignment slab_alignment = node_alignment_.max(Alignment::of<Slab>());
  Slab* s = slabs_.append(bytes, slab_alignment, ret_addr);
  if (s == nullptr) return false;
  s->user = nodes;
  capacity_nodes_ += nodes;
  return true;
}

void* NodePool::acquire_slow() { return acquire_slow_at(ALLOY_RETURN_ADDRESS()); }

void* NodePool::acquire_slow_at(std::uintptr_t ret_addr) {
  // Move on to a retained slab that has never been carved since the reset.
  if (carve_slab_ != nullptr && carve_slab_->next != nullptr) {
    start_carving(carve_slab_->next);
    return take();
  }
  std::size_t nodes = next_slab_nodes_;
  if (!growable()) {
    if (capacity_nodes_ >= fixed_capacity_) return nullptr;  // fixed pool is full
    nodes = fixed_capacity_ - capacity_nodes_;
  }
  if (!add_slab(nodes, ret_addr)) return nullptr;
  if (growable()) next_slab_nodes_ = std::min(next_slab_nodes_ * 2, max_slab_nodes_);
  start_carving(slabs_.last());
  return take();
}

bool NodePool::preheat(std::size_t n) { return preheat_at(n, ALLOY_RETURN_ADDRESS()); }

bool NodePool::preheat_at(std::size_t n, std::uintptr_t ret_addr) {
  std::size_t want = 0;
  if (__builtin_add_overflow(in_use_, n, &want)) return false;
  if (!growable() && want > fixed_capacity_) return false;
  if (want <= capacity_nodes_) return true;
  std::size_t missing = want - capacity_nodes_;
  if (!growable()) missing = fixed_capacity_ - capacity_nodes_;  // the whole pool at once
  const std::size_t nodes = std::max(missing, growable() ? next_slab_nodes_ : missing);
  if (!add_slab(nodes, ret_addr)) return false;
  if (growable()) next_slab_nodes_ = std::min(next_slab_nodes_ * 2, max_slab_nodes_);
  if (carve_slab_ == nullptr) start_carving(slabs_.first());
  return true;
}

bool NodePool::reset(ResetMode mode) { return reset_at(mode, ALLOY_RETURN_ADDRESS()); }

bool NodePool::reset_at(ResetMode mode, std::uintptr_t ret_addr) {
  std::size_t budget = SIZE_MAX;
  if (mode.kind == ResetMode::Kind::kFreeAll) budget = 0;
  if (mode.kind == ResetMode::Kind::kRetainWithLimit) budget = mode.limit;
  // Keep slabs oldest-first while they fit in the budget, free the rest.
  Slab* keep_last = nullptr;
  std::size_t kept_bytes = 0;
  std::size_t kept_nodes = 0;
  for (Slab* s = slabs_.first(); s != nullptr && s->size <= budget - kept_bytes; s = s->next) {
    kept_bytes += s->size;
    kept_nodes += s->user;
    keep_last = s;
  }
  slabs_.free_after(keep_last, ret_addr);
  capacity_nodes_ = kept_nodes;
  free_ = nullptr;
  in_use_ = 0;
  hit_ = nullptr;
  if (!slabs_.empty()) {
    start_carving(slabs_.first());
  } else {
    carve_slab_ = nullptr;
    carve_ = carve_end_ = nullptr;
    carve_lo_ = 0;
  }
  return true;
}

std::size_t NodePool::slab_count() const { return slabs_.count(); }

bool NodePool::owns(const void* p) const {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  for (const Slab* s = slabs_.first(); s != nullptr; s = s->next) {
    const std::uintptr_t lo = first_node(s);
    if (a >= lo && a < lo + s->user * node_size_) return true;
  }
  return false;
}

// Nodes handed out since the last reset: every slab before carve_slab_ in
// the list (fully carved), and carve_slab_ up to carve_. Retained slabs after
// it have handed out nothing yet.
WrongFree NodePool::check_free(const void* p, std::size_t len) const {
  if (len > node_size_) return WrongFree::kWrongSize;
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  std::uintptr_t lo = 0;
  if (carve_slab_ != nullptr && a >= carve_lo_ &&
      a < carve_lo_ + carve_slab_->user * node_size_) {
    if (a >= reinterpret_cast<std::uintptr_t>(carve_)) return WrongFree::kForeign;
    lo = carve_lo_;
  } else if (hit_ != nullptr && a >= first_node(hit_) &&
             a < first_node(hit_) + hit_->user * node_size_) {
    lo = first_node(hit_);
  } else {
    for (const Slab* s = slabs_.first(); s != nullptr && s != carve_slab_; s = s->next) {
      const std::uintptr_t first = first_node(s);
      if (a >= first && a < first + s->user * node_size_) {
        lo = first;
        hit_ = s;
        break;
      }
    }
    if (lo == 0) return WrongFree::kForeign;
  }
  if ((a - lo) % node_size_ != 0) return WrongFree::kInterior;
#if ALLOY_CHECKED_FREES
  // The mark says "probably free"; the free list says for sure (user data
  // that happens to equal the mark costs a walk, never a refusal).
  if (static_cast<const FreeNode*>(p)->mark == free_mark(p)) {
    for (const FreeNode* n = free_; n != nullptr; n = n->next) {
      if (n == p) return WrongFree::kDouble;
    }
  }
#endif
  return WrongFree::kNone;
}

bool NodePool::release_slow(void* p, std::size_t len, std::uintptr_t ret_addr) {
  if (ret_addr == 0) ret_addr = ALLOY_RETURN_ADDRESS();
  const WrongFree wrong = check_free(p, len);
  if (wrong != WrongFree::kNone) {
    log_.refuse("alloy::NodePool", wrong, p, len, ret_addr);
    return false;
  }
  push(static_cast<FreeNode*>(p));
  return true;
}

bool NodePool::release_sized(void* p, std::size_t len, std::uintptr_t ret_addr) {
  if (p == nullptr) return true;
  return release_slow(p, len, ret_addr);
}

}  // namespace alloy
