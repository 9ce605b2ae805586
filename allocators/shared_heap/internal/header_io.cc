// Writing and checking the SharedHeap header (see header_io.h).
#include "alloy/allocators/shared_heap/internal/header_io.h"

#include <pthread.h>

#include "alloy/allocators/shared_heap/internal/lists.h"
#include "alloy/allocators/shared_heap/internal/support.h"

namespace alloy::shared_heap_internal {

void init_header(Header* h, u64 mapping) {
  h->version = kVersion;
  h->header_bytes = sizeof(Header);
  h->layout = layout_signature();
  h->granule = kGranule;
  h->mapping_bytes = mapping;
  h->bitmap_offset = round_up(sizeof(Header), 64);
  h->bitmap_bytes = round_up(mapping / kGranule / 8 + 1, 64);
  h->heap_begin = round_up(h->bitmap_offset + h->bitmap_bytes, 64);
  h->heap_end = round_up(mapping - kBlockHeader - kGranule + 1, kGranule);
  if (h->heap_end + kBlockHeader > mapping) h->heap_end -= kGranule;

  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
  pthread_mutex_init(&h->mutex, &attr);
  pthread_mutexattr_destroy(&attr);

  h->cap = h->heap_end - h->heap_begin;
  BlockHeader* first = block(h, h->heap_begin);
  first->size_flags = h->heap_end - h->heap_begin;
  first->prev_size = 0;
  BlockHeader* sentinel = block(h, h->heap_end);
  sentinel->size_flags = kLiveBit;
  sentinel->prev_size = first->size_flags;
  bin_push(h, h->heap_begin);
  h->checksum = checksum_of(h);
  h->state = kStateReady;
  __atomic_store_n(&h->magic, kMagic, __ATOMIC_RELEASE);  // publishes the rest
}

bool validate_header(const Header* h, u64 object_size, SharedHeapError* err) {
  u64 magic = __atomic_load_n(&h->magic, __ATOMIC_ACQUIRE);
  if (magic == 0) {
    *err = make_error(SharedHeapErrc::kNotReady, 0,
                      "not initialised (its creator is still setting it up, or died doing so)");
    return false;
  }
  if (magic != kMagic) {
    *err = make_error(SharedHeapErrc::kBadMagic, 0,
                      "not an alloy shared heap (magic %#llx, want %#llx)",
                      static_cast<unsigned long long>(magic),
                      static_cast<unsigned long long>(kMagic));
    return false;
  }
  if (h->version != kVersion) {
    *err = make_error(SharedHeapErrc::kBadVersion, 0,
                      "shared heap format version %u, this build reads version %u",
                      h->version, kVersion);
    return false;
  }
  if (h->header_bytes != sizeof(Header) || h->layout != layout_signature() ||
      h->granule != kGranule) {
    *err = make_error(SharedHeapErrc::kBadLayout, 0,
                      "shared heap header layout differs (header %u bytes, layout %#x; "
                      "this build: %zu bytes, layout %#x)",
                      h->header_bytes, h->layout, sizeof(Header), layout_signature());
    return false;
  }
  if (h->checksum != checksum_of(h)) {
    *err = make_error(SharedHeapErrc::kCorruptHeader, 0,
                      "shared heap header checksum mismatch (header overwritten?)");
    return false;
  }
  if (h->mapping_bytes != object_size || h->bitmap_offset < sizeof(Header) ||
      h->heap_begin < h->bitmap_offset + h->bitmap_bytes ||
      h->heap_end + kBlockHeader > h->mapping_bytes || h->heap_begin >= h->heap_end ||
      h->bitmap_bytes * 8 * kGranule < h->heap_end - h->heap_begin ||
      h->heap_begin % 64 != 0 || h->heap_end % kGranule != 0) {
    *err = make_error(SharedHeapErrc::kCorruptHeader, 0,
                      "shared heap geometry is inconsistent (header says %llu bytes, "
                      "object has %llu)",
                      static_cast<unsigned long long>(h->mapping_bytes),
                      static_cast<unsigned long long>(object_size));
    return false;
  }
  u32 state = __atomic_load_n(&h->state, __ATOMIC_ACQUIRE);
  if (state == kStateInitializing) {
    *err = make_error(SharedHeapErrc::kNotReady, 0, "shared heap is not initialised yet");
    return false;
  }
  return true;
}

}  // namespace alloy::shared_heap_internal
