// Run by e2e_test under LD_PRELOAD=liballoy_malloc.so: a C++ program whose
// operator new is the preloaded library's, which binds the C++ runtime only
// weakly. Every way operator new reports failure must still reach the
// program: std::bad_alloc caught, the new_handler called, nothrow null.
#include <cstdio>
#include <new>
#include <string>
#include <vector>

namespace {
int handler_calls = 0;
void give_up_after_three() {
  if (++handler_calls == 3) std::set_new_handler(nullptr);
}
void throwing_handler() { throw std::bad_alloc(); }
constexpr std::size_t kImpossible = std::size_t{1} << 62;
}  // namespace

int main() {
  try {
    void* p = ::operator new(kImpossible);
    std::printf("no throw %p\n", p);
  } catch (const std::bad_alloc& e) {
    std::printf("caught %s\n", e.what());
  }
  std::set_new_handler(give_up_after_three);
  try {
    (void)::operator new[](kImpossible);
  } catch (const std::bad_alloc&) {
    std::printf("handler called %d times\n", handler_calls);
  }
  std::set_new_handler(throwing_handler);
  void* q = ::operator new(kImpossible, std::nothrow);
  std::printf("nothrow with a throwing handler: %s\n", q == nullptr ? "null" : "non-null");
  std::set_new_handler(nullptr);
  try {
    (void)::operator new(64, std::align_val_t{3});
  } catch (const std::bad_alloc&) {
    std::printf("bad alignment caught\n");
  }
  std::vector<std::string> v(1000, std::string(100, 'x'));
  std::printf("ok %zu\n", v[999].size());
}
