#include "alloy/allocators/arena.h"

#include <sys/mman.h>

#include <algorithm>

#include "alloy/alloc_iface/make_vtable.h"
#include "alloy/allocators/page_allocator.h"
#include "alloy/allocators/wrong_free.h"

namespace alloy {
namespace {
// Doubling stops here so one burst cannot make the next chunk absurd.
constexpr std::size_t kMaxGrowth = std::size_t{1} << 30;
constexpr Alignment kHugePage = Alignment::from_log2(21);  // 2 MiB on x86-64
}  // namespace

Arena::Arena(Allocator child, Options options)
    : chunks_(child),
      next_size_(std::max(options.first_chunk, kHeader + 64)),
      first_size_(next_size_),
      ceiling_(options.ceiling == 0 ? kNoCeiling : options.ceiling),  // 0: deprecated "none"
      huge_pages_(options.huge_pages && child == page_allocator()) {}

Arena::~Arena() { free_chunks(ALLOY_RETURN_ADDRESS()); }

Allocator Arena::allocator() { return Allocator{this, &vtable_for<Arena>}; }

void Arena::use_chunk(Chunk* c) {
  cur_ = c->begin();
  end_ = c->end();
}

bool Arena::add_chunk(std::size_t min_size, std::size_t wanted_size,
                      std::uintptr_t ret_addr) {
  if (ceiling_ != kNoCeiling) {
    if (chunks_.bytes() >= ceiling_) return false;
    const std::size_t room = ceiling_ - chunks_.bytes();
    if (min_size > room) return false;
    wanted_size = std::min(wanted_size, room);
  }
  std::size_t size = wanted_size;
  auto alignment_for = [this](std::size_t bytes) {
    return huge_pages_ && bytes >= kHugePage.bytes() ? kHugePage : kChunkAlignment;
  };
  Chunk* c = chunks_.append(size, alignment_for(size), ret_addr);
  if (c == nullptr && wanted_size > min_size) {
    size = min_size;  // the child may still serve the bare minimum
    c = chunks_.append(size, alignment_for(size), ret_addr);
  }
  if (c == nullptr) return false;
  if (c->alignment == kHugePage) {
    madvise(c, size, MADV_HUGEPAGE);  // a hint: fine if THP is off
  }
  use_chunk(c);
  return true;
}

void* Arena::alloc_slow(std::size_t len, std::size_t align) {
  return alloc_slow_at(len, align, ALLOY_RETURN_ADDRESS());
}

void* Arena::alloc_slow_at(std::size_t len, std::size_t align, std::uintptr_t ret_addr) {
  // A chunk must hold the header, worst-case padding and the block.
  std::size_t need = 0;
  if (__builtin_add_overflow(len, kHeader + (align - 1), &need)) return nullptr;
  if (need > PTRDIFF_MAX) return nullptr;
  const std::size_t wanted = std::max(need, next_size_);
  if (!add_chunk(need, wanted, ret_addr)) return nullptr;
  next_size_ = std::min(next_size_ * 2, kMaxGrowth);
  const std::uintptr_t p = (cur_ + (align - 1)) & ~(std::uintptr_t{align} - 1);
  cur_ = p + len;
  return reinterpret_cast<void*>(p);
}

void Arena::free_chunks(std::uintptr_t ret_addr) {
  chunks_.free_all(ret_addr);
  cur_ = end_ = 0;
}

bool Arena::reset(ResetMode mode) {
  const std::uintptr_t ret_addr = ALLOY_RETURN_ADDRESS();
  if (mode.kind == ResetMode::Kind::kFreeAll || chunks_.empty()) {
    free_chunks(ret_addr);
    next_size_ = first_size_;
    return true;
  }
  std::size_t target = chunks_.bytes();
  if (mode.kind == ResetMode::Kind::kRetainWithLimit && mode.limit < target) {
    target = mode.limit;
  }
  if (target < kHeader + 64) {  // too little to be worth a chunk
    free_chunks(ret_addr);
    return true;
  }
  // Keep the newest (largest) chunk, give back the older ones.
  Chunk* keep = chunks_.last();
  chunks_.free_before(keep, ret_addr);
  if (chunks_.resize(keep, target, ret_addr)) {
    use_chunk(keep);
    return true;
  }
  // Consolidate into one chunk of the target size.
  free_chunks(ret_addr);
  return add_chunk(target, target, ret_addr);
}

std::size_t Arena::query_capacity() const { return chunks_.usable_bytes(); }

std::size_t Arena::chunk_count() const { return chunks_.count(); }

bool Arena::owns(const void* p) const { return chunks_.find(p) != nullptr; }

bool Arena::resize_last(Bytes memory, std::size_t new_len) {
  const auto start = reinterpret_cast<std::uintptr_t>(memory.data());
  if (start + memory.size() != cur_) return new_len <= memory.size();
  if (new_len > end_ - start) return false;
  cur_ = start + new_len;
  return true;
}

void* Arena::vt_alloc(void* ctx, std::size_t len, Alignment alignment,
                      std::uintptr_t ret_addr) {
  auto* self = static_cast<Arena*>(ctx);
  if (void* p = bump_take(self->cur_, self->end_, len, alignment.bytes())) [[likely]] return p;
  return self->alloc_slow_at(len, alignment.bytes(), ret_addr);  // the user's call
}

bool Arena::vt_resize(void* ctx, Bytes memory, Alignment, std::size_t new_len,
                      std::uintptr_t) {
  return static_cast<Arena*>(ctx)->resize_last(memory, new_len);
}

void* Arena::vt_remap(void* ctx, Bytes memory, Alignment, std::size_t new_len,
                      std::uintptr_t) {
  return static_cast<Arena*>(ctx)->resize_last(memory, new_len) ? memory.data() : nullptr;
}

void Arena::vt_free(void* ctx, Bytes memory, Alignment, std::uintptr_t ret_addr) {
  auto* self = static_cast<Arena*>(ctx);
  const auto start = reinterpret_cast<std::uintptr_t>(memory.data());
  WrongFree wrong = WrongFree::kNone;
  const Chunk* newest = self->chunks_.last();
  if (newest != nullptr && start >= newest->begin() && start < self->end_) {
    if (bump_apply_free(start, memory.size(), self->cur_)) return;
    wrong = WrongFree::kDouble;
  } else if (kCheckedFrees && !self->owns(memory.data())) {
    wrong = WrongFree::kForeign;
  } else {
    return;  // an older chunk: released by reset() or the destructor
  }
  ++self->refused_;
  refuse_bump_free("alloy::Arena", wrong, memory.data(), memory.size(), ret_addr);
}

}  // namespace alloy
