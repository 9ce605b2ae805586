// Every form of operator new/delete through the malloc adapter: alignment,
// new_handler retries, bad_alloc, nothrow forms, sized and aligned deletes.
#define BOOST_TEST_MODULE malloc_new_delete
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "tests/adapters/malloc/malloc_test_util.h"

namespace {

std::size_t opaque(std::size_t n) {
  asm volatile("" : "+r"(n));
  return n;
}

constexpr std::size_t kHuge = SIZE_MAX / 2 + 1;  // never servable

int g_handler_calls = 0;
void counting_handler() {
  if (++g_handler_calls == 3) std::set_new_handler(nullptr);
}
void throwing_handler() {
  ++g_handler_calls;
  throw std::bad_alloc();
}

struct alignas(256) Wide {
  unsigned char bytes[256];
};

struct Counted {
  static inline int live = 0;
  Counted() { ++live; }
  ~Counted() { --live; }
  std::uint64_t payload[3] = {1, 2, 3};
};

// Restores the default (no) new_handler even if a check fails.
struct HandlerGuard {
  ~HandlerGuard() { std::set_new_handler(nullptr); }
};

}  // namespace

ALLOY_MALLOC_ALWAYS_CHECK_ACTIVE_MALLOC()

ALLOY_MALLOC_CASE(plain_and_array_new_are_alloy_blocks) {
  for (std::size_t n : {0, 1, 16, 100, 5000, 1 << 20}) {
    void* p = operator new(n);
    void* a = operator new[](n);
    BOOST_TEST(alloy::engine::owns(p));
    BOOST_TEST(alloy::engine::owns(a));
    BOOST_TEST(aligned_to(p, __STDCPP_DEFAULT_NEW_ALIGNMENT__));
    BOOST_TEST(p != a);
    fill(p, n, 1);
    fill(a, n, 2);
    BOOST_TEST(intact(p, n, 1));
    BOOST_TEST(intact(a, n, 2));
    operator delete(p, n);  // sized
    operator delete[](a);   // unsized
  }
}

ALLOY_MALLOC_CASE(aligned_new_honours_alignment) {
  for (std::size_t al : {32, 64, 256, 4096, 65536, 1 << 20, 2 << 20}) {
    for (std::size_t n : {1, 100, 10000}) {
      void* p = operator new(n, std::align_val_t(al));
      void* a = operator new[](n, std::align_val_t(al));
      void* q = operator new(n, std::align_val_t(al), std::nothrow);
      void* b = operator new[](n, std::align_val_t(al), std::nothrow);
      for (void* x : {p, a, q, b}) {
        BOOST_TEST_REQUIRE(x != nullptr);
        BOOST_TEST(aligned_to(x, al));
        fill(x, n, 4);
      }
      operator delete(p, n, std::align_val_t(al));
      operator delete[](a, std::align_val_t(al));
      operator delete(q, std::align_val_t(al), std::nothrow);
      operator delete[](b, n, std::align_val_t(al));
    }
  }
  auto w = std::make_unique<Wide[]>(5);
  BOOST_TEST(aligned_to(w.get(), 256));
  auto* one = new Wide;
  BOOST_TEST(aligned_to(one, 256));
  delete one;
}

ALLOY_MALLOC_CASE(aligned_new_above_the_segment_size) {
  void* q = operator new(100, std::align_val_t(4 << 20), std::nothrow);
  BOOST_TEST(q != nullptr);
  BOOST_TEST(aligned_to(q, 4 << 20));
  operator delete(q, std::align_val_t(4 << 20));
}

ALLOY_MALLOC_CASE(failed_new_throws_bad_alloc_without_handler) {
  std::set_new_handler(nullptr);
  BOOST_CHECK_THROW((void)operator new(opaque(kHuge)), std::bad_alloc);
  BOOST_CHECK_THROW((void)operator new[](opaque(kHuge)), std::bad_alloc);
  BOOST_CHECK_THROW((void)operator new(opaque(kHuge), std::align_val_t(64)),
                    std::bad_alloc);
  BOOST_CHECK_THROW((void)operator new[](opaque(SIZE_MAX), std::align_val_t(4096)),
                    std::bad_alloc);
  // The array-length overflow path of new-expressions (g++ throws
  // bad_array_new_length itself, clang asks operator new[] for SIZE_MAX).
  BOOST_CHECK_THROW(new std::uint64_t[opaque(SIZE_MAX / 4)], std::bad_alloc);
  // Still usable afterwards.
  auto v = std::make_unique<int>(5);
  BOOST_TEST(*v == 5);
}

ALLOY_MALLOC_CASE(nothrow_new_returns_null) {
  std::set_new_handler(nullptr);
  // Alignments that are not a power of two, or absurd, cannot be served.
  BOOST_TEST(operator new(16, std::align_val_t(opaque(48)), std::nothrow) == nullptr);
  BOOST_TEST(operator new(16, std::align_val_t(opaque(SIZE_MAX / 2 + 1)), std::nothrow) ==
             nullptr);
  BOOST_TEST(operator new(opaque(kHuge), std::nothrow) == nullptr);
  BOOST_TEST(operator new[](opaque(kHuge), std::nothrow) == nullptr);
  BOOST_TEST(operator new(opaque(kHuge), std::align_val_t(128), std::nothrow) ==
             nullptr);
  BOOST_TEST(operator new[](opaque(kHuge), std::align_val_t(128),
                            std::nothrow) == nullptr);
  void* p = operator new(opaque(100), std::nothrow);
  BOOST_TEST(p != nullptr);
  operator delete(p, std::nothrow);
  void* a = operator new[](opaque(100), std::nothrow);
  BOOST_TEST(a != nullptr);
  operator delete[](a, std::nothrow);
}

ALLOY_MALLOC_CASE(new_handler_is_retried_until_it_gives_up) {
  HandlerGuard guard;
  g_handler_calls = 0;
  std::set_new_handler(counting_handler);
  BOOST_CHECK_THROW((void)operator new(opaque(kHuge)), std::bad_alloc);
  BOOST_TEST(g_handler_calls == 3);

  g_handler_calls = 0;
  std::set_new_handler(counting_handler);
  BOOST_TEST(operator new(opaque(kHuge), std::nothrow) == nullptr);
  BOOST_TEST(g_handler_calls == 3);

  g_handler_calls = 0;
  std::set_new_handler(counting_handler);
  BOOST_CHECK_THROW((void)operator new[](opaque(kHuge), std::align_val_t(64)),
                    std::bad_alloc);
  BOOST_TEST(g_handler_calls == 3);
}

ALLOY_MALLOC_CASE(throwing_handler_makes_nothrow_new_return_null) {
  HandlerGuard guard;
  g_handler_calls = 0;
  std::set_new_handler(throwing_handler);
  BOOST_TEST(operator new(opaque(kHuge), std::nothrow) == nullptr);
  BOOST_TEST(operator new[](opaque(kHuge), std::align_val_t(64),
                            std::nothrow) == nullptr);
  BOOST_TEST(g_handler_calls == 2);
  BOOST_CHECK_THROW((void)operator new(opaque(kHuge)), std::bad_alloc);
  BOOST_TEST(g_handler_calls == 3);
}

ALLOY_MALLOC_CASE(arrays_of_objects_with_destructors_use_sized_delete) {
  Counted::live = 0;
  for (std::size_t n : {1, 3, 100, 10000}) {
    Counted* arr = new Counted[n];
    BOOST_TEST(Counted::live == static_cast<int>(n));
    BOOST_TEST(alloy::engine::owns(arr));
    BOOST_TEST(arr[n - 1].payload[2] == 3u);
    delete[] arr;  // sized delete[] including the array cookie
    BOOST_TEST(Counted::live == 0);
  }
}

ALLOY_MALLOC_CASE(standard_containers_run_on_alloy) {
  std::map<int, std::string> m;
  for (int i = 0; i < 5000; ++i) m[i] = std::string(static_cast<std::size_t>(i % 97), 'x');
  std::vector<std::unique_ptr<int>> v;
  for (int i = 0; i < 5000; ++i) v.push_back(std::make_unique<int>(i));
  BOOST_TEST(alloy::engine::owns(v.data()));
  BOOST_TEST(alloy::engine::owns(v[4999].get()));
  std::size_t total = 0;
  for (auto& [k, s] : m) total += s.size();
  BOOST_TEST(total == 238834u);  // sum of i % 97 for i < 5000
  BOOST_TEST(*v[4999] == 4999);
}

#ifndef NDEBUG
// Sized operator delete takes the adapter's slow half in debug builds, which
// checks the size against the block: a wrong one is reported with the
// caller, the block is still freed, and new keeps working.
ALLOY_MALLOC_CASE(debug_build_reports_a_wrong_sized_operator_delete) {
  int fds[2];
  BOOST_TEST_REQUIRE(pipe(fds) == 0);
  const int saved = dup(2);
  dup2(fds[1], 2);
  void* p = operator new(32);
  operator delete(p, opaque(std::size_t{1} << 20));  // reported, still freed
  dup2(saved, 2);
  close(saved);
  close(fds[1]);
  char buf[1024] = {};
  const ssize_t n = read(fds[0], buf, sizeof(buf) - 1);
  close(fds[0]);
  BOOST_TEST(n > 0);
  BOOST_TEST(std::strstr(buf, "sized free") != nullptr);
  BOOST_TEST(std::strstr(buf, "caller=0x") != nullptr);
  // The caller is also named as module+offset, for addr2line.
  BOOST_TEST(std::strstr(buf, "new_delete_test+0x") != nullptr, buf);
  void* q = operator new(32);  // still usable
  BOOST_TEST(q != nullptr);
  operator delete(q, 32);
}
#endif
