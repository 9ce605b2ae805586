#!/usr/bin/env python3
"""Whole-program malloc comparison: alloy vs glibc, jemalloc, tcmalloc, mimalloc.

Runs each workload of bench/compare/workloads.cc under every allocator (peers
are Debian's shared libraries, alloy is //adapters:liballoy_malloc.so, all via
LD_PRELOAD; glibc is the plain run), interleaved so that machine noise hits
every allocator alike, and prints per workload the median wall time, system
time and peak RSS (from GNU time, see measure()), and the madvise + mmap +
munmap calls of one separate `strace -f -c` run; then alloy's ratio to the
best peer in each column, and its time ratio against each peer (< 1.00
means alloy is faster). Needs strace and GNU time (tools/install-deps).

Build first (optimised, so the adapter's debug checks are off):
  bazel build --config=opt //bench/compare:workloads //adapters:liballoy_malloc.so
Then:
  python3 bench/compare/run.py            # 5 interleaved repetitions
  python3 bench/compare/run.py --reps 3 --workloads churn,tree
  python3 bench/compare/run.py --lib alloy_old=/tmp/old.so   # one more column

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
WORKLOADS = ["churn", "prodcons", "larson", "tree", "realloc", "frag", "bigfrag", "breathe",
             "churn8k", "mt2", "procs", "capped"]


MEMORY_CALLS = ("madvise", "mmap", "munmap")


def split_variant(preload):
    """A --variant's "path:NAME=value,..." as (path, ["NAME=value", ...])."""
    if preload and ":" in preload:
        preload, settings = preload.split(":", 1)
        return preload, [kv for kv in settings.split(",") if kv]
    return preload, []


def clean_env(preload):
    """The environment of a run: no inherited LD_PRELOAD or ALLOY_ settings."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    for k in list(env):
        if k.startswith("ALLOY_"):
            del env[k]
    preload, extra = split_variant(preload)
    env.update(dict(kv.split("=", 1) for kv in extra))
    if preload:
        env["LD_PRELOAD"] = preload
    return env


def count_syscalls(argv, preload):
    """madvise/mmap/munmap calls of argv and every process it starts, from one
    run under `strace -f -c` (never a timed run: strace slows the program).
    Returns {"madvise": n, "mmap": n, "munmap": n, "total": sum}."""
    out = tempfile.NamedTemporaryFile(prefix="alloy-strace-", delete=False)
    out.close()
    env = clean_env(None)
    cmd = ["strace", "-f", "-c", "-o", out.name, "-e", "trace=" + ",".join(MEMORY_CALLS)]
    preload, extra = split_variant(preload)
    for kv in extra:
        cmd += ["-E", kv]
    if preload:
        cmd += ["-E", "LD_PRELOAD=" + preload]  # the tracee only, not strace itself
    subprocess.run(cmd + list(argv), env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    counts = {c: 0 for c in MEMORY_CALLS}
    with open(out.name) as f:
        for line in f:
            tok = line.split()
            if len(tok) >= 5 and tok[-1] in counts and tok[3].isdigit():
                counts[tok[-1]] = int(tok[3])
    os.unlink(out.name)
    counts["total"] = sum(counts[c] for c in MEMORY_CALLS)
    return counts


def measure(argv, preload):
    """One run of argv with `preload`: (wall s, user s, sys s, peak RSS MiB,
    stdout). The figures come from GNU time (Debian package `time`), which
    forks the program from its own small process: the rusage of a child of
    this script would count the script's own RSS, since the child is
    vforked from it and exec() keeps the RSS high-water mark of the mm it
    leaves (every peak read at least ~15 MiB that way). `env` puts the
    library in the program's LD_PRELOAD only, not in time's."""
    out = tempfile.NamedTemporaryFile(prefix="alloy-time-", delete=False)
    out.close()
    cmd = ["/usr/bin/time", "-f", "%U %S %M", "-o", out.name, "env"]
    path, extra = split_variant(preload)
    cmd += extra
    if path:
        cmd.append("LD_PRELOAD=" + path)
    start = time.perf_counter()
    proc = subprocess.run(cmd + list(argv), env=clean_env(None), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError("%s (LD_PRELOAD=%s) exited %d: %s" %
                           (argv, preload, proc.returncode,
                            proc.stderr.decode(errors="replace")))
    with open(out.name) as f:
        user, sys_s, maxrss = f.read().split()[-3:]
    os.unlink(out.name)
    return wall, float(user), float(sys_s), int(maxrss) / 1024.0, proc.stdout  # %M is KiB


def run_once(binary, workload, preload):
    wall, user, sys_s, peak, out = measure([binary, workload], preload)
    fields = out.decode().split()
    info = dict(f.split("=", 1) for f in fields[1:])
    return wall, peak, info, user + sys_s, sys_s


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
    ap.add_argument("--lib", action="append", default=[],
                    help="NAME=PATH: one more allocator column (e.g. an older alloy build)")
    ap.add_argument("--no-syscalls", action="store_true", help="skip the strace runs")
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
    for spec in args.lib:
        name, path = spec.split("=", 1)
        allocators[name] = shutil.copy(path, os.path.join(scratch, name + ".so"))
    workloads = args.workloads.split(",")

    keys = [(w, a) for w in workloads for a in allocators]
    times = {k: [] for k in keys}
    rss = {k: [] for k in keys}
    cpus = {k: [] for k in keys}
    syss = {k: [] for k in keys}
    after_free = {a: [] for a in allocators}
    checksums = {}
    names = list(allocators)
    for rep in range(args.reps):
        for w in workloads:
            # Rotate the order every repetition: nobody always runs first.
            order = names[rep % len(names):] + names[:rep % len(names)]
            for a in order:
                wall, peak, info, cpu, sys_s = run_once(args.bin, w, allocators[a])
                times[(w, a)].append(wall)
                cpus[(w, a)].append(cpu)
                syss[(w, a)].append(sys_s)
                rss[(w, a)].append(peak)
                if w == "frag" and "rss_after_free_mb" in info:
                    after_free[a].append(float(info["rss_after_free_mb"]))
                checksums.setdefault(w, {})[a] = info.get("checksum")
        print("repetition %d/%d done" % (rep + 1, args.reps), file=sys.stderr)
    calls = {}
    if not args.no_syscalls:
        for w, a in keys:
            calls[(w, a)] = count_syscalls([args.bin, w], allocators[a])

    bad = [(w, c) for w, c in checksums.items() if len(set(c.values())) != 1]
    for w, c in bad:
        print("CHECKSUM MISMATCH in %s: %s" % (w, c))

    med = lambda d, k: statistics.median(d[k])  # noqa: E731
    print("date: %s UTC" % time.strftime("%Y-%m-%d %H:%M", time.gmtime()))
    print("machine: %s, nproc=%d, %s" % (cpu_model(), os.cpu_count(), platform.platform()))
    print("median of %d interleaved runs; wall time s / system time s / madvise+mmap+munmap "
          "calls (one strace -f run) / peak RSS MiB" % args.reps)
    print()
    header = "| workload | " + " | ".join(names) + " |"
    print(header)
    print("|" + "---|" * (len(names) + 1))
    for w in workloads:
        cells = []
        for a in names:
            c = calls.get((w, a), {}).get("total", -1)
            cells.append("%.3f / %.3f / %s / %.0f" % (med(times, (w, a)), med(syss, (w, a)),
                                                     c if c >= 0 else "-", med(rss, (w, a))))
        print("| %s | %s |" % (w, " | ".join(cells)))
    if any(after_free.values()):
        cells = ["%.0f MiB" % statistics.median(after_free[a]) if after_free[a] else "-"
                 for a in names]
        print("| frag: RSS after freeing 90%% | %s |" % " | ".join(cells))

    if "alloy" in allocators:
        peers = [a for a in names if a != "alloy" and a in PEERS]
        print()
        print("alloy / best peer per column (time: the fastest peer; sys, calls, RSS: the "
              "lowest; < 1.00 = alloy better):")
        print()
        print("| workload | time | sys | calls | peak RSS |")
        print("|---|---|---|---|---|")
        best_ratios = []
        for w in workloads:
            cells = []
            for d in (times, syss, None, rss):
                if d is None:
                    if not calls:
                        cells.append("-")
                        continue
                    val = lambda a: calls[(w, a)]["total"]  # noqa: E731
                else:
                    val = lambda a, d=d: med(d, (w, a))  # noqa: E731
                best = min(val(p) for p in peers)
                mine = val("alloy")
                if best > 0:
                    cells.append("%.2f" % (mine / best))
                else:
                    cells.append("%s vs 0" % (("%.3f" % mine) if isinstance(mine, float) else mine))
                if d is times:
                    best_ratios.append(mine / best)
            print("| %s | %s |" % (w, " | ".join(cells)))
        geo_best = math.exp(sum(math.log(r) for r in best_ratios) / len(best_ratios))
        print("| **geometric mean (time)** | **%.2f** | | | |" % geo_best)

        print()
        print("alloy time / peer time per workload (< 1.00 = alloy faster):")
        print()
        print("| workload | " + " | ".join(peers) + " |")
        print("|" + "---|" * (len(peers) + 1))
        ratios = {p: [] for p in peers}
        for w in workloads:
            alloy_t = med(times, (w, "alloy"))
            cells = []
            for p in peers:
                r = alloy_t / med(times, (w, p))
                ratios[p].append(r)
                cells.append("%.2f" % r)
            print("| %s | %s |" % (w, " | ".join(cells)))
        geo = {p: math.exp(sum(math.log(r) for r in rs) / len(rs)) for p, rs in ratios.items()}
        print("| **geometric mean** | %s |" % " | ".join("**%.2f**" % geo[p] for p in peers))
        # CPU time (user + sys of the child) is less disturbed by other load
        # on a shared machine than wall time; shown as a cross-check.
        cpu_geo = {}
        for p in peers:
            logs = [math.log(med(cpus, (w, "alloy")) / max(med(cpus, (w, p)), 1e-6))
                    for w in workloads]
            cpu_geo[p] = math.exp(sum(logs) / len(logs))
        print("| geometric mean, CPU time | %s |" % " | ".join("%.2f" % cpu_geo[p] for p in peers))
        if "mimalloc" in allocators:
            worse = [w for w in workloads if med(rss, (w, "alloy")) > med(rss, (w, "mimalloc"))]
            print()
            print("workloads where alloy's peak RSS exceeds mimalloc's: %s" %
                  (", ".join(worse) if worse else "none"))
            if calls:
                many = ["%s (%.2fx)" % (w, calls[(w, "alloy")]["total"] /
                                        max(calls[(w, "mimalloc")]["total"], 1))
                        for w in workloads
                        if calls[(w, "alloy")]["total"] > 1.5 * calls[(w, "mimalloc")]["total"]]
                print("workloads where alloy makes over 1.5x mimalloc's memory syscalls: %s" %
                      (", ".join(many) if many else "none"))
        if "glibc" in allocators:
            slower = [w for w in workloads if med(times, (w, "alloy")) > med(times, (w, "glibc"))]
            print("workloads where alloy is slower than glibc: %s" %
                  (", ".join(slower) if slower else "none"))
    shutil.rmtree(scratch, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
