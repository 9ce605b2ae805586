// ALLOY_ASSERT(expr) — a contract check that is on in debug, sanitizer and
// fuzz builds and compiled out in optimized ones; a failure prints
// "alloy: assertion failed: <expr> (<file>:<line>)" on stderr with write(2)
// (no malloc: base/line_writer.h) and aborts.
//
// On when NDEBUG is not defined (debug builds, and the fuzz config, which
// does not set it) or under ASan/TSan (base/config.h); off with NDEBUG
// (`--config=opt`, compilation_mode=opt). -DALLOY_ASSERTS=0/1 overrides.
// When off, `expr` is not evaluated (it must still compile).
// ALLOY_ASSERT_MSG(expr, "text") adds a sentence naming the broken rule.
//
// For contracts a caller can break by misuse that the code does not
// otherwise answer (a length of 0 where the header says > 0, an index past
// the end), and for internal invariants. Not for what the family refuses and
// reports (wrong frees): those never abort.
//
// Cost: a compare and a not-taken branch when on; nothing when off.
// Thread safety: any thread (the report is one write(2) call).
//
// Example:
//   #include "alloy/base/assert.h"
//   T& operator[](std::size_t i) { ALLOY_ASSERT(i < size_); return data_[i]; }
#pragma once

#include <cstdlib>

#include "alloy/base/config.h"
#include "alloy/base/line_writer.h"

#if !defined(ALLOY_ASSERTS)
#if !defined(NDEBUG) || defined(ALLOY_HAVE_SANITIZER)
#define ALLOY_ASSERTS 1
#else
#define ALLOY_ASSERTS 0
#endif
#endif

namespace alloy::base {

// Whether ALLOY_ASSERT checks in this translation unit.
constexpr bool kAssertsOn = ALLOY_ASSERTS != 0;  // per translation unit

[[noreturn, gnu::cold, gnu::noinline]] inline void assert_failed(const char* expr,
                                                                 const char* file, int line,
                                                                 const char* msg) noexcept {
  LineWriter<512> out;
  out.add("alloy: assertion failed: ").add(expr).add(" (").add(file).add(":");
  out.dec(static_cast<std::uintptr_t>(line)).add(")");
  if (msg != nullptr) out.add(": ").add(msg);
  out.add("\n");
  out.write_to(2);
  std::abort();
}

}  // namespace alloy::base

#if ALLOY_ASSERTS
#define ALLOY_ASSERT_MSG(expr, msg)                                          \
  do {                                                                       \
    if (!(expr)) [[unlikely]]                                                \
      ::alloy::base::assert_failed(#expr, __FILE__, __LINE__, msg);          \
  } while (0)
#else
#define ALLOY_ASSERT_MSG(expr, msg)                 \
  do {                                              \
    static_cast<void>(sizeof(static_cast<bool>(expr))); \
  } while (0)
#endif
#define ALLOY_ASSERT(expr) ALLOY_ASSERT_MSG(expr, nullptr)
