// Memory account reports (account.h): text, JSON and Prometheus text, all
// made from snapshot(). These allocate (std::string), through whatever the
// calling thread allocates from (a scope's account, if it is in one).
#include <string>

#include "alloy/allocators/engine/account.h"

namespace alloy {
namespace {

void add_num(std::string& out, std::size_t v) { out += std::to_string(v); }

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      static const char kHex[] = "0123456789abcdef";
      out += "\\u00";
      out += kHex[(c >> 4) & 0xf];
      out += kHex[c & 0xf];
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

// Prometheus label values escape backslash, double quote and newline.
std::string label(std::string_view path) {
  std::string out = "{account=\"";
  if (path.empty()) out += '/';  // the root
  for (char c : path) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  out += "\"}";
  return out;
}

// JSON of snapshot entry i and its subtree; returns the index after it.
std::size_t json_node(const std::vector<AccountSnapshot>& s, std::size_t i, std::string& out) {
  const AccountSnapshot& a = s[i];
  out += "{\"name\":" + json_string(a.name) + ",\"path\":" + json_string(a.path);
  out += ",\"bytes\":";
  add_num(out, a.bytes);
  out += ",\"own_bytes\":";
  add_num(out, a.own_bytes);
  out += ",\"blocks\":";
  add_num(out, a.blocks);
  out += ",\"peak\":";
  add_num(out, a.peak);
  out += ",\"limit\":";
  if (a.limit == SIZE_MAX) out += "null"; else add_num(out, a.limit);
  out += ",\"soft_limit\":";
  if (a.soft_limit == SIZE_MAX) out += "null"; else add_num(out, a.soft_limit);
  out += ",\"refusals\":";
  add_num(out, a.refusals);
  out += ",\"children\":[";
  std::size_t next = i + 1;
  for (std::size_t k = 0; k < a.children; ++k) {
    if (k != 0) out += ',';
    next = json_node(s, next, out);
  }
  out += "]}";
  return next;
}

}  // namespace

std::string Account::report_text() const {
  std::string out;
  for (const AccountSnapshot& a : snapshot()) {
    out.append(2 * a.depth, ' ');
    out += a.name;
    out += ": ";
    add_num(out, a.bytes);
    out += " bytes in ";
    add_num(out, a.blocks);
    out += " blocks (own ";
    add_num(out, a.own_bytes);
    out += "), peak ";
    add_num(out, a.peak);
    if (a.limit != SIZE_MAX) {
      out += ", limit ";
      add_num(out, a.limit);
    }
    if (a.soft_limit != SIZE_MAX) {
      out += ", soft limit ";
      add_num(out, a.soft_limit);
    }
    if (a.refusals != 0) {
      out += ", ";
      add_num(out, a.refusals);
      out += " refused";
    }
    out += '\n';
  }
  return out;
}

std::string Account::report_json() const {
  const std::vector<AccountSnapshot> s = snapshot();
  std::string out;
  if (s.empty()) return "null";
  json_node(s, 0, out);
  return out;
}

std::string Account::report_prometheus() const {
  const std::vector<AccountSnapshot> s = snapshot();
  std::string out;
  struct Metric {
    const char* name;
    const char* type;
    const char* help;
    std::size_t AccountSnapshot::*field;
    bool only_set;  // skip accounts without a limit
  };
  static const Metric kMetrics[] = {
      {"alloy_account_bytes", "gauge",
       "Bytes of the account's live blocks, descendants included.", &AccountSnapshot::bytes, false},
      {"alloy_account_blocks", "gauge", "Live blocks of the account, descendants included.",
       &AccountSnapshot::blocks, false},
      {"alloy_account_peak_bytes", "gauge", "Highest alloy_account_bytes seen.",
       &AccountSnapshot::peak, false},
      {"alloy_account_limit_bytes", "gauge", "Hard limit of the account (accounts with one).",
       &AccountSnapshot::limit, true},
      {"alloy_account_refusals_total", "counter",
       "Allocations refused by the account's own limit.", &AccountSnapshot::refusals, false},
  };
  for (const Metric& m : kMetrics) {
    out += "# HELP ";
    out += m.name;
    out += ' ';
    out += m.help;
    out += "\n# TYPE ";
    out += m.name;
    out += ' ';
    out += m.type;
    out += '\n';
    for (const AccountSnapshot& a : s) {
      const std::size_t v = a.*(m.field);
      if (m.only_set && v == SIZE_MAX) continue;
      out += m.name;
      out += label(a.path);
      out += ' ';
      add_num(out, v);
      out += '\n';
    }
  }
  return out;
}

}  // namespace alloy
