// The pprof writer and the frame-pointer walker, checked through what
// `go tool pprof` shows for the profiles they make.
#define BOOST_TEST_MODULE pprof_writer
#include <boost/test/unit_test.hpp>

#include <dlfcn.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <sstream>
#include <string>

#include "alloy/profile/elf_symbols.h"
#include "alloy/profile/pprof_writer.h"
#include "alloy/profile/stack.h"
#include "tests/support/pprof_tool.h"

namespace {

using alloy::profile::PprofWriter;
using alloy::profile::SampleValues;
using alloy::testing::Pprof;

std::string temp_path(const char* name) { return Pprof::tmpdir() + "/" + name; }

// pprof prints shares with two decimals.
bool near(double a, double b) { return a > b - 0.01 && a < b + 0.01; }

// Names from the dynamic symbol table (the test links with -rdynamic), so
// the profile carries functions and pprof needs no DWARF.
bool dladdr_symbolize(void*, std::uintptr_t pc, alloy::profile::Frame* out) {
  Dl_info info;
  if (::dladdr(reinterpret_cast<void*>(pc), &info) == 0 || info.dli_sname == nullptr) return false;
  out->system_name = info.dli_sname;
  return true;
}

}  // namespace

// External linkage, for dladdr (ElfSymbols reads local symbols too).
namespace prof_test {

// Each site records its own stack with `bytes` allocated and still live.
[[gnu::noinline]] void record_here(PprofWriter& w, std::int64_t objects, std::int64_t bytes) {
  std::uintptr_t frames[alloy::profile::kMaxFrames];
  const int n = alloy::profile::capture_stack(frames, alloy::profile::kMaxFrames, 0);
  w.add(frames, n, SampleValues{objects, bytes, objects, bytes});
}
[[gnu::noinline]] void site_one(PprofWriter& w) { record_here(w, 1, 1000); }
[[gnu::noinline]] void site_two(PprofWriter& w) { record_here(w, 2, 2000); }
[[gnu::noinline]] void site_four(PprofWriter& w) { record_here(w, 4, 4000); }

}  // namespace prof_test

namespace {

using prof_test::site_four;
using prof_test::site_one;
using prof_test::site_two;

BOOST_AUTO_TEST_CASE(go_tool_pprof_shows_each_site_share) {
  PprofWriter w;
  site_one(w);
  site_two(w);
  site_four(w);
  const std::string path = temp_path("sites.pb.gz");
  BOOST_REQUIRE(w.write_file(path.c_str(), dladdr_symbolize, nullptr));
  for (const char* index : {"alloc_space", "inuse_space", "alloc_objects", "inuse_objects"}) {
    const Pprof t = Pprof::top(path, index);
    BOOST_TEST_REQUIRE(t.status == 0, t.output);
    BOOST_TEST(near(t.cum_share("site_one"), 100.0 / 7), t.output);
    BOOST_TEST(near(t.cum_share("site_two"), 200.0 / 7), t.output);
    BOOST_TEST(near(t.cum_share("site_four"), 400.0 / 7), t.output);
    BOOST_TEST(near(t.share("record_here"), 100.0), t.output);
  }
}

// ElfSymbols names functions from the symbol tables, without malloc, DWARF
// or -rdynamic: the profile's names are what pprof shows (demangled).
BOOST_AUTO_TEST_CASE(elf_symbols_name_functions_of_every_object) {
  alloy::profile::ElfSymbols symbols;
  BOOST_TEST(std::string(symbols.function_at(reinterpret_cast<std::uintptr_t>(&site_two) + 1)) ==
             "_ZN9prof_test8site_twoERN5alloy7profile11PprofWriterE");
  // A function of another object (libc).
  const char* in_libc = symbols.function_at(reinterpret_cast<std::uintptr_t>(&::getpid));
  BOOST_REQUIRE(in_libc != nullptr);
  BOOST_TEST(std::string(in_libc).find("getpid") != std::string::npos, in_libc);
  BOOST_TEST(symbols.function_at(0x10) == nullptr);
  // The first lookups scan, later ones search a sorted table: an address
  // with aliases (libc's getpid and __getpid) keeps one name across both.
  const auto getpid_pc = reinterpret_cast<std::uintptr_t>(&::getpid) + 1;
  const std::string scanned = symbols.function_at(getpid_pc);
  for (int i = 0; i < 64; ++i) (void)symbols.function_at(getpid_pc);
  BOOST_TEST(std::string(symbols.function_at(getpid_pc)) == scanned);
  PprofWriter w;
  site_one(w);
  site_two(w);
  site_four(w);
  const std::string path = temp_path("elf.pb.gz");
  BOOST_REQUIRE(w.write_file(path.c_str(), alloy::profile::ElfSymbols::symbolize, &symbols));
  const Pprof t = Pprof::top(path, "inuse_space");
  BOOST_TEST_REQUIRE(t.status == 0, t.output);
  BOOST_TEST(near(t.cum_share("prof_test::site_one"), 100.0 / 7), t.output);
  BOOST_TEST(near(t.cum_share("prof_test::site_two"), 200.0 / 7), t.output);
  BOOST_TEST(near(t.cum_share("prof_test::site_four"), 400.0 / 7), t.output);
}

BOOST_AUTO_TEST_CASE(profile_larger_than_one_deflate_block_reads_back_whole) {
  // 20000 samples are ~400 KB of proto: several stored blocks of 64 KiB.
  PprofWriter w;
  for (int i = 0; i < 10000; ++i) site_one(w);
  for (int i = 0; i < 10000; ++i) site_four(w);
  BOOST_TEST(w.samples() == 20000u);
  const std::string path = temp_path("big.pb.gz");
  BOOST_REQUIRE(w.write_file(path.c_str(), dladdr_symbolize, nullptr));
  const Pprof t = Pprof::top(path, "alloc_objects");
  BOOST_TEST_REQUIRE(t.status == 0, t.output);
  BOOST_TEST(t.output.find("of 50000 total") != std::string::npos, t.output);
  BOOST_TEST(near(t.cum_share("site_four"), 80.0), t.output);
}

// Without a symbolizer the profile holds addresses and the mappings pprof
// needs to symbolize them from the binaries: each file with its build id.
BOOST_AUTO_TEST_CASE(mappings_carry_the_binary_build_id) {
  PprofWriter w;
  site_two(w);
  const std::string path = temp_path("raw.pb.gz");
  BOOST_REQUIRE(w.write_file(path.c_str()));
  const Pprof raw = Pprof::run("-raw " + path);
  BOOST_TEST_REQUIRE(raw.status == 0, raw.output);
  // readelf names the same build id the profile's mapping carries.
  std::string note;
  const std::string cmd = "readelf -n /proc/" + std::to_string(::getpid()) + "/exe 2>/dev/null";
  FILE* f = ::popen(cmd.c_str(), "r");
  BOOST_REQUIRE(f != nullptr);
  char line[512];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    std::istringstream words(line);
    std::string w1, w2;
    while (words >> w1) {
      if (w1 == "ID:" && w2 == "Build" && words >> note) break;
      w2 = w1;
    }
  }
  ::pclose(f);
  BOOST_TEST_REQUIRE(!note.empty());
  BOOST_TEST(raw.output.find(note) != std::string::npos, raw.output);
  // Every location lies in a mapping ("M=1": the test binary).
  BOOST_TEST(raw.output.find(" M=1 ") != std::string::npos, raw.output);
}

BOOST_AUTO_TEST_CASE(empty_profile_is_valid) {
  PprofWriter w(512 * 1024);
  const std::string path = temp_path("empty.pb.gz");
  BOOST_REQUIRE(w.write_file(path.c_str()));
  const Pprof t = Pprof::run("-raw " + path);
  BOOST_TEST(t.status == 0, t.output);
  BOOST_TEST(t.output.find("PeriodType: space bytes") != std::string::npos, t.output);
  BOOST_TEST(t.output.find("Period: 524288") != std::string::npos, t.output);
}

BOOST_AUTO_TEST_CASE(unsampled_scales_by_the_poisson_probability) {
  // A block of exactly the mean stands for 1 / (1 - e^-1) = 1.582 blocks.
  const SampleValues v = alloy::profile::unsampled(1000, 1000, true);
  BOOST_TEST(v.alloc_space == 1582);
  BOOST_TEST(v.inuse_space == 1582);
  BOOST_TEST(v.alloc_objects == 2);
  // Tiny blocks stand for rate / size of them; huge ones for themselves.
  BOOST_TEST(alloy::profile::unsampled(8, 524288, false).alloc_space == 524292);
  BOOST_TEST(alloy::profile::unsampled(8, 524288, false).inuse_space == 0);
  BOOST_TEST(alloy::profile::unsampled(1 << 30, 524288, true).alloc_space == 1 << 30);
  // rate 1: exact.
  BOOST_TEST(alloy::profile::unsampled(24, 1, true).alloc_objects == 1);
  BOOST_TEST(alloy::profile::unsampled(24, 1, true).alloc_space == 24);
}

std::uintptr_t g_frames[alloy::profile::kMaxFrames];
int g_depth = 0;
std::uintptr_t g_ret0 = 0, g_ret1 = 0;

[[gnu::noinline]] void walk_inner() {
  g_depth = alloy::profile::capture_stack(g_frames, alloy::profile::kMaxFrames, 0);
  g_ret0 = reinterpret_cast<std::uintptr_t>(__builtin_return_address(0));
  asm volatile("" ::: "memory");
}
[[gnu::noinline]] void walk_outer() {
  walk_inner();
  g_ret1 = reinterpret_cast<std::uintptr_t>(__builtin_return_address(0));
  asm volatile("" ::: "memory");
}

BOOST_AUTO_TEST_CASE(capture_stack_follows_frame_pointers) {
  walk_outer();
  BOOST_TEST_REQUIRE(g_depth >= 3);
  // frames[0] is in walk_inner, then its caller's call site, then the test's.
  BOOST_TEST(g_frames[1] == g_ret0);
  BOOST_TEST(g_frames[2] == g_ret1);
  // skip drops frames from the top; max caps the depth.
  std::uintptr_t few[2];
  BOOST_TEST(alloy::profile::capture_stack(few, 2, 0) == 2);
}

}  // namespace
