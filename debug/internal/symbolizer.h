// alloy::debug::internal::symbolize_pc — one code address as function,
// file and line, from the process's own ELF symbols and DWARF (elfutils'
// libdw), for the debug allocator's reports.
//
// Not a public API: debug/report.h's symbolize() and symbolize_frame() are
// built on it. Names are fully demangled (template arguments shown, through
// abi::__cxa_demangle); an address inside inlined code is named by the
// innermost inlined function and its line. Files come as the compiler wrote
// them, less Bazel's "/proc/self/cwd/" and a leading "./", and headers of
// Bazel libraries with an include_prefix as their users include them
// ("alloy/alloc_iface/allocator.h"). Without DWARF
// (a binary built without -g, or linked stripped) only the function is known.
//
// Cost: the first call reports the process's modules to libdw (reads
// /proc/self/maps, opens each ELF file lazily); later calls are a module
// lookup and a DWARF scope walk, microseconds. An address in a module loaded
// since (dlopen) makes it report the modules again, once. Allocates through
// the process's malloc (never through an allocator being debugged). Thread
// safety: thread-safe (one mutex).
//
// Example:
//   alloy::debug::internal::SourceFrame f;
//   if (alloy::debug::internal::symbolize_pc(pc - 1, &f))
//     std::printf("%s at %s:%d\n", f.function.c_str(), f.file.c_str(), f.line);
#pragma once

#include <cstdint>
#include <string>

namespace alloy::debug::internal {

struct SourceFrame {
  std::string function;     // demangled; empty if unknown
  std::string system_name;  // the linkage (mangled) name; empty if unknown
  std::string file;         // empty if unknown
  int line = 0;             // 0 if unknown
};

// `pc` is the address of an instruction (for a return address, pass ret - 1).
// False if nothing at all is known of it.
bool symbolize_pc(std::uintptr_t pc, SourceFrame* out);

}  // namespace alloy::debug::internal
