#include "alloy/debug/internal/symbolizer.h"

#include <cxxabi.h>
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

namespace alloy::debug::internal {
namespace {

char* debuginfo_path = nullptr;

const Dwfl_Callbacks kCallbacks = {
    dwfl_linux_proc_find_elf,
    dwfl_standard_find_debuginfo,
    nullptr,
    &debuginfo_path,
};

std::mutex g_mu;
Dwfl* g_dwfl = nullptr;

bool report_modules() {
  if (g_dwfl == nullptr) {
    g_dwfl = dwfl_begin(&kCallbacks);
    if (g_dwfl == nullptr) return false;
  }
  dwfl_report_begin(g_dwfl);
  const int rc = dwfl_linux_proc_report(g_dwfl, ::getpid());
  dwfl_report_end(g_dwfl, nullptr, nullptr);
  return rc == 0;
}

std::string demangle(const char* name) {
  int status = -1;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  if (d == nullptr) return name;
  std::string out = d;
  std::free(d);
  return out;
}

std::string clean_path(const char* file) {
  std::string_view f = file;
  for (std::string_view prefix : {"/proc/self/cwd/", "./"}) {
    if (f.starts_with(prefix)) f.remove_prefix(prefix.size());
  }
  // A header of a library with include_prefix, as its users include it:
  // bazel-out/k8-fastbuild/bin/pkg/_virtual_includes/target/alloy/pkg/x.h.
  if (const auto v = f.find("/_virtual_includes/"); v != std::string_view::npos) {
    const auto rest = f.find('/', v + 19);
    if (rest != std::string_view::npos) f.remove_prefix(rest + 1);
  }
  return std::string(f);
}

// The innermost function inlined at `pc`, by DWARF scopes: its linkage
// name (or plain name) into *out. False if `pc` is in no inlined code.
bool innermost_inlined(Dwfl_Module* mod, Dwarf_Addr pc, SourceFrame* out) {
  Dwarf_Addr bias = 0;
  Dwarf_Die* cu = dwfl_module_addrdie(mod, pc, &bias);
  if (cu == nullptr) return false;
  Dwarf_Die* scopes = nullptr;
  const int n = dwarf_getscopes(cu, pc - bias, &scopes);
  bool found = false;
  for (int i = 0; i < n; ++i) {
    const int tag = dwarf_tag(&scopes[i]);
    if (tag == DW_TAG_subprogram) break;  // the out-of-line function: the symbol names it
    if (tag != DW_TAG_inlined_subroutine) continue;
    Dwarf_Attribute attr;
    const char* linkage = nullptr;
    if (dwarf_attr_integrate(&scopes[i], DW_AT_linkage_name, &attr) != nullptr ||
        dwarf_attr_integrate(&scopes[i], DW_AT_MIPS_linkage_name, &attr) != nullptr) {
      linkage = dwarf_formstring(&attr);
    }
    if (linkage != nullptr) {
      out->system_name = linkage;
      out->function = demangle(linkage);
      found = true;
    } else if (const char* name = dwarf_diename(&scopes[i]); name != nullptr) {
      out->function = name;
      found = true;
    }
    break;
  }
  std::free(scopes);
  return found;
}

}  // namespace

bool symbolize_pc(std::uintptr_t pc, SourceFrame* out) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_dwfl == nullptr && !report_modules()) return false;
  Dwfl_Module* mod = dwfl_addrmodule(g_dwfl, pc);
  if (mod == nullptr) {
    // Perhaps loaded since the last report (dlopen).
    report_modules();
    mod = dwfl_addrmodule(g_dwfl, pc);
    if (mod == nullptr) return false;
  }
  *out = SourceFrame{};
  // Inlined code is named by the inlined function (its line is the one
  // getsrc gives); other code by its symbol, exact and mangled.
  if (!innermost_inlined(mod, pc, out)) {
    GElf_Off offset = 0;
    GElf_Sym sym;
    if (const char* name = dwfl_module_addrinfo(mod, pc, &offset, &sym, nullptr, nullptr, nullptr);
        name != nullptr) {
      out->system_name = name;
      out->function = demangle(name);
    }
  }
  if (Dwfl_Line* line = dwfl_module_getsrc(mod, pc); line != nullptr) {
    int lineno = 0;
    if (const char* file = dwfl_lineinfo(line, nullptr, &lineno, nullptr, nullptr, nullptr);
        file != nullptr) {
      out->file = clean_path(file);
      out->line = lineno;
    }
  }
  return !out->function.empty() || !out->file.empty();
}

}  // namespace alloy::debug::internal
