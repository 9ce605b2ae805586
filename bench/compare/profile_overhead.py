#!/usr/bin/env python3
"""The cost of sampled heap profiles on bench/compare/workloads.cc, alloy under
LD_PRELOAD in three builds or modes:

  out  the sampling hooks compiled out (--define=alloy_profile_hooks=0;
       pass that build's liballoy_malloc.so with --hooks-out)
  off  the default build, profiling off (hooks compiled in)
  on   the default build with ALLOY_PROF set (default rate 512 KiB, or --rate)

Prints, per workload and as geometric means over the workloads (issue 15's
budgets: off / out within 1.01, on / off within 1.05):
  - CPU time (user + system), the median of --reps runs interleaved mode by
    mode, so a load change on the shared machine hits every mode alike;
  - with --icount, instructions of one run per mode under callgrind (the
    steady figure when the machine is busy; valgrind serializes threads).

  bazel build --config=opt //bench/compare:workloads //adapters:liballoy_malloc.so
  cp bazel-out/k8-opt/bin/adapters/liballoy_malloc.so /tmp/alloy_hooks_in.so
  bazel build --config=opt --define=alloy_profile_hooks=0 //adapters:liballoy_malloc.so
  cp bazel-out/k8-opt/bin/adapters/liballoy_malloc.so /tmp/alloy_hooks_out.so
  python3 bench/compare/profile_overhead.py --alloy /tmp/alloy_hooks_in.so \\
      --hooks-out /tmp/alloy_hooks_out.so --reps 5 --icount
"""
import argparse
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile

import resource

# As run.py's WORKLOADS.
WORKLOADS = ["churn", "prodcons", "larson", "tree", "realloc", "frag", "bigfrag", "breathe",
             "churn8k", "mt2", "procs", "capped"]


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="timed runs per workload and mode (0: none)")
    ap.add_argument("--rate", default="", help="ALLOY_PROF_RATE (default: the adapter's 512 KiB)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--bin", default="bazel-out/k8-opt/bin/bench/compare/workloads")
    ap.add_argument("--alloy", default="bazel-out/k8-opt/bin/adapters/liballoy_malloc.so",
                    help="the default build's liballoy_malloc.so")
    ap.add_argument("--hooks-out", default="",
                    help="liballoy_malloc.so built with --define=alloy_profile_hooks=0")
    ap.add_argument("--icount", action="store_true", help="also count instructions (callgrind)")
    args = ap.parse_args()
    workloads = args.workloads.split(",")
    modes = (["out"] if args.hooks_out else []) + ["off", "on"]
    tmp = tempfile.mkdtemp(prefix="alloy-prof-")

    def env_for(mode, workload):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOY_")}
        env["LD_PRELOAD"] = args.hooks_out if mode == "out" else args.alloy
        if mode == "on":
            env["ALLOY_PROF"] = os.path.join(tmp, workload + ".pb.gz")
            if args.rate:
                env["ALLOY_PROF_RATE"] = args.rate
        return env

    pairs = [("off", "out", "off / out")] if args.hooks_out else []
    pairs.append(("on", "off", "on / off"))

    if args.reps > 0:
        times = {(w, m): [] for w in workloads for m in modes}
        for rep in range(args.reps):
            order = modes if rep % 2 == 0 else list(reversed(modes))
            for w in workloads:
                for mode in order:
                    times[(w, mode)].append(cpu_time(args.bin, w, env_for(mode, w)))
            print("repetition %d/%d done" % (rep + 1, args.reps), file=sys.stderr)
        print("CPU time (user + system, s), median of %d interleaved runs, alloy via LD_PRELOAD"
              % args.reps)
        table({k: statistics.median(v) for k, v in times.items()}, workloads, modes, pairs,
              "%.3f")

    if args.icount:
        counts = {}
        for w in workloads:
            for mode in modes:
                counts[(w, mode)] = instructions(args.bin, w, env_for(mode, w), tmp)
            print("callgrind: %s done" % w, file=sys.stderr)
        print()
        print("instructions (callgrind, one run per mode, millions)")
        table({k: v / 1e6 for k, v in counts.items()}, workloads, modes, pairs, "%.1f")


def table(values, workloads, modes, pairs, fmt):
    print("| workload | " + " | ".join(modes) + " | " + " | ".join(p[2] for p in pairs) + " |")
    print("|---" * (1 + len(modes) + len(pairs)) + "|")
    ratios = {p: [] for p in pairs}
    for w in workloads:
        cells = [fmt % values[(w, m)] for m in modes]
        for p in pairs:
            r = values[(w, p[0])] / values[(w, p[1])]
            ratios[p].append(r)
            cells.append("%.4f" % r)
        print("| %s | %s |" % (w, " | ".join(cells)))
    print("| **geometric mean** | " + " | ".join("" for _ in modes) + " | " +
          " | ".join("**%.4f**" % geomean(ratios[p]) for p in pairs) + " |")


def cpu_time(binary, workload, env):
    """CPU seconds (user + system) of one run: steadier than wall time on a
    shared machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([binary, workload], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError("%s %s exited %d: %s" % (binary, workload, proc.returncode,
                                                    proc.stderr.decode(errors="replace")))
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def instructions(binary, workload, env, tmp):
    """Instructions of one run (every thread, every forked child) under callgrind."""
    out = os.path.join(tmp, "callgrind.%s.%%p" % workload)
    for f in os.listdir(tmp):
        if f.startswith("callgrind.%s." % workload):
            os.unlink(os.path.join(tmp, f))
    proc = subprocess.run(["valgrind", "--tool=callgrind", "--trace-children=yes",
                           "--callgrind-out-file=" + out, binary, workload],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise RuntimeError("callgrind %s exited %d: %s" % (workload, proc.returncode,
                                                           proc.stderr.decode(errors="replace")))
    total = 0
    for line in proc.stderr.decode(errors="replace").splitlines():
        m = re.search(r"Collected : (\d+)", line)
        if m:
            total += int(m.group(1))
    if total == 0:
        raise RuntimeError("no callgrind count for %s" % workload)
    return total


if __name__ == "__main__":
    main()
