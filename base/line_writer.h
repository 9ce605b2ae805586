// alloy::base::LineWriter — text formatted into a stack buffer and written
// with write(2), for code that must not call malloc (the engine and the
// malloc adapter report through it; snprintf may allocate).
//
// Cost: one pass over the text, one write(2) per call of write_to (retried
// on EINTR and short writes). What does not fit in N bytes is cut. Thread
// safety: a value on the caller's stack.
//
// Example:
//   alloy::base::LineWriter<256> line;
//   line.add("alloy: refused ").hex(addr).add(" (").dec(size).add(" bytes)\n");
//   line.write_to(2);
#pragma once

#include <errno.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

namespace alloy::base {

template <std::size_t N>
class LineWriter {
 public:
  LineWriter& add(const char* s) noexcept {
    while (*s != '\0' && len_ < N) buf_[len_++] = *s++;
    return *this;
  }
  LineWriter& dec(std::uintptr_t v) noexcept { return digits(v, 10); }
  // "0x" and lower-case hex digits.
  LineWriter& hex(std::uintptr_t v) noexcept { return add("0x").digits(v, 16); }

  void write_to(int fd) const noexcept {
    std::size_t done = 0;
    while (done < len_) {
      const ssize_t w = ::write(fd, buf_ + done, len_ - done);
      if (w <= 0) {
        if (w < 0 && errno == EINTR) continue;
        return;
      }
      done += static_cast<std::size_t>(w);
    }
  }

 private:
  LineWriter& digits(std::uintptr_t v, unsigned base) noexcept {
    char d[24];
    int k = 0;
    do {
      d[k++] = "0123456789abcdef"[v % base];
      v /= base;
    } while (v != 0);
    while (k > 0 && len_ < N) buf_[len_++] = d[--k];
    return *this;
  }

  char buf_[N];
  std::size_t len_ = 0;
};

}  // namespace alloy::base
