// Debug-allocator configurations shared by the overhead benchmark and the
// instruction-count driver (bench/debug).
//
// Cost: none (options only). Thread safety: plain functions.
//
// Example:
//   alloy::DebugAllocator d(alloy::c_allocator(),
//                           alloy::bench::options_for(alloy::bench::kRetAddr));
//   alloy::Allocator a = d.allocator();
//   void* p = a.raw_alloc(64, alloy::Alignment::from_log2(3), 0);
//   a.raw_free(alloy::Bytes(static_cast<std::byte*>(p), 64), alloy::Alignment::from_log2(3), 0);
#pragma once

#include "alloy/debug/debug_allocator.h"

namespace alloy::bench {

// Unless a suffix says otherwise a configuration has the defaults of
// DebugOptions: thread-safe, 16 canary bytes, 256 KiB quarantine, 1024 frees
// of history.
//   "_st":  thread_safe = false (the option for single-threaded speed).
//   "_noq": quarantine off (no use-after-free detection; everything else on).
//   "_min": single-threaded, no quarantine, no freed-block history: the cost
//           of the live-block table, canaries and return addresses alone.
// kRetAddr and kSampled64 are the two the targets are about: the
// default options with traces never, and the default options as they are
// (traces sampled 1 in 64).
enum Config {
  kChild, kRetAddr, kRetAddrSt, kRetAddrStNoQ, kRetAddrMin,
  kSampled64, kSampled64St, kSampled64StNoQ, kAlways, kNumConfigs
};
inline const char* const kConfigNames[] = {
    "child",        "ret_addr",         "ret_addr_st", "ret_addr_st_noq", "ret_addr_min",
    "sampled64",    "sampled64_st",     "sampled64_st_noq", "always"};
static_assert(sizeof(kConfigNames) / sizeof(kConfigNames[0]) == kNumConfigs);

inline DebugOptions options_for(Config c) {
  DebugOptions o;
  o.sink = [](const debug::Report&) {};
  switch (c) {
    case kRetAddrMin:
      o.freed_history = 0;
      [[fallthrough]];
    case kRetAddrStNoQ:
      o.quarantine_bytes = 0;
      [[fallthrough]];
    case kRetAddrSt:
      o.thread_safe = false;
      [[fallthrough]];
    case kRetAddr:
      o.traces = TraceMode::kNever;
      break;
    case kSampled64StNoQ:
      o.quarantine_bytes = 0;
      [[fallthrough]];
    case kSampled64St:
      o.thread_safe = false;
      [[fallthrough]];
    case kSampled64:
      o.traces = TraceMode::kSampled;
      o.sample_every = 64;
      break;
    case kAlways:
      o.traces = TraceMode::kAlways;
      break;
    case kChild:
    case kNumConfigs:
      break;
  }
  return o;
}

}  // namespace alloy::bench
