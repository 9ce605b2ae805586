#include "alloy/allocators/page_allocator.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>

#include "alloy/alloc_iface/make_vtable.h"
#include "alloy/allocators/wrong_free.h"

namespace alloy {
namespace {

std::size_t cached_page_size() {
  static const std::size_t size = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return size;
}

// Rounds up to whole pages; 0 on overflow.
std::size_t round_to_pages(std::size_t len) {
  const std::size_t page = cached_page_size();
  if (len > SIZE_MAX - (page - 1)) return 0;
  return (len + page - 1) & ~(page - 1);
}

void* map(std::size_t len) {
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

struct PageEntries {
  static void* vt_alloc(void*, std::size_t len, Alignment alignment, std::uintptr_t) {
    const std::size_t page = cached_page_size();
    const std::size_t size = round_to_pages(len);
    if (size == 0 || size > PTRDIFF_MAX) return nullptr;
    if (alignment.bytes() <= page) return map(size);
    // Over-reserve by the alignment, then unmap the unaligned head and the tail.
    const std::size_t extra = alignment.bytes() - page;
    if (size > SIZE_MAX - extra) return nullptr;
    auto* raw = static_cast<std::byte*>(map(size + extra));
    if (raw == nullptr) return nullptr;
    const auto addr = reinterpret_cast<std::uintptr_t>(raw);
    const std::uintptr_t aligned = alignment.forward(addr);
    const std::size_t head = aligned - addr;
    if (head != 0) munmap(raw, head);
    const std::size_t tail = extra - head;
    if (tail != 0) munmap(reinterpret_cast<std::byte*>(aligned) + size, tail);
    return reinterpret_cast<void*>(aligned);
  }

  static bool vt_resize(void*, Bytes memory, Alignment, std::size_t new_len, std::uintptr_t) {
    const std::size_t old_size = round_to_pages(memory.size());
    const std::size_t new_size = round_to_pages(new_len);
    if (new_size == 0) return false;
    if (new_size == old_size) return true;
    if (new_size < old_size) {
      munmap(memory.data() + new_size, old_size - new_size);
      return true;
    }
    // Grow in place only: without MREMAP_MAYMOVE the kernel refuses when the
    // next pages are taken.
    return mremap(memory.data(), old_size, new_size, 0) != MAP_FAILED;
  }

  static void* vt_remap(void* ctx, Bytes memory, Alignment alignment, std::size_t new_len,
                        std::uintptr_t ret) {
    if (vt_resize(ctx, memory, alignment, new_len, ret)) return memory.data();
    // mremap may only guarantee page alignment; larger alignments fall back to
    // the caller's alloc + copy + free.
    if (alignment.bytes() > cached_page_size()) return nullptr;
    const std::size_t new_size = round_to_pages(new_len);
    if (new_size == 0 || new_size > PTRDIFF_MAX) return nullptr;
    void* p = mremap(memory.data(), round_to_pages(memory.size()), new_size,
                     MREMAP_MAYMOVE);
    return p == MAP_FAILED ? nullptr : p;
  }

  // Whether the page at `p` is mapped (mincore fails with ENOMEM if not).
  static bool page_mapped(const void* p) {
    unsigned char in_core = 0;
    return mincore(const_cast<void*>(p), 1, &in_core) == 0;
  }

  static void vt_free(void*, Bytes memory, Alignment, std::uintptr_t ret_addr) {
    const std::size_t page = cached_page_size();
    const auto addr = reinterpret_cast<std::uintptr_t>(memory.data());
    const std::size_t size = round_to_pages(memory.size());
    const char* detail = nullptr;
    WrongFree wrong = WrongFree::kNone;
    if (addr % page != 0) {
      wrong = WrongFree::kInterior;
      detail = "not page-aligned";
    } else if (size == 0 || addr > UINTPTR_MAX - size) {
      wrong = WrongFree::kWrongSize;
    } else if (kCheckedFrees &&
               (!page_mapped(memory.data()) ||
                !page_mapped(reinterpret_cast<const void*>(addr + size - page)))) {
      wrong = WrongFree::kDouble;
      detail = "its pages are not mapped: freed already, or never ours";
    } else if (munmap(memory.data(), size) != 0) {
      wrong = WrongFree::kForeign;
      detail = "munmap refused it";
    }
    if (wrong != WrongFree::kNone) {
      report_wrong_free("alloy::page_allocator", to_string(wrong), memory.data(), memory.size(),
                        ret_addr, detail);
    }
  }
  // Size feedback: whole pages (what free and resize round to anyway).
  static Bytes vt_alloc_at_least(void* ctx, std::size_t len, Alignment alignment,
                                 std::uintptr_t ret) {
    void* p = vt_alloc(ctx, len, alignment, ret);
    if (p == nullptr) return Bytes();
    return Bytes(static_cast<std::byte*>(p), round_to_pages(len));
  }
  // Fresh anonymous mappings are zero: no memset.
  static void* vt_alloc_zeroed(void* ctx, std::size_t len, Alignment alignment,
                               std::uintptr_t ret) {
    return vt_alloc(ctx, len, alignment, ret);
  }
};

}  // namespace

std::size_t page_size() { return cached_page_size(); }

Allocator page_allocator() { return Allocator{nullptr, &vtable_for<PageEntries>}; }

}  // namespace alloy
