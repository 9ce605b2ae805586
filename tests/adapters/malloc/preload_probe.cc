// Run by e2e_test under LD_PRELOAD=liballoy_malloc.so (this binary does not
// link the adapter): checks that malloc resolved to the preloaded library and
// survives the start-up and tear-down paths that call malloc from awkward
// places — dlopen/dlsym/dlerror, dynamic TLS set-up of a dlopen()ed module,
// thread_local destructors and pthread key destructors at thread exit, many
// short threads, fork() from a multi-threaded process, and atexit handlers.
// Prints "preload ok" and exits 0 when all of that worked.
#include <dlfcn.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

std::atomic<int> g_failures{0};

void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "preload_probe: %s failed\n", what);
    g_failures.fetch_add(1);
  }
}

struct AllocatesAtThreadExit {
  std::string* s = nullptr;
  ~AllocatesAtThreadExit() {
    if (s != nullptr) {
      std::string copy = *s + std::string(100, 'x');
      delete s;
      expect(copy.size() > 100, "thread_local destructor allocation");
    }
  }
};
thread_local AllocatesAtThreadExit tls_exit;

pthread_key_t g_key;
void key_destructor(void* p) {
  void* q = std::malloc(32);
  std::free(q);
  std::free(p);
}

void atexit_handler() {
  char* p = static_cast<char*>(std::malloc(1000));
  std::memset(p, 1, 1000);
  std::free(p);
}

}  // namespace

int main(int argc, char** argv) {
  std::atexit(atexit_handler);
  // 1. malloc is the preloaded one.
  Dl_info info{};
  void* sym = dlsym(RTLD_DEFAULT, "malloc");
  expect(sym != nullptr && dladdr(sym, &info) != 0 && info.dli_fname != nullptr &&
             std::strstr(info.dli_fname, "liballoy_malloc") != nullptr,
         "malloc resolves to liballoy_malloc.so");

  // 2. dlopen/dlsym/dlerror (dlerror's message buffer is malloc'd).
  expect(dlopen("/nonexistent/libnothing.so", RTLD_NOW) == nullptr, "dlopen failure");
  const char* err = dlerror();
  expect(err != nullptr && std::strstr(err, "libnothing") != nullptr, "dlerror message");
  void* libm = dlopen("libm.so.6", RTLD_NOW);
  expect(libm != nullptr && dlsym(libm, "cos") != nullptr, "dlopen libm");

  // 3. A dlopen()ed module with dynamic TLS, touched from many threads.
  using AppendFn = std::size_t (*)(const char*);
  AppendFn append = nullptr;
  void* tls_module = argc > 1 ? dlopen(argv[1], RTLD_NOW) : nullptr;
  expect(tls_module != nullptr, "dlopen tls module");
  if (tls_module != nullptr) {
    append = reinterpret_cast<AppendFn>(dlsym(tls_module, "tls_module_append"));
  }
  expect(append != nullptr, "dlsym tls_module_append");

  // 4. Many short threads: TLS set-up, thread_local and key destructors.
  pthread_key_create(&g_key, key_destructor);
  for (int round = 0; round < 100; ++round) {
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([append, t] {
        pthread_setspecific(g_key, std::malloc(64));
        tls_exit.s = new std::string("thread " + std::to_string(t));
        if (append != nullptr) {
          std::size_t n = 0;
          for (int i = 0; i < 20; ++i) n = append("abcdefgh");
          expect(n == 160, "dynamic TLS string");
        }
      });
    }
    for (auto& th : threads) th.join();
  }

  // 5. fork() while other threads allocate.
  std::atomic<bool> stop{false};
  std::vector<std::thread> busy;
  for (int t = 0; t < 2; ++t) {
    busy.emplace_back([&stop] {
      while (!stop.load()) {
        void* p = std::malloc(200);
        std::free(p);
        std::string s(300, 'y');
      }
    });
  }
  for (int i = 0; i < 30; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      std::string s(5000, 'z');
      std::thread th([] { std::free(std::malloc(100)); });
      th.join();
      _exit(s.size() == 5000 ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "forked child");
  }
  stop = true;
  for (auto& th : busy) th.join();

  if (tls_module != nullptr) dlclose(tls_module);
  if (libm != nullptr) dlclose(libm);
  std::printf("preload %s\n", g_failures.load() == 0 ? "ok" : "FAILED");
  return g_failures.load() == 0 ? 0 : 1;
}
