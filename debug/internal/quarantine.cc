#include "alloy/debug/internal/quarantine.h"

namespace alloy::debug::internal {

std::optional<std::uint64_t> Quarantine::find(std::uintptr_t addr) const {
  for (std::uint64_t pos = freed_.end(); pos-- != freed_.begin();) {  // newest first
    if (freed_.at(pos).addr == addr) return pos;
  }
  return std::nullopt;
}

const StackTrace* Quarantine::trace_of(std::uint64_t pos) const {
  if (!freed_.at(pos).traced()) return nullptr;
  for (std::uint64_t i = traces_.end(); i-- != traces_.begin();) {
    if (traces_.at(i).pos == pos) return traces_.at(i).trace;
  }
  return nullptr;
}

void Quarantine::forget(TracePool& pool) {
  const std::uint64_t keep_from = released_ - limits_.history;
  while (!traces_.empty() && traces_.front().pos < keep_from) {
    pool.release(traces_.front().trace);
    traces_.pop_front();
  }
  freed_.drop_until(keep_from);
}

void Quarantine::release_traces(TracePool& pool) {
  while (!traces_.empty()) {
    pool.release(traces_.front().trace);
    traces_.pop_front();
  }
}

}  // namespace alloy::debug::internal
