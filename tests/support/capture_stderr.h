// alloy::testing::CaptureStderr — collects what is written to fd 2 while it
// lives, so a test can assert that a refused free was reported.
//
// The constructor points fd 2 at an unlinked temporary file (no pipe to fill
// up, no reader thread); text() flushes stderr and returns everything written
// since; the destructor puts the old fd 2 back. Not nestable across threads:
// other threads writing to stderr meanwhile land in the capture too.
//
// Cost: a few syscalls per construction and per text(). Thread safety: use
// from one test thread.
//
// Example:
//   alloy::testing::CaptureStderr err;
//   pool.release(foreign);
//   BOOST_TEST(err.text().find("alloy::NodePool: refused free") != std::string::npos);
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace alloy::testing {

class CaptureStderr {
 public:
  CaptureStderr() {
    char path[] = "/tmp/alloy_stderr_XXXXXX";
    fd_ = mkstemp(path);
    if (fd_ < 0) return;
    unlink(path);
    std::fflush(stderr);
    saved_ = dup(2);
    dup2(fd_, 2);
  }
  ~CaptureStderr() {
    if (fd_ < 0) return;
    std::fflush(stderr);
    dup2(saved_, 2);
    close(saved_);
    close(fd_);
  }
  CaptureStderr(const CaptureStderr&) = delete;
  CaptureStderr& operator=(const CaptureStderr&) = delete;

  bool ok() const { return fd_ >= 0; }

  // Everything written to stderr since construction.
  std::string text() const {
    std::string out;
    if (fd_ < 0) return out;
    std::fflush(stderr);
    char buf[4096];
    for (off_t at = 0;;) {
      const ssize_t n = pread(fd_, buf, sizeof buf, at);
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
      at += n;
    }
    return out;
  }

  // Whether the text has `needle` in it.
  bool contains(const std::string& needle) const {
    return text().find(needle) != std::string::npos;
  }

 private:
  int fd_ = -1;
  int saved_ = -1;
};

// "0x<hex>" as the wrong-free reports print a return address.
inline std::string hex_address(std::uintptr_t a) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(a));
  return buf;
}

}  // namespace alloy::testing
