// Thousands of threads that allocate, free, hand blocks to other threads and
// exit (some while still owning blocks), including frees from thread-local
// destructors and pthread key destructors during thread exit.
#define BOOST_TEST_MODULE malloc_thread_churn
#include <boost/test/unit_test.hpp>

#include <pthread.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/adapters/malloc/malloc_test_util.h"

namespace {

// A thread-local whose destructor allocates and frees while the thread is
// being torn down (after the engine's own thread state may be gone).
struct ExitTimeAllocator {
  std::string* text = nullptr;
  ~ExitTimeAllocator() {
    if (text != nullptr) {
      std::string copy = *text + " and more text to force an allocation";
      delete text;
      void* p = std::malloc(copy.size());
      std::memcpy(p, copy.data(), copy.size());
      std::free(p);
    }
  }
};
thread_local ExitTimeAllocator tls_allocator;

pthread_key_t g_key;
void key_destructor(void* p) {
  // Runs at thread exit, possibly after thread_local destructors.
  void* q = std::malloc(64);
  std::free(q);
  std::free(p);
}

std::mutex g_mu;
std::vector<void*> g_orphans;  // blocks left behind by exited threads

void worker(int id, bool* ok) {
  pthread_setspecific(g_key, std::malloc(static_cast<std::size_t>(32 + id % 100)));
  tls_allocator.text = new std::string("thread " + std::to_string(id));
  std::vector<void*> blocks;
  bool good = true;
  for (int i = 0; i < 50; ++i) {
    std::size_t n = static_cast<std::size_t>(1 + (id * 31 + i * 17) % 3000);
    void* p = std::malloc(n);
    good = good && p != nullptr;
    if (p != nullptr) fill(p, n, static_cast<unsigned>(id + i));
    blocks.push_back(p);
  }
  for (int i = 0; i < 50; ++i) {
    std::size_t n = static_cast<std::size_t>(1 + (id * 31 + i * 17) % 3000);
    good = good && intact(blocks[static_cast<std::size_t>(i)], n,
                         static_cast<unsigned>(id + i));
  }
  // Free half, leave the other half to be freed by another thread later.
  {
    std::lock_guard<std::mutex> lock(g_mu);
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      if (i % 2 == 0) std::free(blocks[i]);
      else g_orphans.push_back(blocks[i]);
    }
  }
  *ok = good;
}

}  // namespace

ALLOY_MALLOC_ALWAYS_CHECK_ACTIVE_MALLOC()

ALLOY_MALLOC_CASE(thousands_of_short_lived_threads) {
  BOOST_TEST_REQUIRE(pthread_key_create(&g_key, key_destructor) == 0);
  constexpr int kThreads = 3000;
  constexpr int kBatch = 16;
  int bad = 0;
  for (int base = 0; base < kThreads; base += kBatch) {
    bool ok[kBatch] = {};
    std::vector<std::thread> batch;
    for (int t = 0; t < kBatch; ++t) batch.emplace_back(worker, base + t, &ok[t]);
    for (auto& t : batch) t.join();
    for (bool b : ok) bad += b ? 0 : 1;
    // Blocks of exited threads are freed by this (another) thread.
    std::vector<void*> orphans;
    {
      std::lock_guard<std::mutex> lock(g_mu);
      orphans.swap(g_orphans);
    }
    for (void* p : orphans) std::free(p);
  }
  pthread_key_delete(g_key);
  BOOST_TEST(bad == 0);
}

ALLOY_MALLOC_CASE(detached_threads_exit_while_main_allocates) {
  std::atomic<int> done{0};
  constexpr int kThreads = 500;
  for (int i = 0; i < kThreads; ++i) {
    std::thread([&done, i] {
      auto v = std::make_unique<std::vector<int>>(static_cast<std::size_t>(i % 200 + 1), i);
      void* p = std::malloc(static_cast<std::size_t>(i * 10 + 1));
      std::free(p);
      done.fetch_add(1);
    }).detach();
    void* q = std::malloc(100);
    std::free(q);
  }
  while (done.load() < kThreads) std::this_thread::yield();
  BOOST_TEST(done.load() == kThreads);
}
