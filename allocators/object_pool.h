// alloy::ObjectPool<T> — reuse of fully constructed objects, with hooks.
//
// Objects that are expensive to build (buffers with capacity, parsers,
// connections) are kept alive between uses: get() hands out an available
// object, or builds a new one with the constructor hook when none is
// available; put() runs the reset hook (to clear per-use state) and keeps
// the object for the next get(). shrink(target) destroys available objects
// until at most `target` remain and gives their memory back to the child.
// stats() reports {available, in_use, total_created}.
//
// Cost: get/put of a pooled object are a list pop/push plus the hook call;
// building a new object is one child alloc plus the constructor hook.
// Thread safety: none. The destructor destroys available objects; objects
// still out (in_use) at that point are reported to stderr and leaked,
// never freed under the caller's feet.
//
// Example:
//   alloy::ObjectPool<std::string> pool(alloy::c_allocator(),
//       {.construct = [](void* m) { auto* s = new (m) std::string; s->reserve(4096); return s; },
//        .reset = [](std::string& s) { s.clear(); }});     // capacity survives
//   std::string* buf = pool.get().value_or(nullptr);
//   pool.put(buf);
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <new>

#include "alloy/alloc_iface/allocator.h"

namespace alloy {

template <class T>
class ObjectPool {
 public:
  struct Hooks {
    // Builds an object in `memory` (placement new) and returns it.
    std::function<T*(void* memory)> construct;
    // Returns a used object to a clean state; runs in put().
    std::function<void(T&)> reset;
  };
  struct Stats {
    std::size_t available = 0;
    std::size_t in_use = 0;
    std::size_t total_created = 0;  // constructor hook calls, ever
  };

  explicit ObjectPool(Allocator child) : ObjectPool(child, Hooks{}) {}
  ObjectPool(Allocator child, Hooks hooks) : child_(child), hooks_(std::move(hooks)) {}
  ~ObjectPool() {
    (void)shrink(0);
    if (stats_.in_use != 0) {
      std::fprintf(stderr,
                   "alloy::ObjectPool: destroyed with %zu objects still in use; "
                   "they are leaked, not freed\n",
                   stats_.in_use);
    }
  }
  ObjectPool(const ObjectPool&) = delete;
  ObjectPool& operator=(const ObjectPool&) = delete;

  // An available object, or a newly constructed one; an error if the child
  // cannot provide memory for a new one.
  Result<T*> get() {
    if (Slot* s = available_) {
      available_ = s->next;
      --stats_.available;
      ++stats_.in_use;
      return s->object();
    }
    Slot* s = build();
    if (s == nullptr) return Err(AllocError::kOutOfMemory);
    ++stats_.in_use;
    return s->object();
  }

  // Runs the reset hook and keeps `p` for the next get(). Null is a no-op.
  void put(T* p) {
    if (p == nullptr) return;
    if (hooks_.reset) hooks_.reset(*p);
    Slot* s = Slot::of(p);
    s->next = available_;
    available_ = s;
    --stats_.in_use;
    ++stats_.available;
  }

  // Builds objects until `n` are available (false if the child refuses).
  bool preheat(std::size_t n) {
    while (stats_.available < n) {
      Slot* s = build();
      if (s == nullptr) return false;
      s->next = available_;
      available_ = s;
      ++stats_.available;
    }
    return true;
  }

  // Destroys available objects until at most `target` remain; returns how
  // many were destroyed (their memory goes back to the child).
  std::size_t shrink(std::size_t target) {
    std::size_t destroyed = 0;
    while (stats_.available > target && available_ != nullptr) {
      Slot* s = available_;
      available_ = s->next;
      s->object()->~T();
      child_.raw_free(Bytes(reinterpret_cast<std::byte*>(s), sizeof(Slot)),
                      Alignment::of<Slot>(), ALLOY_RETURN_ADDRESS());
      --stats_.available;
      ++destroyed;
    }
    return destroyed;
  }

  Stats stats() const { return stats_; }

 private:
  struct Slot {
    Slot* next = nullptr;
    alignas(T) unsigned char storage[sizeof(T)];

    T* object() { return std::launder(reinterpret_cast<T*>(storage)); }
    static Slot* of(T* p) {
      return reinterpret_cast<Slot*>(reinterpret_cast<unsigned char*>(p) -
                                     offsetof(Slot, storage));
    }
  };

  // A new object (constructor hook), counted as created; null if the child
  // refuses the memory.
  Slot* build() {
    void* memory = child_.raw_alloc(sizeof(Slot), Alignment::of<Slot>(),
                                    ALLOY_RETURN_ADDRESS());
    if (memory == nullptr) return nullptr;
    auto* s = ::new (memory) Slot;
    if (hooks_.construct) {
      hooks_.construct(s->storage);
    } else {
      ::new (static_cast<void*>(s->storage)) T();
    }
    ++stats_.total_created;
    return s;
  }

  Allocator child_;
  Hooks hooks_;
  Slot* available_ = nullptr;
  Stats stats_;
};

}  // namespace alloy
