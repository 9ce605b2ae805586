// alloy::c_allocator() — the C library's malloc family behind the handle.
//
// alloc is malloc (or aligned_alloc above malloc's natural 16-byte alignment),
// free is free. `resize` succeeds in place whenever the new length fits in
// malloc_usable_size(), so small growth often costs nothing; `remap` is
// realloc for naturally aligned blocks (it may move).
//
// Wrong frees are not checked by alloy in any build: free() gets the pointer
// as it is, so a foreign, double or interior free is whatever the C library
// makes of it (glibc aborts on many double frees; others corrupt its heap),
// and a wrong size is ignored (sizes are not passed on). Put the
// DebugAllocator (or a CountingAllocator, which refuses frees of more than
// is live) in front to catch them.
//
// Optional entries: alloc_at_least reports malloc_usable_size (the bytes
// resize accepts anyway; under ASan/TSan that is the length asked); no
// zeroed entry (alloc + memset) and no owns (malloc cannot tell its own
// pointers from others' cheaply).
//
// Cost: whatever the process's malloc costs (glibc: tens of ns); sizes passed
// to free are ignored. Thread safety: as malloc, fully thread-safe.
//
// Example:
//   alloy::Allocator c = alloy::c_allocator();
//   auto name = c.dupe(std::string_view("alloy"));
//   if (!name) return;
//   std::printf("%.*s\n", int(name->size()), name->data());
//   c.free(*name);
#pragma once

#include "alloy/alloc_iface/allocator.h"

namespace alloy {

Allocator c_allocator();

}  // namespace alloy
