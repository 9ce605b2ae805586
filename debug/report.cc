#include "alloy/debug/report.h"

#include <absl/debugging/symbolize.h>
#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <mutex>

#include "alloy/debug/internal/symbolizer.h"

namespace alloy::debug {
namespace {

// Whether the function's own name (after any return type, before its
// parameters) starts with `prefix`.
bool named(std::string_view fn, std::string_view prefix) {
  for (std::size_t at = fn.find(prefix); at != std::string_view::npos;
       at = fn.find(prefix, at + 1)) {
    const std::string_view before = fn.substr(0, at);
    if ((at == 0 || fn[at - 1] == ' ') && before.find('(') == std::string_view::npos) {
      return true;
    }
  }
  return false;
}

// alloy's library code, by the path it was compiled from (a consumer's
// build has it under external/alloy/; headers come as "alloy/...").
bool in_alloy_library(std::string_view file) {
  if (file.starts_with("alloy/")) return true;
  if (file.starts_with("external/alloy/")) file.remove_prefix(15);
  for (std::string_view dir : {"alloc_iface/", "allocators/", "adapters/", "base/", "debug/",
                               "profile/"}) {
    if (file.starts_with(dir)) return true;
  }
  return false;
}

// Frames of alloy itself (the debug allocator, the handle, wrappers...) say
// nothing about the user's code: dropped from the top of a trace. Without
// DWARF the namespace decides.
bool is_alloy_frame(const FrameInfo& f) {
  if (!f.file.empty()) return in_alloy_library(f.file);
  return named(f.function, "alloy::");
}

// std::invoke and std::function plumbing between two frames that matter:
// libstdc++'s invoke/function headers, or (without DWARF) their names.
bool is_call_plumbing(const FrameInfo& f) {
  for (std::string_view h : {"/bits/invoke.h", "/bits/std_function.h", "/bits/refwrap.h",
                             "/include/c++/12/functional", "/bits/functional.h"}) {
    if (f.file.ends_with(h) || f.file.find(h) != std::string::npos) return true;
  }
  for (std::string_view p : {"std::__invoke", "std::invoke", "std::_Function_handler",
                             "std::__apply", "std::apply", "std::_Bind"}) {
    if (named(f.function, p)) return true;
  }
  return named(f.function, "std::function<") &&
         f.function.find(">::operator()(") != std::string::npos;
}

std::string hex(std::uintptr_t v) { return fmt::format("{:#x}", v); }

void json_escape_into(std::string& out, std::string_view s) {
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
        } else {
          out += c;
        }
    }
  }
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  json_escape_into(out, s);
  out += '"';
  return out;
}

void append_site_text(std::string& out, std::string_view title, const CallSite& site) {
  if (site.empty()) return;
  out += fmt::format("  {}:\n", title);
  for (const std::string& line : site.symbolized()) out += fmt::format("    {}\n", line);
  if (site.frames.empty()) out += "    (no full trace recorded: see DebugOptions::traces)\n";
}

void append_site_json(std::string& out, std::string_view key, const CallSite& site) {
  out += fmt::format(",\"{}\":", key);
  if (site.empty()) {
    out += "null";
    return;
  }
  out += fmt::format("{{\"ret_addr\":\"{}\",\"ret_function\":{},\"frames\":[",
                     hex(site.ret_addr),
                     json_string(symbolize(reinterpret_cast<void*>(site.ret_addr), true)));
  bool first = true;
  if (!site.frames.empty()) {
    for (const auto& f : site.symbolized_frames()) {
      if (!first) out += ',';
      first = false;
      out += fmt::format("{{\"pc\":\"{}\",\"function\":{},\"file\":{},\"line\":{}}}",
                         hex(f.pc), json_string(f.function), json_string(f.file), f.line);
    }
  }
  out += "]}";
}

std::string headline(const Report& r) {
  switch (r.kind) {
    case ErrorKind::kLeak:
      return fmt::format("leak: {} bytes at {:#x} (align {}) never freed", r.block_size,
                         r.block_address, r.block_alignment.bytes());
    case ErrorKind::kDoubleFree:
      return fmt::format("double free of {:#x} ({} bytes, align {})", r.address, r.block_size,
                         r.block_alignment.bytes());
    case ErrorKind::kInvalidPointer:
      return fmt::format("{} of {:#x}, a pointer this allocator never handed out "
                         "(passed {} bytes, align {})",
                         to_string(r.operation), r.address, r.passed_size,
                         r.passed_alignment.bytes());
    case ErrorKind::kUseOfFreed:
      return fmt::format("{} of {:#x} after it was freed ({} bytes, align {})",
                         to_string(r.operation), r.address, r.block_size,
                         r.block_alignment.bytes());
    case ErrorKind::kWrongSize:
      return fmt::format("{} of {:#x} with the wrong size: passed {} bytes, block has {}",
                         to_string(r.operation), r.address, r.passed_size, r.block_size);
    case ErrorKind::kWrongAlignment:
      return fmt::format("{} of {:#x} with the wrong alignment: passed {}, block has {}",
                         to_string(r.operation), r.address, r.passed_alignment.bytes(),
                         r.block_alignment.bytes());
    case ErrorKind::kOverrun:
      return fmt::format("write past the end of {:#x} ({} bytes): {} canary byte(s) changed, "
                         "first at offset {} (found during {})",
                         r.block_address, r.block_size, r.bad_bytes, r.offset,
                         to_string(r.operation));
    case ErrorKind::kUseAfterFree:
      return fmt::format("use after free: {} byte(s) of freed block {:#x} ({} bytes) were "
                         "written, first at offset {} (found during {})",
                         r.bad_bytes, r.block_address, r.block_size, r.offset,
                         to_string(r.operation));
  }
  return "unknown finding";
}

}  // namespace

std::string_view to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kLeak: return "leak";
    case ErrorKind::kDoubleFree: return "double_free";
    case ErrorKind::kInvalidPointer: return "invalid_pointer";
    case ErrorKind::kUseOfFreed: return "use_of_freed";
    case ErrorKind::kWrongSize: return "wrong_size";
    case ErrorKind::kWrongAlignment: return "wrong_alignment";
    case ErrorKind::kOverrun: return "overrun";
    case ErrorKind::kUseAfterFree: return "use_after_free";
  }
  return "unknown";
}

std::string_view to_string(Operation op) {
  switch (op) {
    case Operation::kAlloc: return "alloc";
    case Operation::kResize: return "resize";
    case Operation::kRemap: return "remap";
    case Operation::kFree: return "free";
    case Operation::kCheck: return "check";
    case Operation::kLeakCheck: return "leak check";
  }
  return "unknown";
}

void init_symbolizer(const char* argv0) {
  static std::once_flag once;
  std::call_once(once, [argv0] {
    // On ELF systems absl finds the executable through /proc/self; argv0 is
    // only a fallback, so the program's invocation name does when none given.
    absl::InitializeSymbolizer(argv0 != nullptr ? argv0 : program_invocation_name);
  });
}

std::string FrameInfo::text() const {
  if (function.empty() && file.empty()) return "??";
  std::string out = function.empty() ? std::string("??") : function;
  if (!file.empty()) out += fmt::format(" at {}:{}", file, line);
  return out;
}

FrameInfo symbolize_frame(const void* pc, bool is_return_address) {
  FrameInfo f;
  f.pc = reinterpret_cast<std::uintptr_t>(pc);
  if (pc == nullptr) return f;
  internal::SourceFrame s;
  if (internal::symbolize_pc(f.pc - (is_return_address ? 1 : 0), &s)) {
    f.function = std::move(s.function);
    f.file = std::move(s.file);
    f.line = s.line;
  }
  return f;
}

std::string symbolize(const void* pc, bool is_return_address) {
  FrameInfo f = symbolize_frame(pc, is_return_address);
  return f.function.empty() && f.file.empty() ? std::string() : f.text();
}

std::vector<FrameInfo> CallSite::symbolized_frames() const {
  std::vector<FrameInfo> out;
  if (frames.empty()) {
    if (ret_addr != 0) out.push_back(symbolize_frame(reinterpret_cast<void*>(ret_addr), true));
    return out;
  }
  bool leading = true;
  for (void* pc : frames) {
    FrameInfo f = symbolize_frame(pc, true);
    if (is_call_plumbing(f)) continue;
    if (leading && is_alloy_frame(f)) continue;
    leading = false;
    out.push_back(std::move(f));
  }
  return out;
}

std::vector<std::string> CallSite::symbolized() const {
  std::vector<std::string> out;
  if (frames.empty()) {
    if (ret_addr != 0) {
      out.push_back(fmt::format("ret {:#x} {}", ret_addr,
                                symbolize_frame(reinterpret_cast<void*>(ret_addr), true).text()));
    }
    return out;
  }
  int i = 0;
  for (const auto& f : symbolized_frames()) {
    out.push_back(fmt::format("#{} {:#x} {}", i++, f.pc, f.text()));
  }
  return out;
}

bool CallSite::mentions(std::string_view needle) const {
  if (ret_addr != 0 &&
      symbolize_frame(reinterpret_cast<void*>(ret_addr), true).text().find(needle) !=
          std::string::npos) {
    return true;
  }
  for (void* f : frames) {
    if (symbolize_frame(f, true).text().find(needle) != std::string::npos) return true;
  }
  return false;
}

std::string Report::text() const {
  std::string out = fmt::format("alloy debug: {}\n", headline(*this));
  if (!note.empty()) out += fmt::format("  note: {}\n", note);
  append_site_text(out, fmt::format("this call ({})", to_string(operation)), this_call);
  append_site_text(out, "allocated at", alloc_site);
  append_site_text(out, "first freed at", free_site);
  return out;
}

std::string Report::json() const {
  std::string out = fmt::format(
      "{{\"kind\":\"{}\",\"operation\":\"{}\",\"message\":{},\"address\":\"{}\","
      "\"block_address\":\"{}\",\"block_size\":{},\"passed_size\":{},\"new_size\":{},"
      "\"block_alignment\":{},\"passed_alignment\":{},\"offset\":{},\"bad_bytes\":{},"
      "\"note\":{}",
      to_string(kind), to_string(operation), json_string(headline(*this)), hex(address),
      hex(block_address), block_size, passed_size, new_size, block_alignment.bytes(),
      passed_alignment.bytes(), offset, bad_bytes, json_string(note));
  append_site_json(out, "this_call", this_call);
  append_site_json(out, "alloc_site", alloc_site);
  append_site_json(out, "free_site", free_site);
  out += '}';
  return out;
}

ReportSink stderr_text_sink() {
  return [](const Report& r) {
    std::string t = r.text();
    std::fwrite(t.data(), 1, t.size(), stderr);
  };
}

ReportSink stderr_json_sink() {
  return [](const Report& r) {
    std::string t = r.json();
    t += '\n';
    std::fwrite(t.data(), 1, t.size(), stderr);
  };
}

ReportSink collect_into(std::vector<Report>* out) {
  return [out](const Report& r) { out->push_back(r); };
}

ReportSink append_text_to(std::string* out) {
  return [out](const Report& r) { *out += r.text(); };
}

}  // namespace alloy::debug
