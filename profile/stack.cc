#include "alloy/profile/stack.h"

#include <sys/mman.h>

namespace alloy::profile {
namespace {

constexpr std::uintptr_t kPageMask = ~std::uintptr_t{4095};

// Pages this thread found mapped, [lo, hi] (one range, grown while the
// pages it meets are adjacent): a walk on the same stack asks the kernel
// only about pages it has not seen, not once per page per sample. It trusts
// a stack's pages to stay mapped while the thread runs on that stack; a
// walk that starts on another stack forgets them (capture_stack).
__thread std::uintptr_t t_known_lo __attribute__((tls_model("initial-exec"))) = 0;
__thread std::uintptr_t t_known_hi __attribute__((tls_model("initial-exec"))) = 0;

bool page_mapped(std::uintptr_t page) {
  if (t_known_hi != 0 && page >= t_known_lo && page <= t_known_hi) return true;
  unsigned char vec;
  if (::mincore(reinterpret_cast<void*>(page), 4096, &vec) != 0) return false;
  if (t_known_hi != 0 && page == t_known_hi + 4096) {
    t_known_hi = page;
  } else if (t_known_hi != 0 && page + 4096 == t_known_lo) {
    t_known_lo = page;
  } else {
    t_known_lo = t_known_hi = page;
  }
  return true;
}

}  // namespace

int capture_stack(std::uintptr_t* out, int max, int skip) noexcept {
  auto* fp = static_cast<std::uintptr_t*>(__builtin_frame_address(0));
  std::uintptr_t known_page = reinterpret_cast<std::uintptr_t>(fp) & kPageMask;
  // A walk that starts outside the remembered range runs on another stack
  // (a coroutine's, a signal stack): what was remembered may since have
  // been unmapped, so start again from this stack's own page.
  if (known_page < t_known_lo || known_page > t_known_hi) t_known_lo = t_known_hi = known_page;
  int n = 0;
  // fp[0] is the caller's frame pointer, fp[1] the return address into it.
  while (n < max) {
    const std::uintptr_t ret = fp[1];
    const std::uintptr_t next = fp[0];
    if (ret == 0) break;
    if (skip > 0) {
      --skip;
    } else {
      out[n++] = ret;
    }
    const std::uintptr_t cur = reinterpret_cast<std::uintptr_t>(fp);
    if (next <= cur || next - cur > (std::uintptr_t{1} << 20) || (next & 7) != 0) break;
    // fp[0..1] of the next frame: 16 bytes, maybe on two pages.
    const std::uintptr_t first = next & kPageMask;
    const std::uintptr_t last = (next + 15) & kPageMask;
    if (first != known_page && !page_mapped(first)) break;
    if (last != first && !page_mapped(last)) break;
    known_page = last;
    fp = reinterpret_cast<std::uintptr_t*>(next);
  }
  return n;
}

}  // namespace alloy::profile
