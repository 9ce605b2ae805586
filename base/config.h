// alloy's feature detection and portability macros, in one place (after
// abseil's absl/base/config.h). Macros only: no code, no standard library, so
// every layer may include it, down to the engine and the malloc adapter.
//
// Cost per call: none (preprocessor only). Thread safety: not applicable.
//
//   ALLOY_HAVE_ASAN       defined (as 1) when compiled with AddressSanitizer
//   ALLOY_HAVE_TSAN       defined (as 1) when compiled with ThreadSanitizer
//   ALLOY_HAVE_SANITIZER  defined (as 1) when either of the two is
//   ALLOY_RETURN_ADDRESS  the current function's return address, as an integer
//
// Test them with #if defined(...), never with #if X alone:
//
//   #include "alloy/base/config.h"
//   #if defined(ALLOY_HAVE_ASAN)
//   #include <sanitizer/asan_interface.h>
//   #endif
//   std::uintptr_t caller = ALLOY_RETURN_ADDRESS();  // needs <cstdint>
#pragma once

// GCC defines __SANITIZE_*__; Clang answers __has_feature.
#if defined(__SANITIZE_ADDRESS__)
#define ALLOY_HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ALLOY_HAVE_ASAN 1
#endif
#endif

#if defined(__SANITIZE_THREAD__)
#define ALLOY_HAVE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ALLOY_HAVE_TSAN 1
#endif
#endif

#if defined(ALLOY_HAVE_ASAN) || defined(ALLOY_HAVE_TSAN)
#define ALLOY_HAVE_SANITIZER 1
#endif

// The return address of the current function, as an integer (std::uintptr_t:
// the includer provides <cstdint>; this header includes nothing).
#define ALLOY_RETURN_ADDRESS() \
  (reinterpret_cast<std::uintptr_t>(__builtin_return_address(0)))
