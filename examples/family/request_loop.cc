// A request loop that resets an arena with retain-capacity between requests.
//
// Each "request" parses a header block into arena-allocated strings and a
// small index, builds a response in the arena, then the arena is reset with
// ResetMode::retain_capacity(): the memory stays, so after the first few
// requests the loop never calls the page allocator again. A burst of
// oversized requests shows retain_with_limit() trimming back afterwards.
//
//   bazel build //examples/family:request_loop
//   bazel-bin/examples/family/request_loop
#include <cstdio>
#include <cstring>
#include <span>
#include <string_view>

#include "alloy/allocators/arena.h"
#include "alloy/allocators/page_allocator.h"

namespace {

struct Header {
  std::span<char> name;
  std::span<char> value;
};

// Serves one request entirely out of `a`; returns the response length.
std::size_t serve(alloy::Allocator a, int id, int header_count) {
  auto headers = a.alloc<Header>(static_cast<std::size_t>(header_count));
  if (!headers) return 0;
  char line[64];
  for (int i = 0; i < header_count; ++i) {
    std::snprintf(line, sizeof line, "X-Header-%d", i);
    auto name = a.dupe(std::string_view(line));
    std::snprintf(line, sizeof line, "value-%d-of-request-%d", i, id);
    auto value = a.dupe(std::string_view(line));
    if (!name || !value) return 0;
    (*headers)[i] = {*name, *value};
  }
  // The response grows in place: it is always the arena's last allocation.
  auto body = a.alloc<char>(16);
  if (!body) return 0;
  std::size_t len = 0;
  for (const Header& h : *headers) {
    const std::size_t need = len + h.name.size() + h.value.size() + 3;
    if (need > body->size()) {
      auto bigger = a.realloc(*body, need * 2);
      if (!bigger) return 0;
      body = bigger;
    }
    std::memcpy(body->data() + len, h.name.data(), h.name.size());
    len += h.name.size();
    std::memcpy(body->data() + len, ": ", 2);
    len += 2;
    std::memcpy(body->data() + len, h.value.data(), h.value.size());
    len += h.value.size();
    (*body)[len++] = '\n';
  }
  return len;
}

}  // namespace

int main() {
  alloy::Arena arena(alloy::page_allocator());
  alloy::Allocator a = arena.allocator();
  std::size_t last_capacity = 0;
  for (int id = 0; id < 40; ++id) {
    // Requests 30..34 are a burst of huge ones.
    const int headers = (id >= 30 && id < 35) ? 20000 : 200 + (id % 7) * 50;
    const std::size_t bytes = serve(a, id, headers);
    const std::size_t capacity = arena.query_capacity();
    const bool burst_over = id == 34;
    // Normal requests keep everything; after the burst, keep at most 256 KiB.
    const bool kept = arena.reset(burst_over ? alloy::ResetMode::retain_with_limit(256 * 1024)
                                             : alloy::ResetMode::retain_capacity());
    if (id < 6 || capacity != last_capacity || burst_over || id == 39) {
      std::printf("request %2d: %5d headers, %7zu-byte response, capacity %8zu B "
                  "before reset, %8zu B kept in %zu chunk(s)%s\n",
                  id, headers, bytes, capacity, arena.query_capacity(),
                  arena.chunk_count(), kept ? "" : " (could not keep all it asked)");
    }
    last_capacity = arena.query_capacity();
  }
  return 0;
}
