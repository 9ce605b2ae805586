// A library function written the alloy way: it takes an alloy::Allocator and
// lets the caller pick the strategy. Tokens are string_views into the input;
// only the token array itself is allocated, through the handle.
//
// Cost: one growing Vec per call. Thread safety: as the handle passed in.
//
// Example:
//   auto tokens = demo::tokenize(alloy::c_allocator(), "a b  c");
//   if (!tokens) return;                       // out of memory, no throw
//   for (std::string_view t : *tokens) use(t);
//   // the Vec frees through the same handle when it goes out of scope
#pragma once

#include <string_view>

#include "alloy/alloc_iface/vec.h"

namespace demo {

// Splits `text` on ASCII white space.
inline alloy::Result<alloy::Vec<std::string_view>> tokenize(alloy::Allocator a,
                                                            std::string_view text) {
  alloy::Vec<std::string_view> tokens(a);
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\n' || text[i] == '\t')) ++i;
    std::size_t start = i;
    while (i < text.size() && !(text[i] == ' ' || text[i] == '\n' || text[i] == '\t')) ++i;
    if (i > start) {
      if (auto r = tokens.try_push(text.substr(start, i - start)); !r) {
        return alloy::Err(r.error());
      }
    }
  }
  return tokens;
}

}  // namespace demo
