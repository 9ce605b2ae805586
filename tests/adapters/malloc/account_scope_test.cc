// AccountScope through the malloc adapter: a scoped thread's malloc, calloc,
// realloc and operator new are served from the account's heap and charged to
// it; past its limit malloc is NULL with ENOMEM and new follows the
// new_handler, then throws std::bad_alloc; frees from any thread after the
// scope credit the account; fork. Skipped under sanitizers (they own malloc).
#define BOOST_TEST_MODULE malloc_account_scope
#include <boost/test/unit_test.hpp>

#include <errno.h>
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "alloy/allocators/engine/account.h"
#include "alloy/allocators/page_allocator.h"
#include "tests/adapters/malloc/malloc_test_util.h"

namespace {

struct Fresh {
  alloy::Account a;
  explicit Fresh(const char* name, alloy::AccountOptions o = {})
      : a(*alloy::Account::root().create(name, o)) {}
  ~Fresh() { a.destroy(); }
};

}  // namespace

ALLOY_MALLOC_ALWAYS_CHECK_ACTIVE_MALLOC()

ALLOY_MALLOC_CASE(scoped_malloc_calloc_realloc_new_are_charged) {
  Fresh acct("m_charged");
  void* m;
  void* c;
  void* r;
  int* n;
  std::string* s;
  {
    alloy::AccountScope scope(acct.a);
    m = std::malloc(100);
    c = std::calloc(10, 300);
    r = std::realloc(nullptr, 50);
    r = std::realloc(r, 5000);  // moves to a bigger class, in the account
    n = new int[10];
    s = new std::string(200, 'x');  // two blocks: the string and its buffer
  }
  const std::size_t expect = malloc_usable_size(m) + malloc_usable_size(c) +
                             malloc_usable_size(r) + malloc_usable_size(n) +
                             malloc_usable_size(s) + malloc_usable_size(s->data());
  BOOST_TEST(acct.a.blocks() == 6u);
  BOOST_TEST(acct.a.bytes() == expect);
  bool zero = true;
  for (int i = 0; i < 3000; ++i) zero = zero && static_cast<char*>(c)[i] == 0;
  BOOST_TEST(zero);
  // Freed outside the scope, through free and delete.
  std::free(m);
  std::free(c);
  std::free(r);
  delete[] n;
  delete s;
  BOOST_TEST(acct.a.bytes() == 0u);
  BOOST_TEST(acct.a.blocks() == 0u);
}

ALLOY_MALLOC_CASE(malloc_past_the_limit_is_null_with_enomem) {
  Fresh acct("m_limit", {.limit = 256 << 10});
  // Nothing in an exhausted scope may allocate by surprise: the vector's
  // room and every check's result are made outside it.
  std::vector<void*> got;
  got.reserve(1000);
  int malloc_errno = 0, calloc_errno = 0, memalign_rc = 0;
  bool calloc_null = false, realloc_null = false;
  {
    alloy::AccountScope scope(acct.a);
    void* p;
    while ((p = std::malloc(1024)) != nullptr) got.push_back(p);
    malloc_errno = errno;
    errno = 0;
    calloc_null = std::calloc(1, 100000) == nullptr;
    calloc_errno = errno;
    realloc_null = std::realloc(got[0], 100000) == nullptr;  // got[0] intact
    void* q = nullptr;
    memalign_rc = posix_memalign(&q, 64, 4096);
  }
  BOOST_TEST(got.size() == 256u);
  BOOST_TEST(malloc_errno == ENOMEM);
  BOOST_TEST(calloc_null);
  BOOST_TEST(calloc_errno == ENOMEM);
  BOOST_TEST(realloc_null);
  BOOST_TEST(memalign_rc == ENOMEM);
  const alloy::AccountRefusal* why = alloy::last_account_refusal();
  BOOST_REQUIRE(why != nullptr);
  BOOST_TEST(std::string(why->account) == "m_limit");
  BOOST_TEST(why->limit == 256u << 10);
  BOOST_TEST(acct.a.bytes() == 256u << 10);
  void* outside = std::malloc(1 << 20);  // unscoped: no limit
  BOOST_TEST(outside != nullptr);
  std::free(outside);
  for (void* p : got) std::free(p);
  BOOST_TEST(acct.a.bytes() == 0u);
}

namespace {
int g_handler_calls = 0;
void count_handler() {
  ++g_handler_calls;
  std::set_new_handler(nullptr);  // then give up: bad_alloc
}
}  // namespace

ALLOY_MALLOC_CASE(operator_new_follows_the_new_handler_then_throws_and_the_thread_goes_on) {
  Fresh acct("m_new", {.limit = 64 << 10});
  bool threw = false, small_ok = false, nothrow_null = false;
  std::size_t blocks_held = 0;
  std::thread t([&] {
    std::vector<char>* kept = nullptr;
    {
      alloy::AccountScope scope(acct.a);
      kept = new std::vector<char>(30000);
      g_handler_calls = 0;
      std::set_new_handler(count_handler);
      try {
        auto* big = new std::vector<char>(100000);  // over the budget
        delete big;
      } catch (const std::bad_alloc&) {
        threw = true;
      }
      std::set_new_handler(nullptr);
      // The same scope goes on within its budget.
      auto* small = new std::vector<char>(1000);
      small_ok = small->size() == 1000u;
      delete small;
      nothrow_null = new (std::nothrow) char[200000] == nullptr;
    }
    blocks_held = acct.a.blocks();
    delete kept;
  });
  t.join();
  BOOST_TEST(threw);
  BOOST_TEST(g_handler_calls == 1);
  BOOST_TEST(small_ok);
  BOOST_TEST(nothrow_null);
  BOOST_TEST(blocks_held == 2u);  // the vector and its buffer
  BOOST_TEST(acct.a.bytes() == 0u);
}

ALLOY_MALLOC_CASE(nested_scopes_charge_the_innermost) {
  Fresh a("m_outer");
  Fresh b("m_inner");
  void *p, *q, *r;
  {
    alloy::AccountScope s1(a.a);
    p = std::malloc(10);
    {
      alloy::AccountScope s2(b.a);
      q = std::malloc(20);
    }
    r = std::malloc(30);
  }
  void* u = std::malloc(40);
  BOOST_TEST(a.a.blocks() == 2u);
  BOOST_TEST(b.a.blocks() == 1u);
  BOOST_TEST(a.a.bytes() == malloc_usable_size(p) + malloc_usable_size(r));
  for (void* x : {p, q, r, u}) std::free(x);
  BOOST_TEST(a.a.bytes() == 0u);
  BOOST_TEST(b.a.bytes() == 0u);
}

ALLOY_MALLOC_CASE(blocks_freed_by_another_thread_after_the_scope_credit_their_account) {
  Fresh acct("m_cross");
  Fresh other("m_cross_other");
  std::vector<void*> blocks;
  blocks.reserve(1001);  // the vector's own buffer outside the account
  {
    alloy::AccountScope scope(acct.a);
    for (int i = 0; i < 1000; ++i) blocks.push_back(std::malloc(static_cast<std::size_t>(1 + i * 97 % 90000)));
    blocks.push_back(new char[5 << 20]);
  }
  BOOST_TEST(acct.a.blocks() == 1001u);
  std::thread t([&] {
    alloy::AccountScope scope(other.a);
    for (std::size_t i = 0; i + 1 < blocks.size(); ++i) std::free(blocks[i]);
    delete[] static_cast<char*>(blocks.back());
  });
  t.join();
  BOOST_TEST(acct.a.bytes() == 0u);
  BOOST_TEST(acct.a.blocks() == 0u);
  BOOST_TEST(other.a.bytes() == 0u);
}

ALLOY_MALLOC_CASE(fork_child_keeps_accounts_working) {
  Fresh acct("m_fork", {.limit = 1 << 20});
  void* before;
  {
    alloy::AccountScope scope(acct.a);
    before = std::malloc(1000);
  }
  std::thread busy([] {
    for (int i = 0; i < 20000; ++i) {
      alloy::Account a = *alloy::Account::root().create("m_fork_busy");
      a.destroy();
    }
  });
  for (int round = 0; round < 20; ++round) {
    pid_t pid = fork();
    BOOST_TEST_REQUIRE(pid >= 0);
    if (pid == 0) {
      bool ok = true;
      alloy::Account c = *acct.a.create("child");
      void* p;
      {
        alloy::AccountScope scope(c);
        p = std::malloc(4000);
        ok = ok && p != nullptr;
        ok = ok && std::malloc(2 << 20) == nullptr;  // the parent's limit holds
      }
      ok = ok && c.bytes() == malloc_usable_size(p);  // exact once the scope ended
      std::free(p);
      std::free(before);
      ok = ok && acct.a.bytes() == 0 && acct.a.blocks() == 0;
      c.destroy();
      _exit(ok ? 0 : 1);
    }
    int status = 0;
    BOOST_TEST(waitpid(pid, &status, 0) == pid);
    BOOST_TEST(WIFEXITED(status));
    BOOST_TEST(WEXITSTATUS(status) == 0);
  }
  busy.join();
  BOOST_TEST(acct.a.blocks() == 1u);
  std::free(before);
  BOOST_TEST(acct.a.bytes() == 0u);
}

// The scoped fast lane (the scope leases a heap of its account and its
// thread allocates and frees there as owner): churn of many sizes, frees by
// another thread while the scope still holds the lease (collected by the
// scoped thread's later allocations), and the figures exact once it ends.
ALLOY_MALLOC_CASE(scoped_fast_lane_is_exact_with_churn_and_frees_from_another_thread) {
  Fresh acct("m_lane");
  std::vector<void*> live;
  std::vector<void*> handed;
  live.reserve(8000);  // outside the scope: the vectors' own buffers are not the account's
  handed.reserve(8000);
  {
    alloy::AccountScope scope(acct.a);
    for (int i = 0; i < 4000; ++i) {
      void* p = std::malloc(static_cast<std::size_t>(1 + (i * 37) % 1500));
      BOOST_TEST_REQUIRE(p != nullptr);
      if (i % 3 == 0) {
        std::free(p);  // the owner's free, in the lane
      } else if (i % 3 == 1) {
        handed.push_back(p);
      } else {
        live.push_back(p);
      }
    }
    std::thread other([&] {
      for (void* p : handed) std::free(p);  // credited at once; pushed cross-thread
    });
    other.join();
    for (int i = 0; i < 2000; ++i) live.push_back(std::malloc(static_cast<std::size_t>(8 + i % 900)));
  }
  std::size_t expect = 0;
  for (void* p : live) expect += malloc_usable_size(p);
  BOOST_TEST(acct.a.bytes() == expect);
  BOOST_TEST(acct.a.blocks() == live.size());
  {
    alloy::AccountScope scope(acct.a);  // the same lease again: its frees in the lane
    for (std::size_t i = 0; i < live.size(); i += 2) std::free(live[i]);
  }
  for (std::size_t i = 1; i < live.size(); i += 2) std::free(live[i]);  // after the scope
  BOOST_TEST(acct.a.bytes() == 0u);
  BOOST_TEST(acct.a.blocks() == 0u);
}

// fork while another thread is inside a scope (its lease's lock held for
// the scope's life: fork must not wait for it), and from inside a scope.
ALLOY_MALLOC_CASE(fork_while_another_thread_holds_a_scope) {
  Fresh acct("m_fork_lease", {.limit = 1 << 20});
  std::atomic<int> stage{0};
  std::thread holder([&] {
    alloy::AccountScope scope(acct.a);
    void* p = std::malloc(64);
    stage.store(1);
    while (stage.load() != 2) std::this_thread::yield();
    std::free(p);
  });
  while (stage.load() != 1) std::this_thread::yield();
  for (int in_scope = 0; in_scope < 2; ++in_scope) {
    alloy::Account sub = *acct.a.create(in_scope ? "s1" : "s0");
    std::optional<alloy::AccountScope> scope;
    if (in_scope) scope.emplace(sub);
    pid_t pid = fork();
    BOOST_TEST_REQUIRE(pid >= 0);
    if (pid == 0) {
      bool ok = true;
      {
        alloy::AccountScope inner(acct.a);  // the holder's lease is taken: a new one
        void* p = std::malloc(100);
        ok = ok && p != nullptr && std::malloc(2 << 20) == nullptr;
        std::free(p);
      }
      void* q = std::malloc(100);  // in sub's scope when in_scope
      ok = ok && q != nullptr;
      std::free(q);
      _exit(ok ? 0 : 1);
    }
    int status = 0;
    BOOST_TEST(waitpid(pid, &status, 0) == pid);
    BOOST_TEST(WIFEXITED(status));
    BOOST_TEST(WEXITSTATUS(status) == 0);
    scope.reset();
    sub.destroy();
  }
  stage.store(2);
  holder.join();
  BOOST_TEST(acct.a.bytes() == 0u);
}

// Blocks aligned above 2 MiB (their own mapping, not the engine's): charged
// to the scope's account, refused past its limit, credited at their free
// from any thread; reset() drops their charge and their later free does not
// credit again.
ALLOY_MALLOC_CASE(blocks_aligned_above_two_mib_are_charged) {
  Fresh acct("m_big_aligned", {.limit = 1 << 20});
  void* p = nullptr;
  void* q = nullptr;
  int refused;
  {
    alloy::AccountScope scope(acct.a);
    BOOST_TEST(posix_memalign(&p, std::size_t{4} << 20, 100000) == 0);
    refused = posix_memalign(&q, std::size_t{4} << 20, std::size_t{2} << 20);
  }
  BOOST_TEST_REQUIRE(p != nullptr);
  BOOST_TEST(reinterpret_cast<std::uintptr_t>(p) % (std::size_t{4} << 20) == 0u);
  BOOST_TEST(refused == ENOMEM);
  BOOST_TEST(acct.a.bytes() == malloc_usable_size(p));
  BOOST_TEST(acct.a.blocks() == 1u);
  std::thread([p] { std::free(p); }).join();
  BOOST_TEST(acct.a.bytes() == 0u);
  BOOST_TEST(acct.a.blocks() == 0u);
  {
    alloy::AccountScope scope(acct.a);
    p = aligned_alloc(std::size_t{8} << 20, std::size_t{8} << 10);
  }
  BOOST_TEST_REQUIRE(p != nullptr);
  BOOST_TEST(acct.a.bytes() == malloc_usable_size(p));
  acct.a.reset();
  BOOST_TEST(acct.a.bytes() == 0u);
  std::free(p);  // its own mapping: still valid after reset, not credited again
  BOOST_TEST(acct.a.bytes() == 0u);
  BOOST_TEST(acct.a.blocks() == 0u);
}

// README's "Memory accounts" snippet, as written there (less the include).
ALLOY_MALLOC_CASE(readme_snippet) {
  alloy::Account requests = *alloy::Account::root().create("requests", {.limit = 64 << 20});
  alloy::Account req = *requests.create("42", {.limit = 1 << 20, .soft_limit = 768 << 10});
  {
    alloy::AccountScope scope(req);          // this thread's malloc/new now charge requests/42
    std::vector<char> buf(4096);             // charged; a past-limit new throws std::bad_alloc
    if (std::malloc(2 << 20) == nullptr)     // past 1 MiB: NULL, errno ENOMEM
      std::puts(alloy::last_account_refusal()->message().c_str());
      // memory limit exceeded: account requests/42 (used 4096 bytes, limit 1048576 bytes) refused 2097152 bytes
  }
  auto ids = req.allocator().alloc<int>(100);                          // a handle over the account's own heap
  alloy::ChargingAllocator charged(req, alloy::page_allocator());      // any handle, charged to req
  std::string text = alloy::Account::root().report_text();            // one line an account, indented
  std::string prom = alloy::Account::root().report_prometheus();      // alloy_account_bytes{account="requests/42"} ...
  req.destroy();                                                       // its blocks freed at the cost of their pages
  BOOST_TEST(ids.has_value());
  BOOST_TEST(text.find("  42: ") != std::string::npos);
  BOOST_TEST(prom.find("alloy_account_bytes{account=\"requests/42\"}") != std::string::npos);
  BOOST_TEST(std::string(alloy::last_account_refusal()->account) == "requests/42");
  requests.destroy();
}
