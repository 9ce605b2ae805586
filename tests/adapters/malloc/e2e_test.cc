// End to end: real, unmodified Debian programs (python3, sqlite3, g++) run
// with and without LD_PRELOAD=liballoy_malloc.so must print identical
// output; the environment options (ALLOY_STATS, ALLOY_VERBOSE,
// ALLOY_EAGER_PURGE) do what the README says.
#define BOOST_TEST_MODULE malloc_e2e
#include <boost/test/unit_test.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

#ifdef ALLOY_MALLOC_TESTS_DISABLED
#define E2E_CASE(name) BOOST_AUTO_TEST_CASE(name, *boost::unit_test::disabled())
#else
#define E2E_CASE(name) BOOST_AUTO_TEST_CASE(name)
#endif

#include "tests/support/pprof_tool.h"

namespace {

struct Run {
  int status = -1;  // exit code, or 128 + signal
  std::string out;
  std::string err;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string tmpdir() {
  const char* t = std::getenv("TEST_TMPDIR");
  return t != nullptr ? t : "/tmp";
}

// A runfile's absolute path (tests run with the runfiles tree as cwd).
std::string runfile(const std::string& rel) {
  char buf[PATH_MAX];
  if (realpath(rel.c_str(), buf) == nullptr) return rel;
  return buf;
}

std::string preload_library() {
  if (const char* so = std::getenv("ALLOY_MALLOC_SO")) return so;
  return runfile("adapters/liballoy_malloc.so");
}

// Runs argv with the current environment minus LD_PRELOAD and ALLOY_*, plus
// `extra` ("NAME=value"), stdin from `stdin_path` (or /dev/null).
Run run(const std::vector<std::string>& argv, const std::vector<std::string>& extra,
        const std::string& stdin_path = "/dev/null") {
  static int counter = 0;
  std::string base = tmpdir() + "/run" + std::to_string(counter++);
  std::string out_path = base + ".out", err_path = base + ".err";
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv = *e;
    if (kv.rfind("LD_PRELOAD=", 0) == 0 || kv.rfind("ALLOY_", 0) == 0) continue;
    env.push_back(kv);
  }
  for (const auto& kv : extra) env.push_back(kv);
  std::vector<char*> cargv, cenv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (const auto& kv : env) cenv.push_back(const_cast<char*>(kv.c_str()));
  cenv.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    int in = open(stdin_path.c_str(), O_RDONLY);
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0 || err < 0) _exit(126);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    execve(cargv[0], cargv.data(), cenv.data());
    _exit(127);
  }
  Run r;
  int status = 0;
  if (pid > 0 && waitpid(pid, &status, 0) == pid) {
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  r.out = read_file(out_path);
  r.err = read_file(err_path);
  return r;
}

std::string preload() { return "LD_PRELOAD=" + preload_library(); }

bool contains(const std::string& s, const char* what) {
  return s.find(what) != std::string::npos;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// A database workload for sqlite3: tables filled by recursive CTEs, indexes,
// joins, aggregates, sorting, string functions, deletes and a VACUUM.
std::string sqlite_script() {
  return R"sql(
PRAGMA journal_mode=OFF;
CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT, city INTEGER, score REAL);
CREATE TABLE cities(id INTEGER PRIMARY KEY, label TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40000)
INSERT INTO people SELECT i, printf('person-%06d-%s', i, hex(i * 7919)),
  i % 97, (i * 37 % 1000) / 10.0 FROM n;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 96)
INSERT INTO cities SELECT i, 'city-' || i || '-' || substr('abcdefghijklmnopqrstuvwxyz', i % 26 + 1, 5) FROM n;
CREATE INDEX people_city ON people(city, score);
CREATE INDEX people_name ON people(name);
SELECT c.label, count(*), round(avg(p.score), 3), max(p.name)
  FROM people p JOIN cities c ON c.id = p.city GROUP BY c.label ORDER BY 2 DESC, 1 LIMIT 15;
SELECT group_concat(name, ',') FROM (SELECT name FROM people WHERE score > 99 ORDER BY name DESC LIMIT 20);
DELETE FROM people WHERE id % 3 = 0;
UPDATE people SET name = upper(name) || replace(name, '-', '+') WHERE id % 5 = 1;
SELECT count(*), sum(length(name)), min(name), max(name) FROM people;
VACUUM;
PRAGMA integrity_check;
SELECT city, count(DISTINCT score) FROM people GROUP BY city HAVING count(*) > 270 ORDER BY city;
)sql";
}

}  // namespace

BOOST_AUTO_TEST_CASE(programs_run_without_the_preload) {
  // The baseline half of every comparison: also runs under sanitizer builds,
  // where the preload cases are skipped.
  Run r = run({"/usr/bin/sqlite3", ":memory:", "SELECT 6 * 7;"}, {});
  BOOST_TEST(r.status == 0);
  BOOST_TEST(r.out == "42\n");
}

E2E_CASE(python3_output_is_identical_under_preload) {
  std::string script = runfile("tests/adapters/malloc/e2e/alloc_heavy.py");
  std::string stats = tmpdir() + "/python_stats.txt";
  std::vector<std::string> argv = {"/usr/bin/python3", script};
  Run plain = run(argv, {"PYTHONMALLOC=malloc", "PYTHONHASHSEED=0"});
  Run alloy = run(argv, {"PYTHONMALLOC=malloc", "PYTHONHASHSEED=0", preload(),
                         "ALLOY_STATS=" + stats});
  BOOST_TEST(plain.status == 0);
  BOOST_TEST(alloy.status == 0);
  BOOST_TEST(!plain.out.empty());
  BOOST_TEST(alloy.out == plain.out);
  BOOST_TEST(alloy.err == plain.err);
  // The stats file proves the library was loaded and served the run.
  BOOST_TEST(contains(read_file(stats), "alloy malloc"));
}

E2E_CASE(sqlite3_output_is_identical_under_preload) {
  std::string sql = tmpdir() + "/workload.sql";
  write_text(sql, sqlite_script());
  std::string db_plain = tmpdir() + "/plain.db", db_alloy = tmpdir() + "/alloy.db";
  unlink(db_plain.c_str());
  unlink(db_alloy.c_str());
  Run plain = run({"/usr/bin/sqlite3", db_plain}, {}, sql);
  Run alloy = run({"/usr/bin/sqlite3", db_alloy}, {preload()}, sql);
  BOOST_TEST(plain.status == 0);
  BOOST_TEST(alloy.status == 0);
  BOOST_TEST(contains(plain.out, "\nok\n"));
  BOOST_TEST(alloy.out == plain.out);
  BOOST_TEST(alloy.err == plain.err);
  // Each database read back by the other configuration.
  const char* q = "SELECT count(*), sum(length(name)), max(name) FROM people;";
  Run cross1 = run({"/usr/bin/sqlite3", db_alloy, q}, {});
  Run cross2 = run({"/usr/bin/sqlite3", db_plain, q}, {preload()});
  BOOST_TEST(cross1.status == 0);
  BOOST_TEST(cross1.out == cross2.out);
  BOOST_TEST(!cross1.out.empty());
}

E2E_CASE(gxx_compiles_identically_under_preload) {
  std::string src = runfile("tests/adapters/malloc/e2e/compile_me.cc");
  std::vector<std::string> argv = {"/usr/bin/g++", "-std=c++17", "-O2", "-S", "-o", "-", src};
  Run plain = run(argv, {});
  Run alloy = run(argv, {preload()});
  BOOST_TEST(plain.status == 0);
  BOOST_TEST(alloy.status == 0);
  BOOST_TEST(plain.out.size() > 1000u);
  BOOST_TEST(alloy.out == plain.out);
  // A full compile and link under the preload, then the program runs.
  std::string exe = tmpdir() + "/compiled";
  Run build = run({"/usr/bin/g++", "-std=c++17", "-O1", "-o", exe, src}, {preload()});
  BOOST_TEST_REQUIRE(build.status == 0);
  Run prog = run({exe}, {preload()});
  BOOST_TEST(prog.status == 0);
  BOOST_TEST(prog.out == "17 2 385 99 102334155\n");
}

// The secure mode runs real programs unchanged (issue 13).
E2E_CASE(python3_sqlite3_and_gxx_run_identically_in_the_secure_mode) {
  std::string script = runfile("tests/adapters/malloc/e2e/alloc_heavy.py");
  std::vector<std::string> argv = {"/usr/bin/python3", script};
  Run plain = run(argv, {"PYTHONMALLOC=malloc", "PYTHONHASHSEED=0"});
  Run secure = run(argv, {"PYTHONMALLOC=malloc", "PYTHONHASHSEED=0", preload(), "ALLOY_SECURE=1"});
  BOOST_TEST(secure.status == 0, secure.err);
  BOOST_TEST(secure.out == plain.out);
  std::string sql = tmpdir() + "/secure.sql";
  write_text(sql, sqlite_script());
  std::string db1 = tmpdir() + "/s1.db", db2 = tmpdir() + "/s2.db";
  unlink(db1.c_str());
  unlink(db2.c_str());
  Run splain = run({"/usr/bin/sqlite3", db1}, {}, sql);
  Run ssecure = run({"/usr/bin/sqlite3", db2}, {preload(), "ALLOY_SECURE=1", "ALLOY_SECURE_ZERO=1"}, sql);
  BOOST_TEST(ssecure.status == 0, ssecure.err);
  BOOST_TEST(ssecure.out == splain.out);
  std::string src = runfile("tests/adapters/malloc/e2e/compile_me.cc");
  std::vector<std::string> gxx = {"/usr/bin/g++", "-std=c++17", "-O2", "-S", "-o", "-", src};
  Run gplain = run(gxx, {});
  Run gsecure = run(gxx, {preload(), "ALLOY_SECURE=1"});
  BOOST_TEST(gsecure.status == 0, gsecure.err);
  BOOST_TEST(gsecure.out == gplain.out);
}

E2E_CASE(functions_missing_from_other_preloads_work) {
  // pvalloc/valloc/memalign/malloc_usable_size/reallocarray called from a
  // foreign binary through ctypes; glibc's allocator must never see them.
  const char* code =
      "import ctypes\n"
      "libc = ctypes.CDLL(None)\n"
      "for f in ('pvalloc', 'valloc', 'malloc', 'memalign', 'aligned_alloc', 'reallocarray', 'realloc'):\n"
      "    getattr(libc, f).restype = ctypes.c_void_p\n"
      "libc.free.argtypes = [ctypes.c_void_p]\n"
      "libc.malloc_usable_size.argtypes = [ctypes.c_void_p]\n"
      "libc.realloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]\n"
      "libc.reallocarray.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]\n"
      "ps = [libc.pvalloc(100), libc.valloc(100), libc.memalign(4096, 10), libc.aligned_alloc(64, 64)]\n"
      "assert all(p and p % 64 == 0 for p in ps), ps\n"
      "assert libc.malloc_usable_size(ps[0]) >= 4096\n"
      "q = libc.reallocarray(libc.malloc(8), 1000, 8)\n"
      "assert q and libc.reallocarray(q, 1 << 62, 8) is None\n"
      "for p in ps + [q]: libc.free(p)\n"
      "print('ok')\n";
  Run r = run({"/usr/bin/python3", "-c", code}, {preload()});
  BOOST_TEST(r.status == 0);
  BOOST_TEST(r.out == "ok\n");
  BOOST_TEST(r.err == "");
}

E2E_CASE(dlopen_tls_thread_exit_fork_and_atexit_under_preload) {
  Run r = run({runfile("tests/adapters/malloc/preload_probe"), runfile("tests/adapters/malloc/libtls_module.so")},
              {preload(), "ALLOY_VERBOSE=1"});
  BOOST_TEST(r.status == 0);
  BOOST_TEST(r.out == "preload ok\n");
  BOOST_TEST(r.err == "");  // not even a verbose report: no foreign frees
}

E2E_CASE(environment_options) {
  std::string probe = runfile("tests/adapters/malloc/verbose_probe");
  Run quiet = run({probe}, {});
  BOOST_TEST(quiet.status == 0);
  BOOST_TEST(quiet.err == "");  // errors are silent by default
  Run verbose = run({probe}, {"ALLOY_VERBOSE=1"});
  BOOST_TEST(verbose.status == 0);
  BOOST_TEST(contains(verbose.err, "out of memory"));
  BOOST_TEST(contains(verbose.err, "does not own"));
  BOOST_TEST(contains(verbose.err, "invalid alignment"));
  BOOST_TEST(contains(verbose.err, "caller=0x"));
  // The alignment is printed as one (it used to be labelled size=).
  BOOST_TEST(contains(verbose.err, "posix_memalign: invalid alignment alignment=24"), verbose.err);
  // Rate-limited: 100k failures print about a hundred lines and a count.
  Run flood = run({probe, "flood"}, {"ALLOY_VERBOSE=1"});
  BOOST_TEST(flood.status == 0);
  const auto lines = std::count(flood.err.begin(), flood.err.end(), '\n');
  BOOST_TEST(lines >= 100);
  BOOST_TEST(lines < 1000);
  BOOST_TEST(contains(flood.err, "verbose reports suppressed"), flood.err.substr(flood.err.size() - 200));
  Run stats = run({probe}, {"ALLOY_STATS=1"});
  BOOST_TEST(stats.status == 0);
  BOOST_TEST(contains(stats.err, "foreign frees ignored: 1"));
  Run eager = run({probe}, {"ALLOY_EAGER_PURGE=1"});
  BOOST_TEST(eager.status == 0);
  BOOST_TEST(eager.out == quiet.out);
  // 96 MiB of small blocks freed: with eager purge the pages are gone at once.
  Run lazy_rss = run({probe, "purge"}, {});
  Run eager_rss = run({probe, "purge"}, {"ALLOY_EAGER_PURGE=1"});
  BOOST_TEST_REQUIRE(lazy_rss.status == 0);
  BOOST_TEST_REQUIRE(eager_rss.status == 0);
  BOOST_TEST_MESSAGE("RSS after freeing 96 MiB: " << lazy_rss.out << " MiB lazy, "
                     << eager_rss.out << " MiB eager");
  BOOST_TEST(std::stol(eager_rss.out) < 32);
  BOOST_TEST(std::stol(eager_rss.out) <= std::stol(lazy_rss.out));
  // Stats survive a program that closes stderr before exiting (coreutils).
  Run closes = run({"/bin/echo", "hi"}, {preload(), "ALLOY_STATS=1"});
  BOOST_TEST(closes.status == 0);
  BOOST_TEST(contains(closes.err, "alloy malloc"));
}

// issue 12: liballoy_malloc.so links only libc. A C++ program still gets
// std::bad_alloc, its new_handler and nothrow null from operator new; a C
// program gets no libstdc++, libm or libgcc_s mapped.
E2E_CASE(operator_new_failures_reach_a_cxx_program_under_preload) {
  Run r = run({runfile("tests/adapters/malloc/new_probe")}, {preload()});
  BOOST_TEST(r.status == 0);
  BOOST_TEST(r.out ==
             "caught std::bad_alloc\n"
             "handler called 3 times\n"
             "nothrow with a throwing handler: null\n"
             "bad alignment caught\n"
             "ok 100\n");
  Run plain = run({runfile("tests/adapters/malloc/new_probe")}, {});
  BOOST_TEST(plain.out == r.out);  // glibc's behaviour, line for line
}

E2E_CASE(a_c_program_under_preload_maps_no_cxx_runtime) {
  Run r = run({runfile("tests/adapters/malloc/c_probe")}, {preload()});
  BOOST_TEST(r.status == 0);
  BOOST_TEST(r.out == "c ok\n");
  BOOST_TEST(r.err == "");
}

// issue 15: ALLOY_PROF and ALLOY_PROF_LEAKS profile an unmodified program
// under the preload: one file per process ("%p"), readable by go tool pprof.
E2E_CASE(heap_profiles_of_an_unmodified_program_at_exit) {
  std::string src = runfile("tests/adapters/malloc/e2e/compile_me.cc");
  const std::string dir = tmpdir() + "/prof";
  mkdir(dir.c_str(), 0755);
  Run r = run({"/usr/bin/g++", "-O1", "-c", src, "-o", tmpdir() + "/prof.o"},
              {preload(), "ALLOY_PROF=" + dir + "/heap.%p.pb.gz",
               "ALLOY_PROF_LEAKS=" + dir + "/leaks.%p.pb.gz", "ALLOY_PROF_RATE=64k"});
  BOOST_TEST_REQUIRE(r.status == 0, r.err);
  // g++ runs cc1plus and as: each wrote its own pair of profiles.
  int heaps = 0, leaks = 0;
  bool cc1plus_named = false;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name.rfind("heap.", 0) == 0) ++heaps;
      if (name.rfind("leaks.", 0) == 0) ++leaks;
      if (name.rfind("heap.", 0) != 0) continue;
      const alloy::testing::Pprof t =
          alloy::testing::Pprof::top(dir + "/" + name, "alloc_space");
      BOOST_TEST(t.status == 0, t.output);
      // The compiler's own allocation wrapper is named (symbol tables).
      if (contains(t.output, "File: cc1plus") && contains(t.output, "xmalloc")) {
        cc1plus_named = true;
      }
    }
    closedir(d);
  }
  BOOST_TEST(heaps >= 2);
  BOOST_TEST(leaks == heaps);
  BOOST_TEST(cc1plus_named);
}
