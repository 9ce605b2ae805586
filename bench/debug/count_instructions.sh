#!/bin/bash
# Instructions per alloc+free for each DebugAllocator configuration and the
# ratio to the child (glibc malloc/free), counted by callgrind: steady on a
# shared machine where timings are not. Usage (after
# `bazel build --config=opt //bench/debug:debug_overhead_count`):
#   bench/debug/count_instructions.sh [bazel-bin/bench/debug/debug_overhead_count] [configs...]
# THREADED=1 starts a thread first, so the lock is taken on every call.
set -euo pipefail
bin=${1:-bazel-bin/bench/debug/debug_overhead_count}
shift || true
configs=("$@")
[ ${#configs[@]} -eq 0 ] && configs=(child ret_addr sampled64 ret_addr_st ret_addr_min always)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
count() {  # config mode -> instructions per alloc+free
  valgrind --tool=callgrind --callgrind-out-file="$tmp/out" --toggle-collect='*counted*' \
    "$bin" "$1" "$2" ${THREADED:+threaded} >/dev/null 2>"$tmp/log"
  local total
  total=$(sed -n 's/.*Collected : *\([0-9]*\).*/\1/p' "$tmp/log")
  local ops=100000
  [ "$2" = batch ] && ops=128000
  echo $((total / ops))
}
printf '%-18s %8s %7s %8s %7s\n' config pair ratio batch ratio
child_pair=$(count child pair)
child_batch=$(count child batch)
for c in "${configs[@]}"; do
  if [ "$c" = child ]; then p=$child_pair; b=$child_batch; else p=$(count "$c" pair); b=$(count "$c" batch); fi
  printf '%-18s %8d %6.2fx %8d %6.2fx\n' "$c" "$p" "$(echo "$p / $child_pair" | bc -l)" \
    "$b" "$(echo "$b / $child_batch" | bc -l)"
done
