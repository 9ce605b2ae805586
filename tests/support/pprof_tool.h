// alloy::testing::Pprof — runs `go tool pprof` (Debian's golang-go, which
// tools/install-deps installs) on a profile file and reads its -top table,
// so profile tests check what a person running pprof would see.
//
// top() runs `go tool pprof -top -symbolize=local -sample_index=INDEX FILE`
// with HOME pointed at the test's temporary directory; share() sums the flat
// shares (%) of the rows whose function name contains a needle, and
// cum_share() the cumulative share of the first such row.
//
// Cost: one go tool process per top() (about a second). Thread safety: one
// test thread.
//
// Example:
//   auto t = alloy::testing::Pprof::top("/tmp/heap.pb.gz", "alloc_space");
//   BOOST_TEST(t.share("site_four") > 50.0, t.output);
#pragma once

#include <sys/wait.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

namespace alloy::testing {

struct Pprof {
  std::string output;  // pprof's stdout and stderr
  int status = -1;     // the process's exit status

  static std::string tmpdir() {
    const char* t = std::getenv("TEST_TMPDIR");
    return t != nullptr ? t : "/tmp";
  }

  static Pprof run(const std::string& args) {
    Pprof p;
    const std::string cmd = "HOME=" + tmpdir() + " GOCACHE=" + tmpdir() +
                            "/gocache PPROF_TMPDIR=" + tmpdir() + " go tool pprof " + args +
                            " 2>&1";
    FILE* f = ::popen(cmd.c_str(), "r");
    if (f == nullptr) return p;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) p.output.append(buf, n);
    p.status = ::pclose(f);
    return p;
  }

  static Pprof top(const std::string& file, const std::string& sample_index) {
    return run("-top -nodecount=1000 -symbolize=local -sample_index=" + sample_index + " " +
               file);
  }

  // Rows of -top: "flat flat% sum% cum cum% name...".
  template <typename Fn>
  void rows(Fn&& fn) const {
    std::istringstream in(output);
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream row(line);
      std::string flat, flat_pct, sum_pct, cum, cum_pct;
      if (!(row >> flat >> flat_pct >> sum_pct >> cum >> cum_pct)) continue;
      if (flat_pct.back() != '%' || cum_pct.back() != '%') continue;
      if (!std::isdigit(static_cast<unsigned char>(flat_pct[0]))) continue;  // the header
      std::string name;
      std::getline(row, name);
      fn(std::stod(flat_pct), std::stod(cum_pct), name);
    }
  }

  double share(const std::string& needle) const {
    double sum = 0;
    rows([&](double flat, double, const std::string& name) {
      if (name.find(needle) != std::string::npos) sum += flat;
    });
    return sum;
  }

  double cum_share(const std::string& needle) const {
    double found = -1;
    rows([&](double, double cum, const std::string& name) {
      if (found < 0 && name.find(needle) != std::string::npos) found = cum;
    });
    return found < 0 ? 0 : found;
  }
};

}  // namespace alloy::testing
