// The sampler: exponential distances with the right mean, Poisson sampling
// that estimates each call site's bytes, in-use values that fall after frees,
// and leak profiles, read back with go tool pprof.
#define BOOST_TEST_MODULE sampler
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "alloy/profile/sampler.h"
#include "alloy/profile/stack.h"
#include "tests/support/pprof_tool.h"

using alloy::profile::Sampler;
using alloy::testing::Pprof;

namespace sampler_test {

constexpr std::int64_t kRate = 4096;
std::uint64_t g_rng = 12345;
std::int64_t g_countdown = 0;
std::uintptr_t g_next_addr = 0x100000;
std::vector<std::uintptr_t> g_sampled_four;  // sampled blocks of site_four

// What an allocator does per allocation: charge the bytes, sample on crossing.
[[gnu::noinline]] std::uintptr_t allocate(std::size_t size) {
  const std::uintptr_t p = g_next_addr;
  g_next_addr += size;
  g_countdown -= static_cast<std::int64_t>(size);
  if (g_countdown <= 0) {
    g_countdown = Sampler::instance().next_distance(&g_rng);
    std::uintptr_t frames[alloy::profile::kMaxFrames];
    const int n = alloy::profile::capture_stack(frames, alloy::profile::kMaxFrames, 0);
    Sampler::instance().record(reinterpret_cast<void*>(p), size, frames, n);
    return p | 1;  // tells the caller it was sampled (the low bit is free)
  }
  return p;
}

[[gnu::noinline]] void site_one() { (void)allocate(256); }
[[gnu::noinline]] void site_two() { (void)allocate(256); }
[[gnu::noinline]] void site_four() {
  const std::uintptr_t p = allocate(256);
  if (p & 1) g_sampled_four.push_back(p & ~std::uintptr_t{1});
}

}  // namespace sampler_test

namespace {

std::string path_of(const char* name) { return Pprof::tmpdir() + "/" + name; }

BOOST_AUTO_TEST_CASE(distances_are_exponential_with_the_rate_as_mean) {
  Sampler& s = Sampler::instance();
  s.set_rate(512 * 1024);
  std::uint64_t rng = 99;
  double sum = 0, sum_sq = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double d = static_cast<double>(s.next_distance(&rng));
    sum += d;
    sum_sq += d * d;
  }
  const double mean = sum / n;
  const double sd = std::sqrt(sum_sq / n - mean * mean);
  // Exponential: the standard deviation equals the mean. 200k draws: the
  // mean is within 1% of the rate at about 4.5 sigma.
  BOOST_TEST(mean > 0.99 * 512 * 1024);
  BOOST_TEST(mean < 1.01 * 512 * 1024);
  BOOST_TEST(sd > 0.97 * mean);
  BOOST_TEST(sd < 1.03 * mean);
  s.set_rate(0);
  BOOST_TEST(s.next_distance(&rng) == 1);
}

BOOST_AUTO_TEST_CASE(sites_in_ratio_1_2_4_have_shares_within_bounds) {
  using namespace sampler_test;
  Sampler& s = Sampler::instance();
  s.set_rate(kRate);
  g_countdown = s.next_distance(&g_rng);
  // 64 MiB in 256-byte blocks: ~16k samples, so each share's standard error
  // is under 0.5 percentage points; the bounds are 2.5 (five sigma).
  for (int i = 0; i < 64 * 1024 * 1024 / (7 * 256); ++i) {
    site_one();
    site_two();
    site_two();
    for (int k = 0; k < 4; ++k) site_four();
  }
  BOOST_TEST(s.total_samples() > 10000u);
  const std::string path = path_of("sampled.pb.gz");
  BOOST_REQUIRE(s.write(path.c_str(), false));
  for (const char* index : {"alloc_space", "inuse_space", "alloc_objects"}) {
    const Pprof t = Pprof::top(path, index);
    BOOST_TEST_REQUIRE(t.status == 0, t.output);
    BOOST_TEST(std::abs(t.cum_share("sampler_test::site_one") - 100.0 / 7) < 2.5, t.output);
    BOOST_TEST(std::abs(t.cum_share("sampler_test::site_two") - 200.0 / 7) < 2.5, t.output);
    BOOST_TEST(std::abs(t.cum_share("sampler_test::site_four") - 400.0 / 7) < 2.5, t.output);
  }
  // The estimate of the total: 64 MiB (pprof's MB are MiB), within 3%.
  const Pprof bytes = Pprof::run("-top -unit=MB -sample_index=alloc_space " + path);
  const auto of = bytes.output.find(" of ");
  BOOST_REQUIRE(of != std::string::npos);
  const double total_mb = std::stod(bytes.output.substr(of + 4));
  BOOST_TEST(total_mb > 0.97 * 64, bytes.output);
  BOOST_TEST(total_mb < 1.03 * 64, bytes.output);

  // Freeing every block of site_four: its in-use share goes, alloc stays.
  for (std::uintptr_t p : g_sampled_four) BOOST_TEST(s.forget(reinterpret_cast<void*>(p)));
  BOOST_TEST(!s.forget(reinterpret_cast<void*>(0x42)));
  BOOST_REQUIRE(s.write(path.c_str(), false));
  const Pprof inuse = Pprof::top(path, "inuse_space");
  BOOST_TEST(inuse.cum_share("sampler_test::site_four") == 0.0, inuse.output);
  BOOST_TEST(std::abs(inuse.cum_share("sampler_test::site_two") - 200.0 / 3) < 3.0, inuse.output);
  const Pprof alloc = Pprof::top(path, "alloc_space");
  BOOST_TEST(std::abs(alloc.cum_share("sampler_test::site_four") - 400.0 / 7) < 2.5, alloc.output);

  // The leak profile holds only what is live: no site_four at all.
  BOOST_REQUIRE(s.write(path.c_str(), true));
  const Pprof leaks = Pprof::top(path, "alloc_space");
  BOOST_TEST(leaks.output.find("site_four") == std::string::npos, leaks.output);
  BOOST_TEST(leaks.output.find("sampler_test::site_one") != std::string::npos, leaks.output);
  s.set_rate(0);
}

}  // namespace
