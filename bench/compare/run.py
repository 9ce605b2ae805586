#!/usr/bin/env python3
"""Whole-program malloc comparison: alloy vs glibc, jemalloc, tcmalloc, mimalloc.

Runs each workload of bench/compare/workloads.cc under every allocator (peers
are Debian's shared libraries, alloy is //adapters:liballoy_malloc.so, all via
LD_PRELOAD; glibc is the plain run), interleaved so that machine noise hits
every allocator alike, and prints per workload the median wall time and the
median peak RSS (getrusage of the child, ru_maxrss), then the geometric mean
of alloy's time ratio against each peer (< 1.00 means alloy is faster).

Build first (optimised, so the adapter's debug checks are off):
  bazel build --config=opt //bench/compare:workloads //adapters:liballoy_malloc.so
Then:
  python3 bench/compare/run.py            # 5 interleaved repetitions
  python3 bench/compare/run.py --reps 3 --workloads churn,tree

Every run's checksum must match across allocators; a mismatch is reported
and fails the script (a broken allocator must not look fast).
"""
import argparse
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

LIBDIR = "/usr/lib/x86_64-linux-gnu"
PEERS = {
    "glibc": None,
    "jemalloc": LIBDIR + "/libjemalloc.so.2",        # Debian libjemalloc2
    "tcmalloc": LIBDIR + "/libtcmalloc_minimal.so.4",  # libtcmalloc-minimal4
    "mimalloc": LIBDIR + "/libmimalloc.so.2",        # libmimalloc2.0
}
WORKLOADS = ["churn", "prodcons", "larson", "tree", "realloc", "frag"]


def run_once(binary, workload, preload):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    for k in list(env):
        if k.startswith("ALLOY_"):
            del env[k]
    extra = {}
    if preload and ":" in preload:  # a --variant: path:NAME=value,...
        preload, settings = preload.split(":", 1)
        extra = dict(kv.split("=", 1) for kv in settings.split(",") if kv)
    env.update(extra)
    if preload:
        env["LD_PRELOAD"] = preload
    start = time.perf_counter()
    proc = subprocess.Popen([binary, workload], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError("%s %s (LD_PRELOAD=%s) exited %d: %s" %
                           (binary, workload, preload, proc.returncode,
                            err.decode(errors="replace")))
    fields = out.decode().split()
    info = dict(f.split("=", 1) for f in fields[1:])
    cpu = usage.ru_utime + usage.ru_stime
    return wall, usage.ru_maxrss / 1024.0, info, cpu  # ru_maxrss is in KiB


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--allocators", default="glibc,jemalloc,tcmalloc,mimalloc,alloy")
    # bazel-out/k8-opt is where --config=opt puts them whatever bazel-bin
    # points at after other builds in the same workspace.
    ap.add_argument("--bin", default="bazel-out/k8-opt/bin/bench/compare/workloads")
    ap.add_argument("--alloy", default="bazel-out/k8-opt/bin/adapters/liballoy_malloc.so")
    ap.add_argument("--variant", action="append", default=[],
                    help="NAME=LIB[:ENV=VALUE,...]: one more allocator, shown as a peer "
                         "of alloy (e.g. base=/tmp/old.so, or secure=LIB:ALLOY_SECURE=1)")
    args = ap.parse_args()

    if not os.path.exists(args.bin):
        sys.exit("build first: bazel build --config=opt //bench/compare:workloads "
                 "//adapters:liballoy_malloc.so")
    # Run private copies: a build in the workspace must not swap them mid-run.
    scratch = tempfile.mkdtemp(prefix="alloy-compare-")
    args.bin = shutil.copy(args.bin, scratch)
    if os.path.exists(args.alloy):
        args.alloy = shutil.copy(args.alloy, scratch)

    allocators = {}
    for name in args.allocators.split(","):
        path = os.path.abspath(args.alloy) if name == "alloy" else PEERS[name]
        if path is not None and not os.path.exists(path):
            print("skipping %s: %s not found" % (name, path), file=sys.stderr)
            continue
        allocators[name] = path
    for v in args.variant:
        name, spec = v.split("=", 1)
        path = spec.split(":", 1)[0]
        if not os.path.exists(path):
            print("skipping %s: %s not found" % (name, path), file=sys.stderr)
            continue
        copy = os.path.join(scratch, name + ".so")
        shutil.copy(path, copy)
        allocators[name] = copy + spec[len(path):]
    workloads = args.workloads.split(",")

    times = {(w, a): [] for w in workloads for a in allocators}
    rss = {(w, a): [] for w in workloads for a in allocators}
    cpus = {(w, a): [] for w in workloads for a in allocators}
    after_free = {a: [] for a in allocators}
    checksums = {}
    names = list(allocators)
    for rep in range(args.reps):
        for w in workloads:
            # Rotate the order every repetition: nobody always runs first.
            order = names[rep % len(names):] + names[:rep % len(names)]
            for a in order:
                wall, peak, info, cpu = run_once(args.bin, w, allocators[a])
                times[(w, a)].append(wall)
                cpus[(w, a)].append(cpu)
                rss[(w, a)].append(peak)
                if "rss_after_free_mb" in info:
                    after_free[a].append(float(info["rss_after_free_mb"]))
                checksums.setdefault(w, {})[a] = info.get("checksum")
        print("repetition %d/%d done" % (rep + 1, args.reps), file=sys.stderr)

    bad = [(w, c) for w, c in checksums.items() if len(set(c.values())) != 1]
    for w, c in bad:
        print("CHECKSUM MISMATCH in %s: %s" % (w, c))

    print("date: %s UTC" % time.strftime("%Y-%m-%d %H:%M", time.gmtime()))
    print("machine: %s, nproc=%d, %s" % (cpu_model(), os.cpu_count(), platform.platform()))
    print("median of %d interleaved runs; time in s, peak RSS in MiB" % args.reps)
    print()
    header = "| workload | " + " | ".join(names) + " |"
    print(header)
    print("|" + "---|" * (len(names) + 1))
    for w in workloads:
        cells = []
        for a in names:
            cells.append("%.3f s / %.0f MiB" % (statistics.median(times[(w, a)]),
                                              statistics.median(rss[(w, a)])))
        print("| %s | %s |" % (w, " | ".join(cells)))
    if any(after_free.values()):
        cells = ["%.0f MiB" % statistics.median(after_free[a]) if after_free[a] else "-"
                 for a in names]
        print("| frag: RSS after freeing 90%% | %s |" % " | ".join(cells))

    if "alloy" in allocators:
        print()
        print("alloy time / peer time per workload (< 1.00 = alloy faster):")
        print()
        peers = [a for a in names if a != "alloy"]
        print("| workload | " + " | ".join(peers) + " |")
        print("|" + "---|" * (len(peers) + 1))
        ratios = {p: [] for p in peers}
        for w in workloads:
            alloy_t = statistics.median(times[(w, "alloy")])
            cells = []
            for p in peers:
                r = alloy_t / statistics.median(times[(w, p)])
                ratios[p].append(r)
                cells.append("%.2f" % r)
            print("| %s | %s |" % (w, " | ".join(cells)))
        geo = {p: math.exp(sum(math.log(r) for r in rs) / len(rs)) for p, rs in ratios.items()}
        print("| **geometric mean** | %s |" % " | ".join("**%.2f**" % geo[p] for p in peers))
        # CPU time (user + sys of the child) is less disturbed by other load
        # on a shared machine than wall time; shown as a cross-check.
        cpu_geo = {}
        for p in peers:
            logs = [math.log(statistics.median(cpus[(w, "alloy")]) /
                             max(statistics.median(cpus[(w, p)]), 1e-6)) for w in workloads]
            cpu_geo[p] = math.exp(sum(logs) / len(logs))
        print("| geometric mean, CPU time | %s |" % " | ".join("%.2f" % cpu_geo[p] for p in peers))
        if "mimalloc" in allocators:
            worse = [w for w in workloads
                     if statistics.median(rss[(w, "alloy")]) >
                     statistics.median(rss[(w, "mimalloc")])]
            print()
            print("workloads where alloy's peak RSS exceeds mimalloc's: %s" %
                  (", ".join(worse) if worse else "none"))
        if "glibc" in allocators:
            slower = [w for w in workloads
                      if statistics.median(times[(w, "alloy")]) >
                      statistics.median(times[(w, "glibc")])]
            print("workloads where alloy is slower than glibc: %s" %
                  (", ".join(slower) if slower else "none"))
    shutil.rmtree(scratch, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
