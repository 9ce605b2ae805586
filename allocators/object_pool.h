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
// Wrong puts: every slot carries a state word keyed to its address and to
// this pool. put() of an object that is already available (a double put), or
// whose slot does not carry this pool's in-use state (an object of another
// ObjectPool), is REFUSED in every build: the
// reset hook does not run, nothing is listed twice, stats() do not move; the
// refusal is counted (refused_frees()), kept (last_wrong_free()) and reported
// on stderr with the caller's address. Not caught: a pointer that is not the
// start of an object in some pool's slot (foreign, interior) — put() reads
// the word just below the object, so such a pointer is undefined behaviour
// (under ASan, a report); and a double put after the object was handed out
// again (it is a put of the new owner's object). Only pass pointers from get().
//
// Cost: get/put of a pooled object are a list pop/push plus the hook call;
// building a new object is one child alloc plus the constructor hook.
// Thread safety: none. The destructor destroys available objects; objects
// still out (in_use) at that point are reported to stderr and leaked,
// never freed under the caller's feet.
// Return addresses: a new object's memory is asked of the child with the
// address of the user's get() or preheat() call; memory goes back with the
// address of the shrink() or of the scope end that destroyed the pool.
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
#include "alloy/allocators/wrong_free.h"

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
  ALLOY_HELPER ~ObjectPool() {
    (void)shrink_at(0, ALLOY_RETURN_ADDRESS());
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
  // cannot provide memory for a new one. Inlined into the caller
  // (ALLOY_INLINE_ENTRY): a new object's memory is asked of the child with
  // the address of the caller's call.
  ALLOY_INLINE_ENTRY Result<T*> get() {
    if (Slot* s = available_) [[likely]] {
      available_ = s->next;
      s->state = tag(s, kInUse);
      --stats_.available;
      ++stats_.in_use;
      return s->object();
    }
    return get_new();
  }

  // Runs the reset hook and keeps `p` for the next get(). Null is a no-op
  // (true); a wrong put is refused and reported (false, see above).
  [[gnu::noinline]] bool put(T* p) {
    if (p == nullptr) return true;
    Slot* s = Slot::of(p);
    if (s->state != tag(s, kInUse)) {
      log_.refuse("alloy::ObjectPool", s->state == tag(s, kAvailable) ? WrongFree::kDouble
                                                                      : WrongFree::kForeign,
                  p, sizeof(T), ALLOY_RETURN_ADDRESS(),
                  s->state == tag(s, kAvailable) ? "the object is already available"
                                                 : "not an object this pool handed out");
      return false;
    }
    if (hooks_.reset) hooks_.reset(*p);
    make_available(s);
    --stats_.in_use;
    return true;
  }

  std::size_t refused_frees() const { return log_.count(); }
  WrongFreeRecord last_wrong_free() const { return log_.last(); }
  // stderr reports are on by default; tests of the refusal path may mute them.
  void set_report_to_stderr(bool on) { log_.set_report(on); }

  // Builds objects until `n` are available (false if the child refuses).
  // The child sees the caller's address.
  ALLOY_HELPER bool preheat(std::size_t n) {
    const std::uintptr_t ret_addr = ALLOY_RETURN_ADDRESS();
    while (stats_.available < n) {
      Slot* s = build(ret_addr);
      if (s == nullptr) return false;
      make_available(s);
    }
    return true;
  }

  // Destroys available objects until at most `target` remain; returns how
  // many were destroyed (their memory goes back to the child, with the
  // caller's address).
  ALLOY_HELPER std::size_t shrink(std::size_t target) {
    return shrink_at(target, ALLOY_RETURN_ADDRESS());
  }

  Stats stats() const { return stats_; }

 private:
  std::size_t shrink_at(std::size_t target, std::uintptr_t ret_addr) {
    std::size_t destroyed = 0;
    while (stats_.available > target && available_ != nullptr) {
      Slot* s = available_;
      available_ = s->next;
      s->state = 0;  // a put() of it from now on is not mistaken for ours
      s->object()->~T();
      child_.raw_free(Bytes(reinterpret_cast<std::byte*>(s), sizeof(Slot)),
                      Alignment::of<Slot>(), ret_addr);
      --stats_.available;
      ++destroyed;
    }
    return destroyed;
  }

  struct Slot {
    Slot* next = nullptr;
    std::uintptr_t state = 0;  // tag(this, kInUse / kAvailable)
    alignas(T) unsigned char storage[sizeof(T)];

    T* object() { return std::launder(reinterpret_cast<T*>(storage)); }
    static Slot* of(T* p) {
      return reinterpret_cast<Slot*>(reinterpret_cast<unsigned char*>(p) -
                                     offsetof(Slot, storage));
    }
  };

  static constexpr std::uintptr_t kInUse = 0x6f626a2d75736564;      // "obj-used"
  static constexpr std::uintptr_t kAvailable = 0x6f626a2d66726565;  // "obj-free"
  // A slot's state word: keyed to the slot's address and to this pool.
  std::uintptr_t tag(const Slot* s, std::uintptr_t state) const {
    return state ^ reinterpret_cast<std::uintptr_t>(s) ^
           (reinterpret_cast<std::uintptr_t>(this) << 1);
  }
  void make_available(Slot* s) {
    s->state = tag(s, kAvailable);
    s->next = available_;
    available_ = s;
    ++stats_.available;
  }

  // get()'s slow path: its return address is the caller's call.
  ALLOY_HELPER Result<T*> get_new() {
    Slot* s = build(ALLOY_RETURN_ADDRESS());
    if (s == nullptr) return Err(AllocError::kOutOfMemory);
    s->state = tag(s, kInUse);
    ++stats_.in_use;
    return s->object();
  }

  // A new object (constructor hook), counted as created; null if the child
  // refuses the memory, which is asked for with `ret_addr`.
  Slot* build(std::uintptr_t ret_addr) {
    void* memory = child_.raw_alloc(sizeof(Slot), Alignment::of<Slot>(), ret_addr);
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
  WrongFreeLog log_;
};

}  // namespace alloy
