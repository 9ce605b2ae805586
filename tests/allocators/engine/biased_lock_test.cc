// alloy::BiasedLock: mutual exclusion holds across the moment a second
// thread first takes a lock its owner is hammering, for the owner, for late
// threads, and in a forked child.
#define BOOST_TEST_MODULE biased_lock
#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "alloy/allocators/engine/biased_lock.h"
#include "alloy/base/config.h"

using alloy::BiasedLock;


namespace {

// A protected counter that notices overlapping holders: `inside` must be 0
// on entry, and the non-atomic read-modify-write of `count` loses updates if
// two holders overlap.
struct Protected {
  BiasedLock lock;
  std::uint64_t count = 0;
  int inside = 0;
  std::atomic<int> overlaps{0};

  void bump() {
    lock.lock();
    enter();
    const std::uint64_t c = count;
    // A window for another holder to slip in, were exclusion broken.
    for (int i = 0; i < 64; ++i) __asm__ volatile("" ::: "memory");
    count = c + 1;
    --inside;
    lock.unlock();
  }
  // The same through try_lock; returns whether it got in.
  bool try_bump() {
    if (!lock.try_lock()) return false;
    enter();
    ++count;
    --inside;
    lock.unlock();
    return true;
  }
  void enter() {
    if (inside++ != 0) overlaps.fetch_add(1, std::memory_order_relaxed);
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(one_thread_stays_on_the_owner_path) {
  Protected p;
  for (int i = 0; i < 100000; ++i) p.bump();
  BOOST_TEST(p.count == 100000u);
  // Without membarrier (or under TSan) the lock is shared from the start.
  BOOST_TEST_MESSAGE("shared after one thread: " << p.lock.shared());
}

BOOST_AUTO_TEST_CASE(owner_and_newcomers_never_overlap) {
  // Many fresh locks, each hammered by its owner while three more threads
  // arrive: the hand-over from the owner path to the spin lock is the
  // delicate moment, so it is repeated.
  for (int round = 0; round < 100; ++round) {
    Protected p;
    std::atomic<int> done{0};
    constexpr int kPerThread = 500;
    std::uint64_t owner_bumps = 1;
    p.bump();  // the main thread is the owner
    std::vector<std::thread> others;
    for (int t = 0; t < 3; ++t) {
      others.emplace_back([&] {
        for (int i = 0; i < kPerThread; ++i) p.bump();
        done.fetch_add(1);
      });
    }
    // The owner keeps going until every newcomer is through, so newcomers
    // always arrive while it is busy.
    while (done.load() < 3) {
      p.bump();
      ++owner_bumps;
    }
    for (auto& t : others) t.join();
    BOOST_TEST_REQUIRE(p.overlaps.load() == 0);
    BOOST_TEST_REQUIRE(p.count == owner_bumps + 3u * kPerThread);
    BOOST_TEST(p.lock.shared());
  }
}

BOOST_AUTO_TEST_CASE(a_lock_first_taken_by_another_thread_is_shared_for_its_creator) {
  Protected p;
  std::thread([&] { p.bump(); }).join();  // that thread is the owner
  p.bump();                               // the creator is a newcomer
  BOOST_TEST(p.lock.shared());
  BOOST_TEST(p.count == 2u);
}

BOOST_AUTO_TEST_CASE(a_forked_child_can_share_the_lock_with_a_new_thread) {
  Protected p;
  p.bump();
  const pid_t pid = fork();
  BOOST_TEST_REQUIRE(pid >= 0);
  if (pid == 0) {
    // The child's membarrier registration is gone; going shared must still
    // be correct.
    std::thread t([&] {
      for (int i = 0; i < 10000; ++i) p.bump();
    });
    for (int i = 0; i < 10000; ++i) p.bump();
    t.join();
    _exit(p.count == 20001u && p.overlaps.load() == 0 ? 0 : 1);
  }
  int status = 0;
  BOOST_TEST_REQUIRE(waitpid(pid, &status, 0) == pid);
  BOOST_TEST(WIFEXITED(status));
  BOOST_TEST(WEXITSTATUS(status) == 0);
}

BOOST_AUTO_TEST_CASE(try_lock_never_makes_the_lock_shared) {
  Protected p;
  BOOST_TEST(p.try_bump());  // the first taker becomes the owner
  bool other_got_in = true;
  std::thread([&] { other_got_in = p.try_bump(); }).join();
  if (BiasedLock::owner_path_available()) {
    BOOST_TEST(!other_got_in);  // unshared: only the owner gets in
    BOOST_TEST(!p.lock.shared());
  }
  std::thread([&] { p.bump(); }).join();  // lock() does make it shared
  BOOST_TEST(p.lock.shared());
  std::thread([&] { other_got_in = p.try_bump(); }).join();
  BOOST_TEST(other_got_in);
  BOOST_TEST(p.try_bump());
  BOOST_TEST(p.count == (BiasedLock::owner_path_available() ? 4u : 5u));
}

BOOST_AUTO_TEST_CASE(try_lock_and_lock_mixed_from_four_threads_never_overlap) {
  Protected p;
  p.bump();
  std::atomic<std::uint64_t> done{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::uint64_t mine = 0;
      for (int i = 0; i < 5000; ++i) {
        if ((i + t) % 3 == 0) {
          mine += p.try_bump() ? 1 : 0;
        } else {
          p.bump();
          ++mine;
        }
      }
      done.fetch_add(mine);
    });
  }
  for (auto& t : threads) t.join();
  BOOST_TEST(p.overlaps.load() == 0);
  BOOST_TEST(p.count == 1u + done.load());
}

BOOST_AUTO_TEST_CASE(a_child_forked_while_a_thread_waits_inside_the_lock_can_use_it) {
  // The owner holds the lock; another thread is queued inside it (it holds
  // the spin word and waits for the owner) when fork() copies it. The child
  // resets the lock, as the engine's fork handler does, and must be able to
  // take it from a new thread.
  BiasedLock lock;
  lock.lock();  // the owner
  std::thread queued([&] {
    lock.lock();
    lock.unlock();
  });
  if (BiasedLock::owner_path_available()) {
    while (!lock.shared()) std::this_thread::yield();  // queued and waiting
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const pid_t pid = fork();
  BOOST_TEST_REQUIRE(pid >= 0);
  if (pid == 0) {
    lock.reset_after_fork();
    bool ok = false;
    auto take = [&] {
      lock.lock();
      ok = true;
      lock.unlock();
    };
#if defined(ALLOY_HAVE_TSAN)
    take();  // TSan cannot start threads after a multi-threaded fork
#else
    std::thread(take).join();
#endif
    _exit(ok ? 0 : 1);
  }
  lock.unlock();
  queued.join();
  // A child stuck in the lock is killed and reported, not waited for forever.
  int status = 0;
  pid_t r = 0;
  for (int ms = 0; ms < 10000 && r == 0; ms += 5) {
    r = waitpid(pid, &status, WNOHANG);
    if (r == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (r == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  BOOST_TEST(r == pid, "the child hung taking the lock");
  BOOST_TEST(WIFEXITED(status));
  BOOST_TEST(WEXITSTATUS(status) == 0);
}

BOOST_AUTO_TEST_CASE(a_plain_lock_is_a_spin_lock_from_the_start) {
  Protected p;
  p.lock.make_plain();
  BOOST_TEST(p.lock.shared());
  BOOST_TEST(p.try_bump());
  bool other_got_in = false;
  std::thread([&] { other_got_in = p.try_bump(); }).join();
  BOOST_TEST(other_got_in);  // no owner: any thread's try_lock works
  p.lock.lock();
  bool blocked = true;
  std::thread([&] { blocked = !p.lock.try_lock(); }).join();
  BOOST_TEST(blocked);  // and it still excludes
  p.lock.unlock();
  BOOST_TEST(p.count == 2u);
}
