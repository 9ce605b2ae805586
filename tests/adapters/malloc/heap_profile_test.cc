// Sampled heap profiles through the malloc adapter: every malloc of the
// process is a candidate, sampled Poisson by bytes; the profile is read back
// with go tool pprof. Call sites allocate in the ratio 1:2:4; in-use bytes
// fall after frees; the leak profile names the leaking function; profiles
// from 4 threads and from a forked child.
#define BOOST_TEST_MODULE heap_profile
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "alloy/adapters/malloc/malloc_adapter.h"
#include "alloy/profile/sampler.h"
#include "malloc_test_util.h"
#include "tests/support/pprof_tool.h"

using alloy::testing::Pprof;

namespace prof_sites {

constexpr std::size_t kRing = 512;

// A ring of live blocks per caller: each call frees the oldest and keeps a new one.
struct Ring {
  void* slot[kRing] = {};
  std::size_t next = 0;
  void put(void* p) {
    std::free(slot[next]);
    slot[next] = p;
    next = (next + 1) % kRing;
  }
  void clear() {
    for (void*& p : slot) {
      std::free(p);
      p = nullptr;
    }
  }
};

[[gnu::noinline]] void* site_one(std::size_t n) { return std::malloc(n); }
[[gnu::noinline]] void* site_two(std::size_t n) { return std::malloc(n); }
[[gnu::noinline]] void* site_four(std::size_t n) { return std::malloc(n); }
[[gnu::noinline]] void* leaky_function(std::size_t n) { return std::malloc(n); }
[[gnu::noinline]] void* calloc_site(std::size_t n) { return std::calloc(1, n); }
[[gnu::noinline]] void* malloc_site(std::size_t n) { return std::malloc(n); }

// `bytes` in total in the ratio 1:2:4, blocks of `size`, interleaved.
void run_sites(Ring& ring, std::size_t bytes, std::size_t size) {
  for (std::size_t done = 0; done < bytes; done += 7 * size) {
    ring.put(site_one(size));
    ring.put(site_two(size));
    ring.put(site_two(size));
    for (int k = 0; k < 4; ++k) ring.put(site_four(size));
  }
}

}  // namespace prof_sites

namespace {

std::string path_of(const std::string& name) { return Pprof::tmpdir() + "/" + name; }

// The profile's shares of the three sites match 1:2:4 within `bound` points.
void check_shares(const std::string& path, const char* index, double bound) {
  const Pprof t = Pprof::top(path, index);
  BOOST_TEST_REQUIRE(t.status == 0, t.output);
  const double one = t.cum_share("prof_sites::site_one");
  const double two = t.cum_share("prof_sites::site_two");
  const double four = t.cum_share("prof_sites::site_four");
  const double sum = one + two + four;
  BOOST_TEST_REQUIRE(sum > 0, t.output);
  BOOST_TEST(std::abs(100 * one / sum - 100.0 / 7) < bound, t.output);
  BOOST_TEST(std::abs(100 * two / sum - 200.0 / 7) < bound, t.output);
  BOOST_TEST(std::abs(100 * four / sum - 400.0 / 7) < bound, t.output);
  // Frame 0 of every sample is the caller of malloc, not alloy.
  BOOST_TEST(t.output.find("alloy::engine") == std::string::npos, t.output);
  BOOST_TEST(t.output.find("alloy::malloc_adapter") == std::string::npos, t.output);
}

// The profile's estimate of all bytes allocated, in MiB (pprof's MB).
double total_mb(const std::string& path) {
  const Pprof t = Pprof::run("-top -unit=MB -sample_index=alloc_space " + path);
  const auto of = t.output.find(" of ");
  BOOST_TEST_REQUIRE(of != std::string::npos, t.output);
  return std::stod(t.output.substr(of + 4));
}

ALLOY_MALLOC_ALWAYS_CHECK_ACTIVE_MALLOC()

// 64 MiB at a mean of 16 KiB: ~4000 samples, each share's standard error
// under 0.8 points; the bound is 4 (five sigma).
ALLOY_MALLOC_CASE(sites_in_ratio_1_2_4_show_in_pprof_within_bounds) {
  alloy::engine::set_profile_rate(16 * 1024);
  prof_sites::Ring ring;
  prof_sites::run_sites(ring, std::size_t{64} << 20, 256);
  const std::string path = path_of("sites.pb.gz");
  BOOST_REQUIRE(alloy::profile::Sampler::instance().write(path.c_str(), false));
  check_shares(path, "alloc_space", 4.0);
  check_shares(path, "alloc_objects", 4.0);
  // The estimate of the bytes allocated: 64 MiB within 6% (~3.5 sigma).
  BOOST_TEST(std::abs(total_mb(path) - 64) < 64 * 0.06);
  // Mixed sizes, small to large blocks: each site allocates every size in turn.
  prof_sites::Ring mixed;
  for (std::size_t size : {24, 200, 3000, 70000}) {
    prof_sites::run_sites(mixed, std::size_t{16} << 20, size);
  }
  BOOST_REQUIRE(alloy::profile::Sampler::instance().write(path.c_str(), false));
  check_shares(path, "alloc_space", 4.0);
  BOOST_TEST(std::abs(total_mb(path) - 128) < 128 * 0.06);
  ring.clear();
  mixed.clear();
  alloy::engine::set_profile_rate(0);
}

ALLOY_MALLOC_CASE(inuse_bytes_fall_after_frees_and_the_leak_profile_names_the_leak) {
  alloy::engine::set_profile_rate(8 * 1024);
  std::vector<void*> kept, leaked;
  for (int i = 0; i < 20000; ++i) kept.push_back(prof_sites::site_four(512));
  for (int i = 0; i < 10000; ++i) leaked.push_back(prof_sites::leaky_function(512));
  const std::string before = path_of("before.pb.gz");
  BOOST_REQUIRE(alloy::profile::Sampler::instance().write(before.c_str(), false));
  for (void* p : kept) std::free(p);
  const std::string after = path_of("after.pb.gz");
  BOOST_REQUIRE(alloy::profile::Sampler::instance().write(after.c_str(), false));
  const Pprof b = Pprof::top(before, "inuse_space");
  const Pprof a = Pprof::top(after, "inuse_space");
  BOOST_TEST(b.cum_share("prof_sites::site_four") > 50.0, b.output);
  BOOST_TEST(a.cum_share("prof_sites::site_four") == 0.0, a.output);
  BOOST_TEST(a.cum_share("prof_sites::leaky_function") > 90.0, a.output);
  // What was allocated stays in the alloc_* values.
  BOOST_TEST(Pprof::top(after, "alloc_space").cum_share("prof_sites::site_four") > 50.0);
  // The leak profile holds only live blocks: the leak, not site_four.
  const std::string leaks = path_of("leaks.pb.gz");
  BOOST_REQUIRE(alloy::profile::Sampler::instance().write(leaks.c_str(), true));
  const Pprof l = Pprof::top(leaks, "alloc_space");
  BOOST_TEST(l.output.find("prof_sites::leaky_function") != std::string::npos, l.output);
  BOOST_TEST(l.output.find("site_four") == std::string::npos, l.output);
  for (void* p : leaked) std::free(p);
  alloy::engine::set_profile_rate(0);
}

ALLOY_MALLOC_CASE(four_threads_while_a_profile_is_written) {
  alloy::engine::set_profile_rate(16 * 1024);
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      prof_sites::Ring ring;
      prof_sites::run_sites(ring, std::size_t{16} << 20, 128);
      // Keep allocating while the main thread writes profiles.
      while (!stop.load()) prof_sites::run_sites(ring, 1 << 20, 128);
      ring.clear();
    });
  }
  const std::string path = path_of("threads.pb.gz");
  for (int i = 0; i < 5; ++i) BOOST_REQUIRE(alloy::profile::Sampler::instance().write(path.c_str(), false));
  stop = true;
  for (auto& t : threads) t.join();
  BOOST_REQUIRE(alloy::profile::Sampler::instance().write(path.c_str(), false));
  check_shares(path, "alloc_space", 4.0);
  alloy::engine::set_profile_rate(0);
}

ALLOY_MALLOC_CASE(a_forked_child_samples_and_writes_its_own_profile) {
  alloy::engine::set_profile_rate(16 * 1024);
  // Another thread keeps sampling across the fork.
  std::atomic<bool> stop{false};
  std::thread busy([&] {
    prof_sites::Ring ring;
    while (!stop.load()) prof_sites::run_sites(ring, 1 << 20, 64);
    ring.clear();
  });
  const std::string path = path_of("child.pb.gz");
  const pid_t pid = fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    prof_sites::Ring ring;
    prof_sites::run_sites(ring, std::size_t{32} << 20, 256);
    const bool ok = alloy::profile::Sampler::instance().write(path.c_str(), false);
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  BOOST_REQUIRE(waitpid(pid, &status, 0) == pid);
  stop = true;
  busy.join();
  BOOST_TEST_REQUIRE((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  check_shares(path, "alloc_space", 5.0);
  alloy::engine::set_profile_rate(0);
}

// calloc above 64 KiB (large and huge blocks, engine::alloc_zeroed) is
// sampled as malloc is, and a sampled block is zeroed too.
ALLOY_MALLOC_CASE(calloc_above_64_kib_is_sampled_and_zeroed) {
  alloy::engine::set_profile_rate(64 * 1024);
  bool all_zero = true;
  auto use = [&](void* p, std::size_t n, bool zeroed) {
    BOOST_REQUIRE(p != nullptr);
    const auto* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; zeroed && i < n; ++i) all_zero = all_zero && b[i] == 0;
    std::memset(p, 0xab, n);  // dirty for the next calloc of this block
    std::free(p);
  };
  // Equal bytes through calloc and malloc, in large (100 KB) and huge (3 MiB) blocks.
  for (int i = 0; i < 400; ++i) {
    use(prof_sites::calloc_site(100000), 100000, true);
    use(prof_sites::malloc_site(100000), 100000, false);
  }
  for (int i = 0; i < 12; ++i) {
    use(prof_sites::calloc_site(3 << 20), 3 << 20, true);
    use(prof_sites::malloc_site(3 << 20), 3 << 20, false);
  }
  BOOST_TEST(all_zero);
  const std::string path = path_of("calloc.pb.gz");
  BOOST_REQUIRE(alloy::profile::Sampler::instance().write(path.c_str(), false));
  const Pprof t = Pprof::top(path, "alloc_space");
  const double c = t.cum_share("prof_sites::calloc_site");
  const double m = t.cum_share("prof_sites::malloc_site");
  BOOST_TEST_REQUIRE(c + m > 0, t.output);
  BOOST_TEST(std::abs(100 * c / (c + m) - 50) < 12, t.output);
  alloy::engine::set_profile_rate(0);
}

#if !defined(ALLOY_MALLOC_TESTS_DISABLED)
// The adapter's public calls (alloy/adapters/malloc/malloc_adapter.h).
ALLOY_MALLOC_CASE(public_write_and_rate) {
  alloy::profile::set_rate(32 * 1024);
  BOOST_TEST(alloy::profile::rate() == 32 * 1024);
  prof_sites::Ring ring;
  prof_sites::run_sites(ring, std::size_t{32} << 20, 256);
  const std::string path = path_of("public.pb.gz");
  BOOST_REQUIRE(alloy::profile::write(path.c_str()));
  check_shares(path, "alloc_space", 5.0);
  const std::string leaks = path_of("public_leaks.pb.gz");
  BOOST_REQUIRE(alloy::profile::write_leaks(leaks.c_str()));
  ring.clear();
  BOOST_TEST(!alloy::profile::write("/nonexistent/dir/x.pb.gz"));
  alloy::profile::set_rate(0);
}
#endif

}  // namespace
