#!/usr/bin/env python3
"""The cost of sampled heap profiles: alloy under LD_PRELOAD with profiling
off and with ALLOY_PROF on (default rate 512 KiB, or --rate), interleaved run
by run, per workload of bench/compare/workloads.cc; prints each workload's
CPU-time ratio (on / off) and their geometric mean (issue 15's budget: 1.05).

  bazel build --config=opt //bench/compare:workloads //adapters:liballoy_malloc.so
  python3 bench/compare/profile_overhead.py --reps 5
"""
import argparse
import math
import os
import statistics
import sys
import tempfile

import resource
import subprocess

WORKLOADS = ["churn", "prodcons", "larson", "tree", "realloc", "frag"]  # as run.py


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rate", default="", help="ALLOY_PROF_RATE (default: the adapter's 512 KiB)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--bin", default="bazel-out/k8-opt/bin/bench/compare/workloads")
    ap.add_argument("--alloy", default="bazel-out/k8-opt/bin/adapters/liballoy_malloc.so")
    args = ap.parse_args()
    workloads = args.workloads.split(",")
    tmp = tempfile.mkdtemp(prefix="alloy-prof-")
    times = {(w, m): [] for w in workloads for m in ("off", "on")}
    for rep in range(args.reps):
        for w in workloads:
            for mode in (("off", "on") if rep % 2 == 0 else ("on", "off")):
                wall = run_once_with(args.bin, w, args.alloy, mode == "on", args.rate, tmp)
                times[(w, mode)].append(wall)
        print("repetition %d/%d done" % (rep + 1, args.reps), file=sys.stderr)
    print("median of %d interleaved runs, alloy via LD_PRELOAD; CPU time (user + system) in s"
          % args.reps)
    print("| workload | profiling off | ALLOY_PROF on | on / off |")
    print("|---|---|---|---|")
    ratios = []
    for w in workloads:
        off = statistics.median(times[(w, "off")])
        on = statistics.median(times[(w, "on")])
        ratios.append(on / off)
        print("| %s | %.3f | %.3f | %.3f |" % (w, off, on, on / off))
    print("| **geometric mean** | | | **%.3f** |" %
          math.exp(sum(math.log(r) for r in ratios) / len(ratios)))


def run_once_with(binary, workload, preload, profile, rate, tmp):
    """CPU seconds (user + system) of one run: steadier than wall time on a
    shared machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOY_")}
    env["LD_PRELOAD"] = preload
    if profile:
        env["ALLOY_PROF"] = os.path.join(tmp, workload + ".pb.gz")
        if rate:
            env["ALLOY_PROF_RATE"] = rate
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([binary, workload], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError("%s %s exited %d: %s" % (binary, workload, proc.returncode,
                                                    proc.stderr.decode(errors="replace")))
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


if __name__ == "__main__":
    main()
