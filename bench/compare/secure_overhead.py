#!/usr/bin/env python3
"""The cost of alloy's hardening: the workloads of bench/compare/workloads.cc
under LD_PRELOAD=liballoy_malloc.so in the default mode and with
ALLOY_SECURE=1 (and, with --base, under an unhardened build of the adapter),
interleaved run by run; prints each workload's CPU-time ratios (secure /
default, and default / base) and their geometric means. Issue 13's budgets:
secure / default <= 1.10, default / base <= 1.02.

  bazel build --config=opt //bench/compare:workloads //adapters:liballoy_malloc.so
  python3 bench/compare/secure_overhead.py --reps 5 [--base /path/to/unhardened.so]
"""
import argparse
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile

WORKLOADS = ["churn", "prodcons", "larson", "tree", "realloc", "frag"]  # as run.py's first six


def cpu_seconds(binary, workload, preload, extra_env):
    """CPU seconds (user + system) of one run: steadier than wall time on a
    shared machine. The checksum line is returned too (it must not differ
    between modes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOY_")}
    env["LD_PRELOAD"] = preload
    env.update(extra_env)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([binary, workload], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError("%s %s (%s) exited %d: %s" % (binary, workload, extra_env,
                                                         proc.returncode,
                                                         proc.stderr.decode(errors="replace")))
    checksum = proc.stdout.decode().split()[1] if proc.stdout else ""
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), checksum


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--bin", default="bazel-out/k8-opt/bin/bench/compare/workloads")
    ap.add_argument("--alloy", default="bazel-out/k8-opt/bin/adapters/liballoy_malloc.so")
    ap.add_argument("--base", default="", help="an unhardened liballoy_malloc.so, for default / base")
    args = ap.parse_args()
    # Private copies: a build in the workspace must not swap them mid-run.
    scratch = tempfile.mkdtemp(prefix="alloy-secure-")
    binary = shutil.copy(args.bin, scratch)
    alloy = shutil.copy(args.alloy, os.path.join(scratch, "alloy.so"))
    modes = [("default", alloy, {}), ("secure", alloy, {"ALLOY_SECURE": "1"})]
    if args.base:
        modes.append(("base", shutil.copy(args.base, os.path.join(scratch, "base.so")), {}))
    workloads = args.workloads.split(",")
    times = {(w, m[0]): [] for w in workloads for m in modes}
    sums = {}
    for rep in range(args.reps):
        for w in workloads:
            order = modes[rep % len(modes):] + modes[:rep % len(modes)]  # nobody always first
            for name, lib, env in order:
                t, checksum = cpu_seconds(binary, w, lib, env)
                times[(w, name)].append(t)
                sums.setdefault(w, set()).add(checksum)
        print("repetition %d/%d done" % (rep + 1, args.reps), file=sys.stderr)
    for w, s in sums.items():
        if len(s) != 1:
            sys.exit("CHECKSUM MISMATCH in %s: %s" % (w, s))
    print("median of %d interleaved runs, alloy via LD_PRELOAD; CPU time (user + system) in s"
          % args.reps)
    head = "| workload | default | ALLOY_SECURE=1 | secure / default |"
    if args.base:
        head += " base | default / base |"
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    sec, dflt = [], []
    for w in workloads:
        d = statistics.median(times[(w, "default")])
        s = statistics.median(times[(w, "secure")])
        sec.append(s / d)
        row = "| %s | %.3f | %.3f | %.2f |" % (w, d, s, s / d)
        if args.base:
            b = statistics.median(times[(w, "base")])
            dflt.append(d / b)
            row += " %.3f | %.3f |" % (b, d / b)
        print(row)
    row = "| **geometric mean** | | | **%.2f** |" % geomean(sec)
    if args.base:
        row += " | **%.3f** |" % geomean(dflt)
    print(row)


if __name__ == "__main__":
    main()
