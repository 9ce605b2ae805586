// A dlopen()ed module with dynamic TLS, for preload_probe: glibc allocates
// its TLS block with malloc on a thread's first access (inside
// __tls_get_addr), so the preloaded malloc runs during TLS set-up.
#include <cstddef>
#include <string>

namespace {
thread_local std::string tls_text;
}  // namespace

extern "C" std::size_t tls_module_append(const char* s) {
  tls_text += s;
  return tls_text.size();
}
