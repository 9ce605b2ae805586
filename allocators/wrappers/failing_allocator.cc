#include "alloy/allocators/wrappers/failing_allocator.h"

namespace alloy {
namespace {

constexpr auto kRelaxed = std::memory_order_relaxed;

bool index_hit(std::size_t index, std::size_t target, bool keep_failing) {
  return keep_failing ? index >= target : index == target;
}

// Keeps the first failing call's address: later failures (keep_failing) do
// not overwrite it.
void remember(std::atomic<std::uintptr_t>& slot, std::uintptr_t ret_addr) {
  // A zero return address would read as "no failure"; keep it recognisable.
  const std::uintptr_t value = ret_addr != 0 ? ret_addr : 1;
  std::uintptr_t expected = 0;
  slot.compare_exchange_strong(expected, value, kRelaxed);
}

}  // namespace

FailingAllocator::FailingAllocator(Allocator child, Options options)
    : child_(child), options_(options) {}

void FailingAllocator::reset() { reset(options_); }

void FailingAllocator::reset(Options options) {
  options_ = options;
  alloc_count_.store(0, kRelaxed);
  resize_count_.store(0, kRelaxed);
  free_count_.store(0, kRelaxed);
  allocated_bytes_.store(0, kRelaxed);
  freed_bytes_.store(0, kRelaxed);
  failed_ret_addr_.store(0, kRelaxed);
  failed_resize_ret_addr_.store(0, kRelaxed);
}

void* FailingAllocator::vt_alloc(void* ctx, std::size_t len, Alignment alignment,
                                 std::uintptr_t ret_addr) {
  auto* self = static_cast<FailingAllocator*>(ctx);
  if (self->alloc_must_fail(ret_addr)) return nullptr;
  void* p = self->child_.raw_alloc(len, alignment, ret_addr);
  if (p != nullptr) self->allocated_bytes_.fetch_add(len, kRelaxed);
  return p;
}

// alloc_at_least and alloc_zeroed are allocs: they take the same numbers
// and fail at the same index.
Bytes FailingAllocator::vt_alloc_at_least(void* ctx, std::size_t len, Alignment alignment,
                                          std::uintptr_t ret_addr) {
  auto* self = static_cast<FailingAllocator*>(ctx);
  if (self->alloc_must_fail(ret_addr)) return Bytes();
  Bytes b = self->child_.raw_alloc_at_least(len, alignment, ret_addr);
  if (b.data() != nullptr) self->allocated_bytes_.fetch_add(b.size(), kRelaxed);
  return b;
}

void* FailingAllocator::vt_alloc_zeroed(void* ctx, std::size_t len, Alignment alignment,
                                        std::uintptr_t ret_addr) {
  auto* self = static_cast<FailingAllocator*>(ctx);
  if (self->alloc_must_fail(ret_addr)) return nullptr;
  void* p = self->child_.raw_alloc_zeroed(len, alignment, ret_addr);
  if (p != nullptr) self->allocated_bytes_.fetch_add(len, kRelaxed);
  return p;
}

Ownership FailingAllocator::vt_owns(void* ctx, const void* ptr) {
  return static_cast<FailingAllocator*>(ctx)->child_.owns(ptr);
}

bool FailingAllocator::alloc_must_fail(std::uintptr_t ret_addr) {
  const std::size_t index = alloc_count_.fetch_add(1, kRelaxed);
  if (!index_hit(index, options_.fail_alloc_index, options_.keep_failing)) return false;
  remember(failed_ret_addr_, ret_addr);
  return true;
}

bool FailingAllocator::resize_must_fail(std::uintptr_t ret_addr) {
  const std::size_t index = resize_count_.fetch_add(1, kRelaxed);
  if (!index_hit(index, options_.fail_resize_index, options_.keep_failing)) return false;
  remember(failed_resize_ret_addr_, ret_addr);
  return true;
}

void FailingAllocator::count_resize(std::size_t old_len, std::size_t new_len) {
  if (new_len > old_len) {
    allocated_bytes_.fetch_add(new_len - old_len, kRelaxed);
  } else {
    freed_bytes_.fetch_add(old_len - new_len, kRelaxed);
  }
}

bool FailingAllocator::vt_resize(void* ctx, Bytes memory, Alignment alignment,
                                 std::size_t new_len, std::uintptr_t ret_addr) {
  auto* self = static_cast<FailingAllocator*>(ctx);
  if (self->resize_must_fail(ret_addr)) return false;
  if (!self->child_.raw_resize(memory, alignment, new_len, ret_addr)) return false;
  self->count_resize(memory.size(), new_len);
  return true;
}

void* FailingAllocator::vt_remap(void* ctx, Bytes memory, Alignment alignment,
                                 std::size_t new_len, std::uintptr_t ret_addr) {
  auto* self = static_cast<FailingAllocator*>(ctx);
  if (self->resize_must_fail(ret_addr)) return nullptr;
  void* p = self->child_.raw_remap(memory, alignment, new_len, ret_addr);
  if (p != nullptr) self->count_resize(memory.size(), new_len);
  return p;
}

void FailingAllocator::vt_free(void* ctx, Bytes memory, Alignment alignment,
                               std::uintptr_t ret_addr) {
  auto* self = static_cast<FailingAllocator*>(ctx);
  self->free_count_.fetch_add(1, kRelaxed);
  self->freed_bytes_.fetch_add(memory.size(), kRelaxed);
  self->child_.raw_free(memory, alignment, ret_addr);
}

}  // namespace alloy
