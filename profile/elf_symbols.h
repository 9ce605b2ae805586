// alloy::profile::ElfSymbols — function names for a profile's addresses from
// the ELF symbol tables of the process's own files, without malloc.
//
// Why: a profile written inside malloc (the malloc adapter's) cannot use a
// DWARF library, and pprof's own symbolizers are uneven for C++ (go tool
// pprof reads DWARF only, and misses functions of many C++ units). The
// symbol table (.symtab, else .dynsym) of each loaded object names every
// function that is not inlined; pprof demangles the names itself. No file or
// line: that needs DWARF (debug/'s profiles have it).
//
// How: the objects come from dl_iterate_phdr (the main program is read
// through /proc/self/exe); each is mapped read-only on first use, its
// function symbols sorted by address in an mmap'd array, and an address is a
// binary search. Everything is unmapped by the destructor.
//
// Cost: the first lookup in an object maps it and sorts its symbols
// (O(n log n), n functions); later lookups O(log n). Thread safety: none;
// one instance per writer. Safe inside malloc and after fork.
//
// Example:
//   alloy::profile::ElfSymbols symbols;
//   writer.write_file(path, alloy::profile::ElfSymbols::symbolize, &symbols);
#pragma once

#include <cstddef>
#include <cstdint>

#include "alloy/profile/pprof_writer.h"

namespace alloy::profile {

class ElfSymbols {
 public:
  ElfSymbols() noexcept = default;
  ~ElfSymbols();
  ElfSymbols(const ElfSymbols&) = delete;
  ElfSymbols& operator=(const ElfSymbols&) = delete;

  // Lists the loaded objects now (dl_iterate_phdr, which takes ld.so's lock):
  // call it before taking a lock that malloc may wait for, so that
  // function_at() under that lock opens and maps files only.
  void prepare() noexcept {
    if (!loaded_) load_objects();
  }
  // The name of the function holding `pc`, or null.
  const char* function_at(std::uintptr_t pc) noexcept;
  // A SymbolizeFn over an ElfSymbols (ctx).
  static bool symbolize(void* ctx, std::uintptr_t pc, Frame* out) noexcept;

  struct Object;  // one loaded ELF object (elf_symbols.cc)

 private:
  bool load_objects() noexcept;
  internal::MappedBuffer objects_;  // Object records
  bool loaded_ = false;
};

}  // namespace alloy::profile
