#include "alloy/debug/report.h"

#include <absl/debugging/symbolize.h>
#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <mutex>

namespace alloy::debug {
namespace {

// Frames inside the debug allocator itself say nothing about the user's code.
bool is_internal_frame(std::string_view name) {
  return name.find("alloy::DebugAllocator::") != std::string_view::npos ||
         name.find("alloy::debug::internal::") != std::string_view::npos ||
         name.starts_with("alloy::Allocator::raw_");
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

struct SymbolizedFrame {
  std::uintptr_t pc;
  std::string name;
};

std::vector<SymbolizedFrame> symbolized_frames(const CallSite& site) {
  std::vector<SymbolizedFrame> out;
  bool leading = true;
  for (void* f : site.frames) {
    std::string name = symbolize(f, true);
    if (leading && is_internal_frame(name)) continue;
    leading = false;
    out.push_back({reinterpret_cast<std::uintptr_t>(f), std::move(name)});
  }
  return out;
}

void append_site_text(std::string& out, std::string_view title, const CallSite& site) {
  if (site.empty()) return;
  out += fmt::format("  {}:\n", title);
  if (site.frames.empty()) {
    std::string name = symbolize(reinterpret_cast<void*>(site.ret_addr), true);
    out += fmt::format("    ret {:#x} {}\n", site.ret_addr,
                       name.empty() ? "??" : name);
    out += "    (no full trace recorded: see DebugOptions::traces)\n";
    return;
  }
  int i = 0;
  for (const auto& f : symbolized_frames(site)) {
    out += fmt::format("    #{} {:#x} {}\n", i++, f.pc, f.name.empty() ? "??" : f.name);
  }
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
  for (const auto& f : symbolized_frames(site)) {
    if (!first) out += ',';
    first = false;
    out += fmt::format("{{\"pc\":\"{}\",\"function\":{}}}", hex(f.pc), json_string(f.name));
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

std::string symbolize(const void* pc, bool is_return_address) {
  if (pc == nullptr) return {};
  init_symbolizer();
  char buf[1024];
  const char* lookup = static_cast<const char*>(pc) - (is_return_address ? 1 : 0);
  if (!absl::Symbolize(lookup, buf, sizeof(buf))) return {};
  return buf;
}

std::vector<std::string> CallSite::symbolized() const {
  std::vector<std::string> out;
  if (frames.empty()) {
    if (ret_addr != 0) {
      out.push_back(fmt::format("ret {:#x} {}", ret_addr,
                                symbolize(reinterpret_cast<void*>(ret_addr), true)));
    }
    return out;
  }
  int i = 0;
  for (const auto& f : symbolized_frames(*this)) {
    out.push_back(fmt::format("#{} {:#x} {}", i++, f.pc, f.name));
  }
  return out;
}

bool CallSite::mentions(std::string_view needle) const {
  if (ret_addr != 0 &&
      symbolize(reinterpret_cast<void*>(ret_addr), true).find(needle) != std::string::npos) {
    return true;
  }
  for (void* f : frames) {
    if (symbolize(f, true).find(needle) != std::string::npos) return true;
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
