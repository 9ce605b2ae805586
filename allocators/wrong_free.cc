#include "alloy/allocators/wrong_free.h"

#include <cstdio>

namespace alloy {

const char* to_string(WrongFree kind) {
  switch (kind) {
    case WrongFree::kForeign:
      return "foreign pointer (not handed out by this allocator)";
    case WrongFree::kDouble:
      return "double free (already freed)";
    case WrongFree::kInterior:
      return "interior or misaligned pointer (not the start of a block)";
    case WrongFree::kWrongSize:
      return "wrong size (the block does not have that length)";
    case WrongFree::kCounterUnderflow:
      return "more bytes freed than are live (foreign free or wrong size)";
    case WrongFree::kNone:
      break;
  }
  return "no error";
}

void report_wrong_free(const char* allocator, const char* what, const void* p,
                       std::size_t len, std::uintptr_t ret_addr, const char* detail) {
  std::fprintf(stderr, "%s: refused free of %p (%zu bytes): %s%s%s; called from 0x%lx\n",
               allocator, p, len, what, detail != nullptr ? "; " : "",
               detail != nullptr ? detail : "", static_cast<unsigned long>(ret_addr));
}

void WrongFreeLog::refuse(const char* allocator, WrongFree kind, const void* p,
                          std::size_t len, std::uintptr_t ret_addr, const char* detail) {
  count_.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> guard(mutex_);
    last_ = WrongFreeRecord{kind, p, len, ret_addr};
  }
  if (report_.load(std::memory_order_relaxed)) {
    report_wrong_free(allocator, to_string(kind), p, len, ret_addr, detail);
  }
}

WrongFreeRecord WrongFreeLog::last() const {
  std::lock_guard<std::mutex> guard(mutex_);
  return last_;
}

void refuse_bump_free(const char* allocator, WrongFree wrong, const void* p, std::size_t len,
                      std::uintptr_t ret_addr) {
  report_wrong_free(allocator, to_string(wrong), p, len, ret_addr,
                    wrong == WrongFree::kDouble
                        ? "the block reaches at or above the cursor (freed, rewound or reset)"
                        : nullptr);
}

}  // namespace alloy
