// TestingAllocator, the Boost.Test fixture and check_all_allocation_failures:
// the OOM loop over Vec<T>, the arena, a small parser, STL containers through
// StdAllocator (exceptions), and planted bugs the checker must catch.
#define BOOST_TEST_MODULE testing_allocator
#include <boost/test/unit_test.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "alloy/adapters/std_allocator.h"
#include "alloy/alloc_iface/allocator.h"
#include "alloy/alloc_iface/box.h"
#include "alloy/alloc_iface/vec.h"
#include "alloy/allocators/arena.h"
#include "alloy/allocators/c_allocator.h"
#include "alloy/debug/boost_fixture.h"
#include "alloy/debug/testing_allocator.h"

namespace {

using alloy::Allocator;
using alloy::FailureCheckProblem;
using Kind = alloy::FailureCheckProblem::Kind;

// ---------------------------------------------------------------- code under test

alloy::Result<void> fill_vec(Allocator a, int n) {
  alloy::Vec<int> v(a);
  for (int i = 0; i < n; ++i) if (auto r = v.try_push(i); !r) return r;
  if (v.size() != static_cast<std::size_t>(n)) return alloy::Err(alloy::AllocError::kOutOfMemory);
  return alloy::Ok();
}

struct Node {
  std::span<char> name;
  int value;
};

// Boxes and vectors of owning values; every error path frees what it made.
alloy::Result<void> vec_of_boxes(Allocator a) {
  alloy::Vec<alloy::Box<Node>> nodes(a);
  for (int i = 0; i < 20; ++i) {
    ALLOY_TRY(auto box, alloy::Box<Node>::make(a, Node{{}, i}));
    if (auto r = nodes.try_push(std::move(box)); !r) return r;
  }
  alloy::Vec<int> values(a);
  for (const auto& n : nodes) if (auto r = values.try_push(n->value); !r) return r;
  auto clone = values.try_clone();
  if (!clone) return alloy::Err(clone.error());
  return alloy::Ok();
}

// A tiny "key=value;key=value" parser: keys and values are copied.
struct Entry {
  std::span<char> key;
  std::span<char> value;
};

struct Config {
  Allocator a;
  alloy::Vec<Entry> entries;
  explicit Config(Allocator alloc) : a(alloc), entries(alloc) {}
  Config(Config&&) = default;
  ~Config() {
    for (auto& e : entries) {
      a.free(e.key);
      a.free(e.value);
    }
  }
};

alloy::Result<Config> parse_config(Allocator a, std::string_view text) {
  Config cfg(a);
  while (!text.empty()) {
    auto semi = text.find(';');
    std::string_view item = text.substr(0, semi);
    text = semi == std::string_view::npos ? std::string_view() : text.substr(semi + 1);
    auto eq = item.find('=');
    if (eq == std::string_view::npos) continue;
    ALLOY_TRY(auto key, a.dupe(item.substr(0, eq)));
    auto value = a.dupe(item.substr(eq + 1));
    if (!value) {
      a.free(key);
      return alloy::Err(value.error());
    }
    if (auto r = cfg.entries.try_push(Entry{key, *value}); !r) {
      a.free(key);
      a.free(*value);
      return alloy::Err(r.error());
    }
  }
  return cfg;
}

// The same parser with a planted leak-on-error: when copying the value fails,
// the key is forgotten. Test-only: the checker must catch it.
[[gnu::noinline]] alloy::Result<Config> parse_config_leaky(Allocator a, std::string_view text) {
  Config cfg(a);
  while (!text.empty()) {
    auto semi = text.find(';');
    std::string_view item = text.substr(0, semi);
    text = semi == std::string_view::npos ? std::string_view() : text.substr(semi + 1);
    auto eq = item.find('=');
    if (eq == std::string_view::npos) continue;
    ALLOY_TRY(auto key, a.dupe(item.substr(0, eq)));
    ALLOY_TRY(auto value, a.dupe(item.substr(eq + 1)));  // BUG: leaks `key` on error
    if (auto r = cfg.entries.try_push(Entry{key, value}); !r) {
      a.free(key);
      a.free(value);
      return alloy::Err(r.error());
    }
  }
  return cfg;
}

// Swallows an allocation failure: reports success with half the work done.
[[gnu::noinline]] alloy::Result<void> swallow_errors(Allocator a) {
  auto first = a.alloc<int>(4);
  if (!first) return alloy::Err(first.error());
  auto second = a.alloc<int>(8);
  if (second) a.free(*second);  // BUG: failure ignored
  a.free(*first);
  return alloy::Ok();
}

// Frees twice on its error path.
[[gnu::noinline]] bool double_free_on_error(Allocator a) {
  auto first = a.alloc<char>(16);
  if (!first) return false;
  auto second = a.alloc<char>(16);
  if (!second) {
    a.free(*first);
    a.free(*first);  // BUG
    return false;
  }
  a.free(*second);
  a.free(*first);
  return true;
}

// Arena-backed work: every chunk comes from `a`; the arena frees them all.
alloy::Result<void> arena_strings(Allocator a) {
  alloy::Arena arena(a, alloy::Arena::Options{256, 0});
  Allocator ar = arena.allocator();
  for (int i = 0; i < 40; ++i) {
    ALLOY_TRY(auto s, ar.dupe(std::string_view("some text to copy into the arena")));
    ALLOY_TRY(auto n, ar.create<Node>(Node{s, i}));
    (void)n;
  }
  return alloy::Ok();
}

// Vec in an arena recovers on purpose: when doubling needs a new chunk and the
// child refuses, Vec asks for the exact size, which may fit the current chunk.
alloy::Result<void> arena_vec(Allocator a) {
  alloy::Arena arena(a, alloy::Arena::Options{256, 0});
  Allocator ar = arena.allocator();
  alloy::Vec<std::uint64_t> v(ar);
  for (std::uint64_t i = 0; i < 300; ++i) if (auto r = v.try_push(i); !r) return r;
  for (int i = 0; i < 10; ++i) {
    ALLOY_TRY(auto s, ar.dupe(std::string_view("some text to copy into the arena")));
    (void)s;
  }
  return alloy::Ok();
}

// STL containers through StdAllocator: failures arrive as std::bad_alloc.
using IntVec = std::vector<int, alloy::StdAllocator<int>>;
using IntMap = std::map<int, int, std::less<>, alloy::StdAllocator<std::pair<const int, int>>>;

int stl_work(Allocator a) {
  alloy::StdAllocator<int> stl(a);
  IntVec v(stl);
  for (int i = 0; i < 100; ++i) v.push_back(i);
  IntMap m(stl);
  for (int i = 0; i < 20; ++i) m.emplace(i, i * i);
  std::vector<IntVec, alloy::StdAllocator<IntVec>> nested(stl);
  for (int i = 0; i < 5; ++i) nested.emplace_back(v.begin(), v.begin() + 10 * i, stl);
  return static_cast<int>(v.size() + m.size() + nested.size());
}

// Not exception safe: a raw block is lost when push_back throws.
[[gnu::noinline]] int stl_leaky(Allocator a) {
  auto raw = a.alloc<char>(32);
  if (!raw) throw std::bad_alloc();
  IntVec v{alloy::StdAllocator<int>(a)};
  for (int i = 0; i < 50; ++i) v.push_back(i);  // BUG: throws past `raw`
  a.free(*raw);
  return static_cast<int>(v.size());
}

}  // namespace

// ---------------------------------------------------------------- fixture

BOOST_FIXTURE_TEST_CASE(fixture_passes_a_clean_test, alloy::LeakCheckFixture) {
  auto cfg = parse_config(alloc, "a=1;b=22;c=333");
  BOOST_REQUIRE(cfg.ok());
  BOOST_TEST(cfg->entries.size() == 3u);
  BOOST_TEST(std::string_view(cfg->entries[1].value.data(), cfg->entries[1].value.size()) == "22");
}

// The planted leak makes the fixture's teardown fail exactly once: Boost
// counts that as the expected failure (and prints the report it carries).
BOOST_FIXTURE_TEST_CASE(fixture_fails_a_leaking_test, alloy::LeakCheckFixture,
                        *boost::unit_test::expected_failures(1)) {
  auto leaked = alloc.alloc<int>(7);
  BOOST_REQUIRE(leaked.ok());
}

BOOST_AUTO_TEST_CASE(testing_allocator_names_the_leak_and_its_trace) {
  alloy::TestingAllocator testing(alloy::testing_options(), /*echo=*/false);
  auto a = testing.allocator();
  auto leaked = a.alloc<int>(7);
  BOOST_REQUIRE(leaked.ok());
  BOOST_TEST(testing.deinit() == 1u);
  auto reports = testing.reports();
  BOOST_REQUIRE_EQUAL(reports.size(), 1u);
  BOOST_TEST(reports[0].kind == alloy::debug::ErrorKind::kLeak);
  BOOST_TEST(reports[0].block_size == 28u);
  BOOST_TEST(reports[0].block_address == reinterpret_cast<std::uintptr_t>(leaked->data()));
  const std::string text = testing.reports_text();
  BOOST_TEST(text.find("leak: 28 bytes") != std::string::npos);
  BOOST_TEST(text.find("testing_allocator_names_the_leak_and_its_trace") != std::string::npos);
  BOOST_TEST(testing.error_count() == 0u);
}

// ---------------------------------------------------------------- OOM loop: clean code

BOOST_AUTO_TEST_CASE(vec_of_ints_handles_every_failure) {
  auto r = alloy::check_all_allocation_failures(fill_vec, 1000);
  BOOST_TEST(r.ok(), r.report());
  BOOST_TEST(r.allocations >= 1u);
  BOOST_TEST(r.runs == 1 + r.allocations + r.resizes);
}

// Vec<Vec<int>>: non-trivial elements move on growth; inner vectors own memory.
alloy::Result<void> vec_of_vecs(Allocator a) {
  alloy::Vec<alloy::Vec<int>> rows(a);
  for (int r = 0; r < 12; ++r) {
    alloy::Vec<int> row(a);
    for (int i = 0; i <= r; ++i) {
      if (auto st = row.try_push(i); !st) return st;
    }
    if (auto st = rows.try_push(std::move(row)); !st) return st;
  }
  for (std::size_t r = 0; r < rows.size(); ++r) {
    if (rows[r].size() != r + 1) return alloy::Err(alloy::AllocError::kOutOfMemory);
  }
  return alloy::Ok();
}

BOOST_AUTO_TEST_CASE(vec_of_vecs_handles_every_failure) {
  auto r = alloy::check_all_allocation_failures(vec_of_vecs);
  BOOST_TEST(r.ok(), r.report());
  BOOST_TEST(r.allocations >= 13u);
  BOOST_TEST(r.resizes >= 1u);
}

BOOST_AUTO_TEST_CASE(vec_of_boxes_handles_every_failure) {
  auto r = alloy::check_all_allocation_failures(vec_of_boxes);
  BOOST_TEST(r.ok(), r.report());
  BOOST_TEST(r.allocations >= 20u);
}

BOOST_AUTO_TEST_CASE(parser_handles_every_failure) {
  auto r = alloy::check_all_allocation_failures(parse_config,
                                                std::string_view("alpha=1;beta=two;gamma=3;d=4"));
  BOOST_TEST(r.ok(), r.report());
  BOOST_TEST(r.allocations >= 9u);  // 8 copies + the vector
}

BOOST_AUTO_TEST_CASE(arena_handles_every_failure) {
  auto r = alloy::check_all_allocation_failures(arena_strings);
  BOOST_TEST(r.ok(), r.report());
  BOOST_TEST(r.allocations >= 3u);  // several chunks from the child
}

BOOST_AUTO_TEST_CASE(vec_in_arena_recovers_without_leaking) {
  // Strict mode calls the recovery a swallowed error, and names it...
  auto strict = alloy::check_all_allocation_failures(arena_vec);
  for (const auto& p : strict.problems) BOOST_TEST((p.kind == Kind::kSwallowedError), p.text());
  // ...allow_recovery accepts it while still checking leaks and misuse.
  alloy::FailureCheckOptions o;
  o.allow_recovery = true;
  auto r = alloy::check_all_allocation_failures_with(o, arena_vec);
  BOOST_TEST(r.ok(), r.report());
  BOOST_TEST(r.allocations >= 2u);
}

BOOST_AUTO_TEST_CASE(stl_containers_are_exception_safe) {
  auto r = alloy::check_all_allocation_failures(stl_work);
  BOOST_TEST(r.ok(), r.report());
  BOOST_TEST(r.allocations >= 10u);
}

BOOST_AUTO_TEST_CASE(macro_form_passes) {
  ALLOY_CHECK_ALL_ALLOCATION_FAILURES(fill_vec, 50);
}

// ---------------------------------------------------------------- OOM loop: planted bugs

BOOST_AUTO_TEST_CASE(planted_leak_on_error_is_caught) {
  auto r = alloy::check_all_allocation_failures(parse_config_leaky,
                                                std::string_view("k1=v1;k2=v2"));
  BOOST_TEST_MESSAGE(r.report());
  BOOST_REQUIRE(!r.ok());
  // Copies happen in order: key1 (#0), vector (#?), value1 ... Whichever index
  // fails a value copy must leak exactly the key copied just before.
  bool found = false;
  for (const auto& p : r.problems) {
    BOOST_TEST((p.kind == Kind::kLeak), p.text());
    if (p.kind != Kind::kLeak) continue;
    found = true;
    BOOST_TEST(!p.resize);
    BOOST_TEST(p.index >= 1);
    BOOST_TEST(p.failure.site.mentions("parse_config_leaky"));
    BOOST_REQUIRE_EQUAL(p.reports.size(), 1u);
    BOOST_TEST(p.reports[0].block_size == 2u);  // "k1" / "k2"
    BOOST_TEST(p.reports[0].alloc_site.mentions("parse_config_leaky"));
    BOOST_TEST(p.text().find("after failing allocation #") != std::string::npos);
  }
  BOOST_TEST(found);
  BOOST_TEST(r.problems.size() == 2u);  // one per value copy
  BOOST_TEST(r.report().find("parse_config_leaky") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(swallowed_error_is_caught) {
  auto r = alloy::check_all_allocation_failures(swallow_errors);
  BOOST_REQUIRE(!r.ok());
  BOOST_REQUIRE_EQUAL(r.problems.size(), 1u);
  BOOST_TEST((r.problems[0].kind == Kind::kSwallowedError));
  BOOST_TEST(r.problems[0].index == 1);
  BOOST_TEST(r.problems[0].failure.len == 32u);
  BOOST_TEST(r.problems[0].failure.site.mentions("swallow_errors"));
}

BOOST_AUTO_TEST_CASE(misuse_on_error_path_is_caught) {
  auto r = alloy::check_all_allocation_failures(double_free_on_error);
  BOOST_REQUIRE(!r.ok());
  BOOST_REQUIRE_EQUAL(r.problems.size(), 1u);
  BOOST_TEST((r.problems[0].kind == Kind::kMisuse));
  BOOST_TEST(r.problems[0].index == 1);
  BOOST_REQUIRE_EQUAL(r.problems[0].reports.size(), 1u);
  BOOST_TEST(r.problems[0].reports[0].kind == alloy::debug::ErrorKind::kDoubleFree);
  BOOST_TEST(r.problems[0].reports[0].this_call.mentions("double_free_on_error"));
}

BOOST_AUTO_TEST_CASE(exception_unsafe_code_is_caught) {
  auto r = alloy::check_all_allocation_failures(stl_leaky);
  BOOST_REQUIRE(!r.ok());
  for (const auto& p : r.problems) {
    BOOST_TEST((p.kind == Kind::kLeak), p.text());
    BOOST_TEST(p.index >= 1);
    BOOST_REQUIRE_EQUAL(p.reports.size(), 1u);
    BOOST_TEST(p.reports[0].block_size == 32u);
    BOOST_TEST(p.reports[0].alloc_site.mentions("stl_leaky"));
  }
  BOOST_TEST(r.problems.size() == r.allocations - 1);  // every failure after `raw`
}

BOOST_AUTO_TEST_CASE(failing_unfailed_run_stops_the_check) {
  auto r = alloy::check_all_allocation_failures([](Allocator) { return false; });
  BOOST_REQUIRE_EQUAL(r.problems.size(), 1u);
  BOOST_TEST((r.problems[0].kind == Kind::kFailsUnfailed));
  BOOST_TEST(r.runs == 1u);
}

BOOST_AUTO_TEST_CASE(unexpected_exception_is_reported) {
  auto r = alloy::check_all_allocation_failures([](Allocator a) {
    auto s = a.alloc<int>(1);
    if (!s) throw std::runtime_error("not bad_alloc");
    a.free(*s);
    return true;
  });
  BOOST_REQUIRE_EQUAL(r.problems.size(), 1u);
  BOOST_TEST((r.problems[0].kind == Kind::kUnexpectedException));
  BOOST_TEST(r.problems[0].detail == "not bad_alloc");
}

BOOST_AUTO_TEST_CASE(resizes_are_failed_too) {
  // Growing a c_allocator block in place mostly succeeds; failing each resize
  // sends Vec down its alloc + copy + free path, which must not leak either.
  auto r = alloy::check_all_allocation_failures(fill_vec, 300);
  BOOST_TEST(r.ok(), r.report());
  BOOST_TEST(r.resizes >= 1u);
  alloy::FailureCheckOptions no_resize;
  no_resize.fail_resizes = false;
  auto r2 = alloy::check_all_allocation_failures_with(no_resize, fill_vec, 300);
  BOOST_TEST(r2.runs == 1 + r2.allocations);
}

BOOST_AUTO_TEST_CASE(a_crash_names_the_failing_allocation) {
  int fds[2];
  BOOST_REQUIRE(pipe(fds) == 0);
  pid_t pid = fork();
  BOOST_REQUIRE(pid >= 0);
  constexpr int kCrashLine = __LINE__ + 8;
  if (pid == 0) {
    for (int s : {SIGSEGV, SIGABRT, SIGBUS}) std::signal(s, SIG_DFL);
    dup2(fds[1], STDERR_FILENO);
    close(fds[0]);
    auto r = alloy::check_all_allocation_failures([](Allocator a) {
      auto s = a.alloc<int>(1);
      if (!s) return false;
      auto t = a.alloc<int>(1);  // kCrashLine
      if (!t) std::abort();  // "crashes" when the second allocation fails
      a.free(*t);
      a.free(*s);
      return true;
    });
    (void)r;
    _exit(0);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  close(fds[0]);
  int status = 0;
  BOOST_REQUIRE(waitpid(pid, &status, 0) == pid);
  BOOST_TEST(!(WIFEXITED(status) && WEXITSTATUS(status) == 0));
  BOOST_TEST(out.find("crashed (signal 6) after failing allocation #1") != std::string::npos, out);
  BOOST_TEST(out.find("a_crash_names_the_failing_allocation") != std::string::npos, out);
  // The failing call's file and line (the marked line above).
  BOOST_TEST(out.find("tests/debug/testing_allocator_test.cc:" + std::to_string(kCrashLine)) !=
                 std::string::npos,
             out);
}

// ---------------------------------------------------------------- file:line in reports
// This suite is built with -g.

namespace {

int g_first_line = 0, g_second_line = 0;

alloy::Result<void> leaks_first_when_second_fails(Allocator a) {
  auto first = a.alloc<char>(8); g_first_line = __LINE__;
  if (!first) return first.error();
  auto second = a.alloc<char>(16); g_second_line = __LINE__;
  if (!second) return second.error();  // the bug: `first` leaks
  a.free(*second);
  a.free(*first);
  return alloy::Ok();
}

}  // namespace

BOOST_AUTO_TEST_CASE(failure_reports_name_file_and_line) {
  auto r = alloy::check_all_allocation_failures(leaks_first_when_second_fails);
  BOOST_REQUIRE_EQUAL(r.problems.size(), 1u);
  const FailureCheckProblem& p = r.problems[0];
  BOOST_TEST((p.kind == Kind::kLeak));
  BOOST_TEST(p.index == 1);
  const std::string file = "tests/debug/testing_allocator_test.cc:";
  BOOST_TEST(p.failure.site.mentions(file + std::to_string(g_second_line)));
  BOOST_REQUIRE_EQUAL(p.reports.size(), 1u);
  BOOST_TEST(p.reports[0].alloc_site.mentions(file + std::to_string(g_first_line)));
  // Printed frame #0 of the failing call is the user's line, not alloy's.
  const auto lines = p.failure.site.symbolized();
  BOOST_REQUIRE(!lines.empty());
  BOOST_TEST(lines[0].find("leaks_first_when_second_fails") != std::string::npos, lines[0]);
  BOOST_TEST(lines[0].find(file + std::to_string(g_second_line)) != std::string::npos, lines[0]);
  const std::string text = r.report();
  BOOST_TEST(text.find(file + std::to_string(g_first_line)) != std::string::npos, text);
  BOOST_TEST(text.find(file + std::to_string(g_second_line)) != std::string::npos, text);
  BOOST_TEST(text.find("std::__invoke") == std::string::npos, text);
  BOOST_TEST(text.find("std::_Function_handler") == std::string::npos, text);
}
