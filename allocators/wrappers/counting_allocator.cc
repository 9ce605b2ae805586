#include "allocators/wrappers/counting_allocator.h"

namespace alloy {
namespace {
constexpr auto kRelaxed = std::memory_order_relaxed;
}  // namespace

CountingStats CountingAllocator::stats() const {
  CountingStats s;
  s.live_blocks = live_blocks_.load(kRelaxed);
  s.live_bytes = live_bytes_.load(kRelaxed);
  s.peak_bytes = peak_bytes_.load(kRelaxed);
  s.allocs = allocs_.load(kRelaxed);
  s.alloc_failures = alloc_failures_.load(kRelaxed);
  s.resizes = resizes_.load(kRelaxed);
  s.resize_failures = resize_failures_.load(kRelaxed);
  s.remaps = remaps_.load(kRelaxed);
  s.remap_failures = remap_failures_.load(kRelaxed);
  s.frees = frees_.load(kRelaxed);
  return s;
}

void CountingAllocator::reset_totals() {
  peak_bytes_.store(live_bytes_.load(kRelaxed), kRelaxed);
  for (auto* c : {&allocs_, &alloc_failures_, &resizes_, &resize_failures_, &remaps_,
                  &remap_failures_, &frees_}) {
    c->store(0, kRelaxed);
  }
}

void CountingAllocator::add_live(std::size_t bytes) {
  const std::size_t now = live_bytes_.fetch_add(bytes, kRelaxed) + bytes;
  std::size_t peak = peak_bytes_.load(kRelaxed);
  while (now > peak && !peak_bytes_.compare_exchange_weak(peak, now, kRelaxed)) {
  }
}

void CountingAllocator::change_live(std::size_t old_len, std::size_t new_len) {
  if (new_len > old_len) {
    add_live(new_len - old_len);
  } else {
    live_bytes_.fetch_sub(old_len - new_len, kRelaxed);
  }
}

void* CountingAllocator::do_alloc(void* ctx, std::size_t len, Alignment alignment,
                                  std::uintptr_t ret_addr) {
  auto* self = static_cast<CountingAllocator*>(ctx);
  self->allocs_.fetch_add(1, kRelaxed);
  void* p = self->child_.raw_alloc(len, alignment, ret_addr);
  if (p == nullptr) {
    self->alloc_failures_.fetch_add(1, kRelaxed);
    return nullptr;
  }
  self->live_blocks_.fetch_add(1, kRelaxed);
  self->add_live(len);
  return p;
}

bool CountingAllocator::do_resize(void* ctx, Bytes memory, Alignment alignment,
                                  std::size_t new_len, std::uintptr_t ret_addr) {
  auto* self = static_cast<CountingAllocator*>(ctx);
  self->resizes_.fetch_add(1, kRelaxed);
  if (!self->child_.raw_resize(memory, alignment, new_len, ret_addr)) {
    self->resize_failures_.fetch_add(1, kRelaxed);
    return false;
  }
  self->change_live(memory.size(), new_len);
  return true;
}

void* CountingAllocator::do_remap(void* ctx, Bytes memory, Alignment alignment,
                                  std::size_t new_len, std::uintptr_t ret_addr) {
  auto* self = static_cast<CountingAllocator*>(ctx);
  self->remaps_.fetch_add(1, kRelaxed);
  void* p = self->child_.raw_remap(memory, alignment, new_len, ret_addr);
  if (p == nullptr) {
    self->remap_failures_.fetch_add(1, kRelaxed);
    return nullptr;
  }
  self->change_live(memory.size(), new_len);
  return p;
}

void CountingAllocator::do_free(void* ctx, Bytes memory, Alignment alignment,
                                std::uintptr_t ret_addr) {
  auto* self = static_cast<CountingAllocator*>(ctx);
  self->frees_.fetch_add(1, kRelaxed);
  self->live_blocks_.fetch_sub(1, kRelaxed);
  self->live_bytes_.fetch_sub(memory.size(), kRelaxed);
  self->child_.raw_free(memory, alignment, ret_addr);
}

}  // namespace alloy
