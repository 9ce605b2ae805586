#!/usr/bin/env bash
# CPython's own test suite under alloy's malloc: another project's tests, run
# against a program nobody here wrote, through LD_PRELOAD.
#
# Runs a list of Debian python3's stdlib test modules (package
# libpython3.11-testsuite, installed if missing) once under glibc and once with
# liballoy_malloc.so preloaded, and prints each module's verdict under both.
# Exits 1 if a module that passes under glibc fails under alloy. Not part of
# tools/test: the default list takes about 6 minutes on an idle 2-core machine.
#
# Usage: tests/external/python_stdlib.sh [PATH/TO/liballoy_malloc.so] [MODULE ...]
#   default .so: bazel-bin/adapters/liballoy_malloc.so (build it with
#   `bazel build --config=opt //adapters:liballoy_malloc.so`)
set -uo pipefail
cd "$(dirname "$0")/../.."

so=${1:-bazel-bin/adapters/liballoy_malloc.so}
shift || true
so=$(readlink -f "$so")
[ -f "$so" ] || { echo "no $so: build //adapters:liballoy_malloc.so first"; exit 2; }

if [ ! -f /usr/lib/python3.11/test/test_dict.py ]; then
  sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq libpython3.11-testsuite >/dev/null
fi

# Modules that allocate hard (containers, strings, pickling, compression,
# threads, processes, mmap, tracemalloc, ctypes) and finish in seconds each.
modules=("$@")
[ ${#modules[@]} -gt 0 ] || modules=(
  test_unicode test_dict test_list test_set test_bytes test_gc test_threading
  test_tracemalloc test_mmap test_deque test_json test_re test_zlib test_pickle
  test_array test_memoryview test_subprocess test_os test_ctypes test_io
  test_weakref test_itertools test_collections test_bigmem test_hashlib
  test_struct test_decimal test_fractions test_math test_sort test_heapq
  test_functools test_signal test_concurrent_futures test_queue test_thread
  test_asyncio test_email test_xml_etree test_csv test_difflib test_lzma
  test_bz2 test_tarfile test_zipfile test_sys test_faulthandler test_resource
  test_multiprocessing_forkserver
)

# Prints "module verdict" lines for one run of the listed modules.
run_suite() {
  local log
  log=$(mktemp)
  env "$@" /usr/bin/python3 -m test "${modules[@]}" >"$log" 2>&1
  for m in "${modules[@]}"; do
    if grep -qE "(^| )$m (failed|crashed)" "$log"; then echo "$m failed"
    elif grep -qE "(^| )$m skipped" "$log"; then echo "$m skipped"
    else echo "$m ok"; fi
  done
  rm -f "$log"
}

echo "python3 stdlib tests: ${#modules[@]} modules, glibc then alloy ($so)"
glibc=$(run_suite)
alloy=$(run_suite LD_PRELOAD="$so")

regressions=0
printf '%-34s %-8s %s\n' module glibc alloy
while read -r m g; do
  a=$(awk -v m="$m" '$1 == m { print $2 }' <<<"$alloy")
  printf '%-34s %-8s %s\n' "$m" "$g" "$a"
  if [ "$g" = ok ] && [ "$a" != ok ]; then regressions=$((regressions + 1)); fi
done <<<"$glibc"
echo "modules passing under glibc and failing under alloy: $regressions"
[ "$regressions" -eq 0 ]
