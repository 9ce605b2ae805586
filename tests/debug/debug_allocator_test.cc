// Provokes every error DebugAllocator knows on purpose and asserts the report:
// kind, addresses, sizes, and that the traces name the test that did it.
#define BOOST_TEST_MODULE debug_allocator
#include <boost/test/unit_test.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "alloy/alloc_iface/allocator.h"
#include "alloy/alloc_iface/box.h"
#include "alloy/alloc_iface/vec.h"
#include "alloy/allocators/c_allocator.h"
#include "alloy/allocators/page_allocator.h"
#include "alloy/debug/debug_allocator.h"
#include "tests/support/pprof_tool.h"

namespace {

using alloy::Alignment;
using alloy::Bytes;
using alloy::debug::ErrorKind;
using alloy::debug::Operation;
using alloy::debug::Report;

std::uintptr_t addr_of(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

// A DebugAllocator over malloc that collects its reports.
struct Collected {
  std::vector<Report> reports;
  alloy::DebugAllocator debug;
  explicit Collected(alloy::DebugOptions o = {}, alloy::Allocator child = alloy::c_allocator())
      : debug(child, with_sink(std::move(o), &reports)) {}
  static alloy::DebugOptions with_sink(alloy::DebugOptions o, std::vector<Report>* out) {
    if (o.traces == alloy::TraceMode::kSampled) o.traces = alloy::TraceMode::kAlways;
    o.sink = alloy::debug::collect_into(out);
    return o;
  }
  alloy::Allocator a() { return debug.allocator(); }
};

}  // namespace

BOOST_AUTO_TEST_CASE(clean_use_reports_nothing_and_keeps_contents) {
  Collected c;
  auto a = c.a();
  auto s = a.alloc<int>(100);
  BOOST_REQUIRE(s.ok());
  for (int i = 0; i < 100; ++i) (*s)[i] = i;
  auto bigger = a.realloc(*s, 1000);
  BOOST_REQUIRE(bigger.ok());
  for (int i = 0; i < 100; ++i) BOOST_TEST((*bigger)[i] == i);
  auto aligned = a.alloc_aligned<std::byte>(33, 256);
  BOOST_REQUIRE(aligned.ok());
  BOOST_TEST(Alignment::from_log2(8).check(aligned->data()));
  a.free_aligned(*aligned, Alignment::from_log2(8));
  a.free(*bigger);
  BOOST_TEST(c.debug.check() == 0u);
  BOOST_TEST(c.debug.deinit() == 0u);
  BOOST_TEST(c.reports.empty());
}

BOOST_AUTO_TEST_CASE(double_free_is_reported_with_three_sites) {
  Collected c;
  auto a = c.a();
  auto s = a.alloc<std::uint64_t>(8);
  BOOST_REQUIRE(s.ok());
  a.free(*s);
  a.free(*s);  // the bug
  BOOST_REQUIRE_EQUAL(c.reports.size(), 1u);
  const Report& r = c.reports[0];
  BOOST_TEST(r.kind == ErrorKind::kDoubleFree);
  BOOST_TEST(r.operation == Operation::kFree);
  BOOST_TEST(r.address == addr_of(s->data()));
  BOOST_TEST(r.block_size == 64u);
  BOOST_TEST(r.block_alignment.bytes() == 8u);
  BOOST_TEST(r.this_call.mentions("double_free_is_reported_with_three_sites"));
  BOOST_TEST(r.alloc_site.mentions("double_free_is_reported_with_three_sites"));
  BOOST_TEST(r.free_site.mentions("double_free_is_reported_with_three_sites"));
  const std::string text = r.text();
  BOOST_TEST(text.find("double free") != std::string::npos);
  BOOST_TEST(text.find("first freed at") != std::string::npos);
  BOOST_TEST(text.find("double_free_is_reported_with_three_sites") != std::string::npos);
  BOOST_TEST(r.json().find("\"kind\":\"double_free\"") != std::string::npos);
  BOOST_TEST(c.debug.stats().errors == 1u);
  BOOST_TEST(c.debug.deinit() == 0u);
}

BOOST_AUTO_TEST_CASE(double_free_after_quarantine_is_still_named) {
  alloy::DebugOptions o;
  o.quarantine_bytes = 0;  // released to the child at once; history remembers
  Collected c(o);
  auto a = c.a();
  auto s = a.alloc<char>(24);
  BOOST_REQUIRE(s.ok());
  char* p = s->data();
  a.free(*s);
  // The child may hand the address out again; a live block wins over history.
  auto again = a.alloc<char>(24);
  BOOST_REQUIRE(again.ok());
  if (again->data() == p) {
    a.free(*again);
    BOOST_TEST(c.reports.empty());
  } else {
    a.free(std::span<char>(p, 24));
    BOOST_REQUIRE_EQUAL(c.reports.size(), 1u);
    BOOST_TEST(c.reports[0].kind == ErrorKind::kDoubleFree);
    BOOST_TEST(c.reports[0].note.find("left the quarantine") != std::string::npos);
    a.free(*again);
  }
  BOOST_TEST(c.debug.deinit() == 0u);
}

BOOST_AUTO_TEST_CASE(free_of_foreign_pointer_is_refused) {
  Collected c;
  auto a = c.a();
  alignas(16) static char not_ours[64];
  a.free(std::span<char>(not_ours, 64));
  BOOST_REQUIRE_EQUAL(c.reports.size(), 1u);
  BOOST_TEST(c.reports[0].kind == ErrorKind::kInvalidPointer);
  BOOST_TEST(c.reports[0].address == addr_of(not_ours));
  BOOST_TEST(c.reports[0].passed_size == 64u);
  BOOST_TEST(c.reports[0].this_call.mentions("free_of_foreign_pointer_is_refused"));
  // Interior pointers name the block they point into.
  auto s = a.alloc<char>(100);
  BOOST_REQUIRE(s.ok());
  a.free(std::span<char>(s->data() + 8, 10));
  BOOST_REQUIRE_EQUAL(c.reports.size(), 2u);
  BOOST_TEST(c.reports[1].kind == ErrorKind::kInvalidPointer);
  BOOST_TEST(c.reports[1].block_address == addr_of(s->data()));
  BOOST_TEST(c.reports[1].note.find("8 bytes into a live block of 100") != std::string::npos);
  BOOST_TEST(c.reports[1].alloc_site.mentions("free_of_foreign_pointer_is_refused"));
  a.free(*s);  // the real free still works: the bad call was refused
  BOOST_TEST(c.reports.size() == 2u);
  BOOST_TEST(c.debug.deinit() == 0u);
}

BOOST_AUTO_TEST_CASE(free_with_wrong_size_is_refused_and_block_stays_live) {
  Collected c;
  auto a = c.a();
  auto s = a.alloc<int>(10);
  BOOST_REQUIRE(s.ok());
  a.free(s->first(9));  // 36 bytes instead of 40
  BOOST_REQUIRE_EQUAL(c.reports.size(), 1u);
  const Report& r = c.reports[0];
  BOOST_TEST(r.kind == ErrorKind::kWrongSize);
  BOOST_TEST(r.passed_size == 36u);
  BOOST_TEST(r.block_size == 40u);
  BOOST_TEST(r.address == addr_of(s->data()));
  BOOST_TEST(r.this_call.mentions("free_with_wrong_size_is_refused_and_block_stays_live"));
  BOOST_TEST(r.alloc_site.mentions("free_with_wrong_size_is_refused_and_block_stays_live"));
  BOOST_TEST(c.debug.stats().live_count == 1u);
  a.free(*s);
  BOOST_TEST(c.debug.deinit() == 0u);
}

// Size feedback: the block may be freed (or resized) with any length from
// the asked one to the reported one, and with no other.
BOOST_AUTO_TEST_CASE(freed_length_rule_accepts_the_range_and_refuses_outside) {
  Collected c({}, alloy::page_allocator());  // whole pages: lots of feedback
  auto a = c.a();
  const Alignment al = Alignment::of<std::max_align_t>();
  auto first = a.alloc_bytes_at_least(100, al);
  BOOST_REQUIRE(first.ok());
  const std::size_t usable = first->size();
  BOOST_TEST(usable == alloy::page_size() - alloy::DebugOptions{}.canary_bytes);
  std::memset(first->data(), 1, usable);  // every reported byte is the user's: no overrun
  a.free_bytes(first->first(100), al);    // the asked length
  for (std::size_t len : {usable, std::size_t{2000}}) {  // the reported one, one between
    auto b = a.alloc_bytes_at_least(100, al);
    BOOST_REQUIRE(b.ok());
    a.free_bytes(b->first(len), al);
  }
  BOOST_TEST(c.reports.empty());
  for (std::size_t len : {std::size_t{99}, usable + 1}) {
    auto b = a.alloc_bytes_at_least(100, al);
    BOOST_REQUIRE(b.ok());
    a.free_bytes(Bytes(b->data(), len), al);
    BOOST_REQUIRE(!c.reports.empty());
    const Report& r = c.reports.back();
    BOOST_TEST(r.kind == ErrorKind::kWrongSize);
    BOOST_TEST(r.passed_size == len);
    BOOST_TEST(r.note.find("any length from 100 to " + std::to_string(usable)) !=
               std::string::npos, r.note);
    a.free_bytes(b->first(100), al);  // refused calls leave the block live
  }
  BOOST_TEST(c.reports.size() == 2u);
  // A resize from the reported length is right; afterwards the block is new_len exactly.
  auto g = a.alloc_bytes_at_least(100, al);
  BOOST_REQUIRE(g.ok());
  BOOST_TEST(a.resize_bytes(*g, al, 300));
  a.free_bytes(Bytes(g->data(), 301), al);  // not 300: refused
  BOOST_TEST(c.reports.size() == 3u);
  a.free_bytes(Bytes(g->data(), 300), al);
  BOOST_TEST(c.reports.size() == 3u);
  BOOST_TEST(c.debug.deinit() == 0u);
}

BOOST_AUTO_TEST_CASE(an_overrun_past_the_reported_length_is_caught) {
  Collected c({}, alloy::page_allocator());
  auto a = c.a();
  auto b = a.alloc_bytes_at_least(100, Alignment{});
  BOOST_REQUIRE(b.ok());
  b->data()[b->size()] = std::byte{0};  // the canary starts at the reported end
  a.free_bytes(*b, Alignment{});
  BOOST_REQUIRE_EQUAL(c.reports.size(), 1u);
  BOOST_TEST(c.reports[0].kind == ErrorKind::kOverrun);
  BOOST_TEST(c.debug.deinit() == 0u);
}

BOOST_AUTO_TEST_CASE(owns_and_the_foreign_free_report_ask_the_child) {
  alloy::DebugAllocator inner(alloy::c_allocator());  // a child that answers owns
  Collected c({}, inner.allocator());
  auto a = c.a();
  auto mine = a.alloc<char>(10);
  BOOST_REQUIRE(mine.ok());
  BOOST_TEST((a.owns(mine->data()) == alloy::Ownership::kYes));
  auto childs = inner.allocator().alloc<char>(10);  // the child's, not through `a`
  BOOST_REQUIRE(childs.ok());
  BOOST_TEST((a.owns(childs->data()) == alloy::Ownership::kNo));
  a.free(*childs);
  BOOST_REQUIRE_EQUAL(c.reports.size(), 1u);
  BOOST_TEST(c.reports[0].kind == ErrorKind::kInvalidPointer);
  BOOST_TEST(c.reports[0].note.find("the child allocator owns it") != std::string::npos,
             c.reports[0].note);
  alignas(16) static char not_ours[64];
  a.free(std::span<char>(not_ours, 64));
  BOOST_REQUIRE_EQUAL(c.reports.size(), 2u);
  BOOST_TEST(c.reports[1].note.find("foreign: not memory of the child") != std::string::npos,
             c.reports[1].note);
  inner.allocator().free(*childs);
  a.free(*mine);
  BOOST_TEST((a.owns(mine->data()) == alloy::Ownership::kNo));  // freed
  BOOST_TEST(c.debug.deinit() == 0u);
  BOOST_TEST(inner.deinit() == 0u);
}

BOOST_AUTO_TEST_CASE(alloc_zeroed_is_zero_and_tracked) {
  Collected c;
  auto a = c.a();
  auto z = a.alloc_zeroed<int>(50);
  BOOST_REQUIRE(z.ok());
  bool zero = true;
  for (int v : *z) zero = zero && v == 0;
  BOOST_TEST(zero);
  BOOST_TEST(c.debug.stats().live_count == 1u);
  a.free(*z);
  BOOST_TEST(c.reports.empty());
  BOOST_TEST(c.debug.deinit() == 0u);
}

BOOST_AUTO_TEST_CASE(free_and_resize_with_wrong_alignment_are_refused) {
  Collected c;
  auto a = c.a();
  auto s = a.alloc_aligned<std::byte>(64, 64);
  BOOST_REQUIRE(s.ok());
  a.free(*s);  // alignment 1 instead of 64
  BOOST_REQUIRE_EQUAL(c.reports.size(), 1u);
  BOOST_TEST(c.reports[0].kind == ErrorKind::kWrongAlignment);
  BOOST_TEST(c.reports[0].passed_alignment.bytes() == 1u);
  BOOST_TEST(c.reports[0].block_alignment.bytes() == 64u);
  BOOST_TEST(c.reports[0].this_call.mentions("free_and_resize_with_wrong_alignment_are_refused"));
  BOOST_TEST(!a.raw_resize(*s, Alignment::from_log2(3), 32, ALLOY_RETURN_ADDRESS()));
  BOOST_REQUIRE_EQUAL(c.reports.size(), 2u);
  BOOST_TEST(c.reports[1].kind == ErrorKind::kWrongAlignment);
  BOOST_TEST(c.reports[1].operation == Operation::kResize);
  BOOST_TEST(c.reports[1].new_size == 32u);
  a.free_aligned(*s, Alignment::from_log2(6));
  BOOST_TEST(c.debug.deinit() == 0u);
}

BOOST_AUTO_TEST_CASE(resize_with_wrong_size_is_refused) {
  Collected c;
  auto a = c.a();
  auto s = a.alloc<std::byte>(48);
  BOOST_REQUIRE(s.ok());
  BOOST_TEST(!a.raw_resize(s->first(40), Alignment(), 44, ALLOY_RETURN_ADDRESS()));
  BOOST_REQUIRE_EQUAL(c.reports.size(), 1u);
  BOOST_TEST(c.reports[0].kind == ErrorKind::kWrongSize);
  BOOST_TEST(c.reports[0].operation == Operation::kResize);
  BOOST_TEST(c.reports[0].passed_size == 40u);
  BOOST_TEST(c.reports[0].block_size == 48u);
  BOOST_TEST(c.debug.stats().live_bytes == 48u);
  a.free(*s);
  BOOST_TEST(c.debug.deinit() == 0u);
}

BOOST_AUTO_TEST_CASE(overrun_is_found_on_free) {
  Collected c;
  auto a = c.a();
  auto s = a.alloc<char>(10);
  BOOST_REQUIRE(s.ok());
  char* p = s->data();
  p[10] = 'x';  // one past the end: lands in the canary
  p[12] = 'y';
  a.free(*s);
  BOOST_REQUIRE_EQUAL(c.reports.size(), 1u);
  const Report& r = c.reports[0];
  BOOST_TEST(r.kind == ErrorKind::kOverrun);
  BOOST_TEST(r.operation == Operation::kFree);
  BOOST_TEST(r.block_address == addr_of(p));
  BOOST_TEST(r.block_size == 10u);
  BOOST_TEST(r.offset == 10u);
  BOOST_TEST(r.bad_bytes == 2u);
  BOOST_TEST(r.alloc_site.mentions("overrun_is_found_on_free"));
  BOOST_TEST(r.this_call.mentions("overrun_is_found_on_free"));
  BOOST_TEST(c.debug.stats().live_count == 0u);  // the free itself went ahead
  BOOST_TEST(c.debug.deinit() == 0u);
  BOOST_TEST(c.reports.size() == 1u);
}

BOOST_AUTO_TEST_CASE(overrun_is_found_on_resize_and_on_demand) {
  Collected c;
  auto a = c.a();
  auto s = a.alloc<char>(32);
  auto t = a.alloc<char>(8);
  BOOST_REQUIRE(s.ok() && t.ok());
  (*t).data()[8] = 1;
  BOOST_TEST(c.debug.check() == 1u);
  BOOST_REQUIRE_EQUAL(c.reports.size(), 1u);
  BOOST_TEST(c.reports[0].kind == ErrorKind::kOverrun);
  BOOST_TEST(c.reports[0].operation == Operation::kCheck);
  BOOST_TEST(c.reports[0].block_address == addr_of(t->data()));
  BOOST_TEST(c.reports[0].alloc_site.mentions("overrun_is_found_on_resize_and_on_demand"));
  BOOST_TEST(c.debug.check() == 0u);  // reported once, canary restored
  s->data()[33] = 1;
  (void)a.resize(*s, 16);
  BOOST_REQUIRE_EQUAL(c.reports.size(), 2u);
  BOOST_TEST(c.reports[1].kind == ErrorKind::kOverrun);
  BOOST_TEST(c.reports[1].operation == Operation::kResize);
  BOOST_TEST(c.reports[1].offset == 33u);
  a.free(*t);
  BOOST_TEST(c.debug.deinit() == 1u);  // s: whatever resize did, it was never freed
}

BOOST_AUTO_TEST_CASE(use_after_free_is_found_when_leaving_quarantine) {
  alloy::DebugOptions o;
  o.quarantine_bytes = 256;
  Collected c(o);
  auto a = c.a();
  auto s = a.alloc<char>(64);
  BOOST_REQUIRE(s.ok());
  char* p = s->data();
  a.free(*s);
  p[5] = 'z';  // the bug: memory is quarantined, still ours, so this is safe to do
  BOOST_TEST(c.reports.empty());
  // Push it out of the 256-byte quarantine.
  for (int i = 0; i < 8; ++i) {
    auto t = a.alloc<char>(64);
    BOOST_REQUIRE(t.ok());
    a.free(*t);
  }
  BOOST_REQUIRE_EQUAL(c.reports.size(), 1u);
  const Report& r = c.reports[0];
  BOOST_TEST(r.kind == ErrorKind::kUseAfterFree);
  BOOST_TEST(r.block_address == addr_of(p));
  BOOST_TEST(r.block_size == 64u);
  BOOST_TEST(r.offset == 5u);
  BOOST_TEST(r.bad_bytes == 1u);
  BOOST_TEST(r.alloc_site.mentions("use_after_free_is_found_when_leaving_quarantine"));
  BOOST_TEST(r.free_site.mentions("use_after_free_is_found_when_leaving_quarantine"));
  BOOST_TEST(c.debug.deinit() == 0u);
}

BOOST_AUTO_TEST_CASE(use_after_free_is_found_on_demand) {
  Collected c;
  auto a = c.a();
  auto s = a.alloc<std::uint32_t>(4);
  BOOST_REQUIRE(s.ok());
  std::uint32_t* p = s->data();
  a.free(*s);
  p[2] = 7;
  BOOST_TEST(c.debug.check() == 1u);
  BOOST_REQUIRE_EQUAL(c.reports.size(), 1u);
  BOOST_TEST(c.reports[0].kind == ErrorKind::kUseAfterFree);
  BOOST_TEST(c.reports[0].offset == 8u);
  BOOST_TEST(c.reports[0].free_site.mentions("use_after_free_is_found_on_demand"));
  // resize of the freed block is a separate misuse, also refused.
  BOOST_TEST(!a.raw_resize(std::as_writable_bytes(std::span<std::uint32_t>(p, 4)),
                           Alignment::of<std::uint32_t>(), 8, ALLOY_RETURN_ADDRESS()));
  BOOST_REQUIRE_EQUAL(c.reports.size(), 2u);
  BOOST_TEST(c.reports[1].kind == ErrorKind::kUseOfFreed);
  BOOST_TEST(c.debug.deinit() == 0u);
}

namespace {
[[gnu::noinline]] void leak_two_blocks_here(alloy::Allocator a) {
  (void)a.alloc<char>(13).value();
  (void)a.create<double>(2.5).value();
}
}  // namespace

BOOST_AUTO_TEST_CASE(leaks_are_counted_and_named) {
  std::string text;
  alloy::DebugOptions o;
  o.traces = alloy::TraceMode::kAlways;
  o.sink = alloy::debug::append_text_to(&text);
  alloy::DebugAllocator debug(alloy::c_allocator(), o);
  leak_two_blocks_here(debug.allocator());
  std::vector<alloy::AllocationInfo> seen;
  debug.visit([&](const alloy::AllocationInfo& info) { seen.push_back(info); });
  BOOST_REQUIRE_EQUAL(seen.size(), 2u);
  BOOST_TEST(seen[0].size == 13u);
  BOOST_TEST(seen[1].size == sizeof(double));
  BOOST_TEST(!seen[0].frames.empty());
  BOOST_TEST(debug.check_leaks() == 2u);
  BOOST_TEST(text.find("leak: 13 bytes at") != std::string::npos);
  BOOST_TEST(text.find("leak: 8 bytes at") != std::string::npos);
  BOOST_TEST(text.find("leak_two_blocks_here") != std::string::npos);
  BOOST_TEST(text.find("leaks_are_counted_and_named") != std::string::npos);
  BOOST_TEST(debug.deinit() == 2u);  // reports again, then frees them
  BOOST_TEST(debug.stats().live_count == 0u);
  BOOST_TEST(debug.deinit() == 0u);
}

BOOST_AUTO_TEST_CASE(ret_addr_only_mode_still_names_the_caller) {
  alloy::DebugOptions o;
  o.traces = alloy::TraceMode::kNever;
  std::vector<Report> reports;
  o.sink = alloy::debug::collect_into(&reports);
  alloy::DebugAllocator debug(alloy::c_allocator(), o);
  leak_two_blocks_here(debug.allocator());
  BOOST_TEST(debug.deinit() == 2u);
  BOOST_REQUIRE_EQUAL(reports.size(), 2u);
  BOOST_TEST(reports[0].alloc_site.frames.empty());
  BOOST_TEST(reports[0].alloc_site.mentions("leak_two_blocks_here"));
  BOOST_TEST(reports[0].text().find("no full trace") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(sampling_traces_one_in_n) {
  alloy::DebugOptions o;
  o.traces = alloy::TraceMode::kSampled;
  o.sample_every = 4;
  o.sink = [](const Report&) {};
  alloy::DebugAllocator debug(alloy::c_allocator(), o);
  auto a = debug.allocator();
  std::vector<std::span<int>> blocks;
  for (int i = 0; i < 40; ++i) blocks.push_back(a.alloc<int>(1).value());
  int traced = 0;
  debug.visit([&](const alloy::AllocationInfo& info) { traced += !info.frames.empty(); });
  BOOST_TEST(traced == 10);
  for (auto b : blocks) a.free(b);
  BOOST_TEST(debug.deinit() == 0u);
}

BOOST_AUTO_TEST_CASE(stats_track_live_peak_and_totals) {
  Collected c;
  auto a = c.a();
  auto x = a.alloc<char>(100).value();
  auto y = a.alloc<char>(50).value();
  a.free(x);
  auto z = a.alloc<char>(10).value();
  auto st = c.debug.stats();
  BOOST_TEST(st.live_bytes == 60u);
  BOOST_TEST(st.peak_live_bytes == 150u);
  BOOST_TEST(st.total_bytes == 160u);
  BOOST_TEST(st.live_count == 2u);
  BOOST_TEST(st.peak_live_count == 2u);
  BOOST_TEST(st.total_allocs == 3u);
  BOOST_TEST(st.total_frees == 1u);
  a.free(y);
  a.free(z);
  BOOST_TEST(c.debug.deinit() == 0u);
}

BOOST_AUTO_TEST_CASE(ceiling_is_honoured_and_allocator_stays_usable) {
  alloy::DebugOptions o;
  o.ceiling = 1000;
  Collected c(o);
  auto a = c.a();
  auto x = a.alloc<char>(600);
  BOOST_REQUIRE(x.ok());
  BOOST_TEST(!a.alloc<char>(500).ok());
  BOOST_TEST(!a.resize(*x, 1001));
  auto y = a.alloc<char>(400);
  BOOST_TEST(y.ok());
  BOOST_TEST(c.debug.stats().failed_allocs == 1u);
  BOOST_TEST(c.reports.empty());  // running out is not a misuse
  a.free(*x);
  a.free(*y);
  BOOST_TEST(c.debug.deinit() == 0u);
}

// Issue 11: one spelling for "no ceiling" (kNoCeiling, the default) and for
// failure injection (fail_alloc_index, as FailingAllocator's); the old names
// (memory_limit, fail_alloc_from) still work for one release.
BOOST_AUTO_TEST_CASE(ceiling_and_failure_injection_spellings) {
  {
    Collected c(alloy::DebugOptions{});
    BOOST_TEST(c.debug.ceiling() == alloy::kNoCeiling);
    c.debug.set_ceiling(100);
    BOOST_TEST(c.debug.options().ceiling == 100u);
    BOOST_TEST(!c.a().alloc<char>(101).ok());
    c.debug.set_ceiling(alloy::kNoCeiling);
    auto x = c.a().alloc<char>(101);
    BOOST_REQUIRE(x.ok());
    c.a().free(*x);
  }
  {
    alloy::DebugOptions o;
    o.fail_alloc_index = 1;
    Collected c(o);
    auto x = c.a().alloc<char>(8);
    BOOST_REQUIRE(x.ok());
    BOOST_TEST(!c.a().alloc<char>(8).ok());
    BOOST_TEST(!c.a().alloc<char>(8).ok());  // and every later one
    c.a().free(*x);
  }
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  {
    alloy::DebugOptions o;
    o.memory_limit = 100;
    o.fail_resize_from = 0;
    Collected c(o);
    BOOST_TEST(c.debug.ceiling() == 100u);
    BOOST_TEST(!c.a().alloc<char>(101).ok());
    auto x = c.a().alloc<char>(8);
    BOOST_REQUIRE(x.ok());
    BOOST_TEST(!c.a().resize(*x, 4));  // the first resize fails
    c.a().free(*x);
  }
  {
    alloy::DebugOptions o;
    o.fail_alloc_from = 0;
    Collected c(o);
    BOOST_TEST(!c.a().alloc<char>(8).ok());
  }
#pragma GCC diagnostic pop
}

BOOST_AUTO_TEST_CASE(remap_and_vec_growth_keep_tracking) {
  Collected c(alloy::DebugOptions{}, alloy::page_allocator());
  {
    alloy::Vec<int> v(c.a());
    for (int i = 0; i < 5000; ++i) BOOST_REQUIRE(v.try_push(i).ok());
    for (int i = 0; i < 5000; ++i) BOOST_REQUIRE(v[i] == i);
    BOOST_TEST(c.debug.stats().live_count == 1u);
    BOOST_TEST(c.debug.check() == 0u);
  }
  BOOST_TEST(c.reports.empty());
  BOOST_TEST(c.debug.deinit() == 0u);
}

BOOST_AUTO_TEST_CASE(verbose_logs_every_call) {
  std::vector<std::string> lines;
  alloy::DebugOptions o;
  o.verbose = true;
  o.log = [&](std::string_view l) { lines.emplace_back(l); };
  alloy::DebugAllocator debug(alloy::c_allocator(), o);
  auto a = debug.allocator();
  auto s = a.alloc<char>(7).value();
  a.free(s);
  BOOST_REQUIRE_EQUAL(lines.size(), 2u);
  BOOST_TEST(lines[0].find("alloc len=7") != std::string::npos);
  BOOST_TEST(lines[1].find("free len=7") != std::string::npos);
  BOOST_TEST(lines[0].find("verbose_logs_every_call") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(json_report_is_one_object_with_frames) {
  Collected c;
  auto a = c.a();
  auto s = a.alloc<char>(3).value();
  a.free(s);
  a.free(s);
  BOOST_REQUIRE_EQUAL(c.reports.size(), 1u);
  std::string j = c.reports[0].json();
  BOOST_TEST(j.front() == '{');
  BOOST_TEST(j.back() == '}');
  BOOST_TEST(j.find("\"block_size\":3") != std::string::npos);
  BOOST_TEST(j.find("\"frames\":[{\"pc\":") != std::string::npos);
  BOOST_TEST(j.find("json_report_is_one_object_with_frames") != std::string::npos);
  BOOST_TEST(j.find('\n') == std::string::npos);
}

BOOST_AUTO_TEST_CASE(abort_on_error_stops_the_process) {
  pid_t pid = fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    std::signal(SIGABRT, SIG_DFL);  // Boost.Test's handler would catch it
    alloy::DebugOptions o;
    o.abort_on_error = true;
    o.sink = [](const Report&) {};
    alloy::DebugAllocator debug(alloy::c_allocator(), o);
    auto a = debug.allocator();
    auto s = a.alloc<char>(8).value();
    a.free(s);
    a.free(s);
    _exit(0);  // not reached
  }
  int status = 0;
  BOOST_REQUIRE(waitpid(pid, &status, 0) == pid);
  BOOST_TEST(WIFSIGNALED(status));
  if (WIFSIGNALED(status)) BOOST_TEST(WTERMSIG(status) == SIGABRT);
}

BOOST_AUTO_TEST_CASE(thread_safe_mode_survives_concurrent_use) {
  alloy::DebugOptions o;
  o.sink = [](const Report&) {};
  alloy::DebugAllocator debug(alloy::c_allocator(), o);
  auto a = debug.allocator();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([a, t] {
      for (int i = 0; i < 2000; ++i) {
        auto s = a.alloc<int>(1 + (i + t) % 32);
        if (!s) continue;
        (*s)[0] = i;
        a.free(*s);
      }
    });
  }
  for (auto& th : threads) th.join();
  auto st = debug.stats();
  BOOST_TEST(st.total_allocs == 8000u);
  BOOST_TEST(st.total_frees == 8000u);
  BOOST_TEST(st.errors == 0u);
  BOOST_TEST(debug.deinit() == 0u);
}

// Blocks allocated while the process may still be single-threaded (the lock
// is skipped then) are freed by threads started afterwards, while the main
// thread keeps allocating: every block is accounted for, nothing reported.
BOOST_AUTO_TEST_CASE(blocks_cross_from_single_threaded_use_to_threads) {
  alloy::DebugOptions o;
  o.sink = [](const Report&) {};
  o.quarantine_bytes = 4096;  // evictions happen while the threads run
  alloy::DebugAllocator debug(alloy::c_allocator(), o);
  auto a = debug.allocator();
  constexpr int kPerThread = 500;
  std::vector<std::span<int>> blocks;
  for (int i = 0; i < 2 * kPerThread; ++i) blocks.push_back(a.alloc<int>(1 + i % 24).value());
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([a, &blocks, t] {
      for (int i = t * kPerThread; i < (t + 1) * kPerThread; ++i) a.free(blocks[i]);
    });
  }
  for (int i = 0; i < 1000; ++i) {
    auto s = a.alloc<int>(1 + i % 24);
    BOOST_REQUIRE(s.ok());
    a.free(*s);
  }
  for (auto& th : threads) th.join();
  const auto st = debug.stats();
  BOOST_TEST(st.total_allocs == 2u * kPerThread + 1000u);
  BOOST_TEST(st.total_frees == 2u * kPerThread + 1000u);
  BOOST_TEST(st.live_count == 0u);
  BOOST_TEST(st.live_bytes == 0u);
  BOOST_TEST(st.errors == 0u);
  BOOST_TEST(debug.deinit() == 0u);
}

// ---------------------------------------------------------------- file:line in reports
// This suite is built with -g: each frame names its file and line.

namespace report_lines {

int g_alloc_line = 0, g_free_line = 0, g_again_line = 0;

struct Widget {
  int x;
};

// A template, to show its arguments in the report.
template <typename T>
[[gnu::noinline]] void free_twice(alloy::Allocator a, std::span<T> s) {
  a.free(s); g_free_line = __LINE__;
  a.free(s); g_again_line = __LINE__;  // the bug
}

}  // namespace report_lines

BOOST_AUTO_TEST_CASE(reports_name_file_and_line_of_each_site) {
  using namespace report_lines;
  Collected c;
  auto a = c.a();
  auto s = a.alloc<Widget>(3); g_alloc_line = __LINE__;
  BOOST_REQUIRE(s.ok());
  // Called through std::function: its plumbing is not printed.
  std::function<void()> call = [&] { free_twice(a, *s); };
  call();
  BOOST_REQUIRE_EQUAL(c.reports.size(), 1u);
  const Report& r = c.reports[0];
  const std::string file = "tests/debug/debug_allocator_test.cc:";
  BOOST_TEST(r.alloc_site.mentions(file + std::to_string(g_alloc_line)));
  BOOST_TEST(r.free_site.mentions(file + std::to_string(g_free_line)));
  BOOST_TEST(r.this_call.mentions(file + std::to_string(g_again_line)));
  // Frame #0 of each site is the user's call: alloy's own frames are dropped.
  const auto frames = r.this_call.symbolized_frames();
  BOOST_REQUIRE(!frames.empty());
  BOOST_TEST(frames[0].file == "tests/debug/debug_allocator_test.cc");
  BOOST_TEST(frames[0].line == g_again_line);
  // Template arguments are shown.
  BOOST_TEST(frames[0].function.find("free_twice<report_lines::Widget>") != std::string::npos,
             frames[0].function);
  BOOST_TEST(r.alloc_site.symbolized_frames()[0].line == g_alloc_line);
  const std::string text = r.text();
  BOOST_TEST_MESSAGE(text);
  BOOST_TEST(text.find("#0 ") != std::string::npos);
  BOOST_TEST(text.find(" at " + file + std::to_string(g_again_line)) != std::string::npos, text);
  BOOST_TEST(text.find("std::_Function_handler") == std::string::npos, text);
  BOOST_TEST(text.find("std::__invoke") == std::string::npos, text);
  BOOST_TEST(text.find("alloy::DebugAllocator::") == std::string::npos, text);
  BOOST_TEST(text.find("alloy::Allocator::") == std::string::npos, text);
  const std::string json = r.json();
  BOOST_TEST(json.find("\"file\":\"tests/debug/debug_allocator_test.cc\"") != std::string::npos,
             json);
  BOOST_TEST(json.find("\"line\":" + std::to_string(g_again_line)) != std::string::npos, json);
}

BOOST_AUTO_TEST_CASE(sites_without_a_full_trace_name_the_call_line) {
  alloy::DebugOptions o;
  o.traces = alloy::TraceMode::kNever;
  std::vector<Report> reports;
  o.sink = alloy::debug::collect_into(&reports);
  alloy::DebugAllocator debug(alloy::c_allocator(), o);
  auto a = debug.allocator();
  auto s = a.alloc<int>(2); const int line = __LINE__;
  BOOST_REQUIRE(s.ok());
  BOOST_TEST(debug.check_leaks() == 1u);
  BOOST_REQUIRE_EQUAL(reports.size(), 1u);
  const std::string want = "tests/debug/debug_allocator_test.cc:" + std::to_string(line);
  BOOST_TEST(reports[0].alloc_site.mentions(want));
  BOOST_TEST(reports[0].text().find(want) != std::string::npos, reports[0].text());
  a.free(*s);
}

// ---------------------------------------------------------------- pprof profile of live blocks

namespace profile_sites {

[[gnu::noinline]] void* one_share(alloy::Allocator a) { return a.alloc<char>(1000)->data(); }
[[gnu::noinline]] void* two_shares(alloy::Allocator a) { return a.alloc<char>(2000)->data(); }
[[gnu::noinline]] void* four_shares(alloy::Allocator a) { return a.alloc<char>(4000)->data(); }

}  // namespace profile_sites

BOOST_AUTO_TEST_CASE(live_blocks_written_as_a_pprof_profile) {
  for (alloy::TraceMode mode : {alloy::TraceMode::kAlways, alloy::TraceMode::kNever}) {
    alloy::DebugOptions o;
    o.traces = mode;
    alloy::DebugAllocator debug(alloy::c_allocator(), o);
    auto a = debug.allocator();
    std::vector<std::pair<void*, std::size_t>> blocks;
    for (int i = 0; i < 3; ++i) {
      blocks.emplace_back(profile_sites::one_share(a), 1000);
      blocks.emplace_back(profile_sites::two_shares(a), 2000);
      blocks.emplace_back(profile_sites::four_shares(a), 4000);
    }
    // Freed blocks leave the profile: one more of each, freed again.
    a.free(std::span<char>(static_cast<char*>(profile_sites::four_shares(a)), 4000));
    const std::string path = alloy::testing::Pprof::tmpdir() + "/debug_live.pb.gz";
    BOOST_REQUIRE(debug.write_profile(path.c_str()));
    const auto t = alloy::testing::Pprof::top(path, "inuse_space");
    BOOST_TEST_REQUIRE(t.status == 0, t.output);
    const auto bytes = alloy::testing::Pprof::run("-top -unit=B -sample_index=inuse_space " + path);
    BOOST_TEST(bytes.output.find("of 21000B total") != std::string::npos, bytes.output);
    BOOST_TEST(t.share("profile_sites::one_share") > 14.2, t.output);
    BOOST_TEST(t.share("profile_sites::one_share") < 14.3, t.output);
    BOOST_TEST(t.share("profile_sites::two_shares") > 28.5, t.output);
    BOOST_TEST(t.share("profile_sites::two_shares") < 28.6, t.output);
    BOOST_TEST(t.share("profile_sites::four_shares") > 57.1, t.output);
    BOOST_TEST(t.share("profile_sites::four_shares") < 57.2, t.output);
    // alloy's own frames are not in the stacks.
    BOOST_TEST(t.output.find("alloy::DebugAllocator") == std::string::npos, t.output);
    BOOST_TEST(t.output.find("alloy::Allocator::") == std::string::npos, t.output);
    // The profile's lines are this file's.
    const auto lines = alloy::testing::Pprof::run("-top -lines -sample_index=inuse_space " + path);
    BOOST_TEST(lines.output.find("debug_allocator_test.cc") != std::string::npos, lines.output);
    for (auto [p, n] : blocks) a.free(std::span<char>(static_cast<char*>(p), n));
    BOOST_TEST(debug.deinit() == 0u);
  }
}
