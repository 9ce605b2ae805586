#!/usr/bin/env python3
"""Real programs under each malloc: time, system time, memory syscalls, peak RSS.

Runs programs nobody here wrote (python3, sqlite3, g++, git, a shell script
that starts many processes) under glibc (the plain run) and, via LD_PRELOAD,
alloy (//adapters:liballoy_malloc.so), mimalloc, jemalloc and tcmalloc, and
prints per program and allocator:

  time   median wall time of --reps interleaved runs
  sys    median system time (the child and every process it waited for)
  calls  madvise + mmap + munmap calls (strace -f -c, one separate run: strace
         slows a program down, so it never runs during the timed runs), with
         the madvise count alone in brackets
  rss    median peak RSS of the biggest process of the run (GNU time's %M)

then alloy's ratios against the best peer in each column.

Build first:
  bazel build --config=opt //adapters:liballoy_malloc.so
Then:
  python3 bench/real/run.py                    # 5 repetitions
  python3 bench/real/run.py --reps 3 --programs git,sqlite3
  python3 bench/real/run.py --lib alloy_old=/tmp/old/liballoy_malloc.so   # extra columns
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "compare"))
import run as compare  # noqa: E402  (bench/compare/run.py: PEERS, count_syscalls)

PY_SCRIPT = r"""
d = {}
for i in range(300000):
    d["key-%d" % i] = [i, str(i), (i, i + 1)]
s = 0
for k, v in d.items():
    s += len(k) + v[0]
del d
print(s)
"""

SQL = """
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v REAL);
CREATE INDEX t_name ON t(name);
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000)
INSERT INTO t SELECT x, hex(randomblob(12)), x * 0.5 FROM c;
COMMIT;
SELECT count(*), sum(length(name)) FROM t;
"""

CXX_TU = r"""
#include <map>
#include <regex>
#include <string>
#include <vector>
std::map<std::string, std::vector<int>> build(const std::vector<std::string>& in) {
  std::map<std::string, std::vector<int>> out;
  std::regex word("[a-z]+([0-9]*)");
  for (const auto& s : in) {
    std::smatch m;
    if (std::regex_search(s, m, word)) out[m.str(0)].push_back(static_cast<int>(m.length(1)));
  }
  return out;
}
int main() { return static_cast<int>(build({"abc12", "de", "fgh345"}).size()); }
"""

SHELL_SCRIPT = "i=0; while [ $i -lt 1000 ]; do /bin/true; i=$((i+1)); done\n"


def setup(work):
    """Inputs made once, under glibc: the scripts, a TU, a small git repository."""
    with open(os.path.join(work, "dict.py"), "w") as f:
        f.write(PY_SCRIPT)
    with open(os.path.join(work, "insert.sql"), "w") as f:
        f.write(SQL)
    with open(os.path.join(work, "tu.cc"), "w") as f:
        f.write(CXX_TU)
    with open(os.path.join(work, "procs.sh"), "w") as f:
        f.write(SHELL_SCRIPT)
    repo = os.path.join(work, "repo")
    os.mkdir(repo)
    env = dict(os.environ, GIT_AUTHOR_NAME="a", GIT_AUTHOR_EMAIL="a@b", GIT_COMMITTER_NAME="a",
               GIT_COMMITTER_EMAIL="a@b")
    subprocess.run(["git", "init", "-q", repo], check=True, env=env)
    for c in range(40):
        for k in range(20):
            with open(os.path.join(repo, "f%02d.txt" % k), "a") as f:
                f.write("commit %d file %d\n" % (c, k) * (1 + (c * k) % 7))
        subprocess.run(["git", "-C", repo, "add", "-A"], check=True, env=env)
        subprocess.run(["git", "-C", repo, "commit", "-q", "-m", "c%d" % c], check=True, env=env)
    return {
        "python3": ["/usr/bin/python3", os.path.join(work, "dict.py")],
        "sqlite3": ["sh", "-c", "rm -f %s/t.db && sqlite3 %s/t.db < %s/insert.sql" %
                    (work, work, work)],
        "g++": ["g++", "-O1", "-c", os.path.join(work, "tu.cc"), "-o", os.path.join(work, "tu.o")],
        "git": ["git", "-C", repo, "log", "--stat"],
        "procs": ["sh", os.path.join(work, "procs.sh")],
    }


def run_timed(argv, preload):
    wall, _, sys_s, peak, _ = compare.measure(argv, preload)
    return wall, sys_s, peak


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--programs", default="python3,sqlite3,g++,git,procs")
    ap.add_argument("--allocators", default="glibc,jemalloc,tcmalloc,mimalloc,alloy")
    ap.add_argument("--alloy", default="bazel-out/k8-opt/bin/adapters/liballoy_malloc.so")
    ap.add_argument("--lib", action="append", default=[],
                    help="NAME=PATH: one more allocator column (e.g. an older alloy build)")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="alloy-real-")
    allocators = {}
    for name in args.allocators.split(","):
        if name == "alloy":
            if not os.path.exists(args.alloy):
                sys.exit("build first: bazel build --config=opt //adapters:liballoy_malloc.so")
            path = shutil.copy(args.alloy, os.path.join(work, "liballoy_malloc.so"))
        else:
            path = compare.PEERS[name]
        if path is not None and not os.path.exists(path):
            print("skipping %s: %s not found" % (name, path), file=sys.stderr)
            continue
        allocators[name] = path
    for spec in args.lib:
        name, path = spec.split("=", 1)
        allocators[name] = shutil.copy(path, os.path.join(work, name + ".so"))
    programs = setup(work)
    chosen = args.programs.split(",")

    names = list(allocators)
    data = {(p, a): [] for p in chosen for a in names}
    for rep in range(args.reps):
        for p in chosen:
            order = names[rep % len(names):] + names[:rep % len(names)]
            for a in order:
                data[(p, a)].append(run_timed(programs[p], allocators[a]))
        print("repetition %d/%d done" % (rep + 1, args.reps), file=sys.stderr)
    calls = {}
    for p in chosen:
        for a in names:
            calls[(p, a)] = compare.count_syscalls(programs[p], allocators[a])

    print("date: %s UTC" % time.strftime("%Y-%m-%d %H:%M", time.gmtime()))
    print("machine: %s, nproc=%d" % (compare.cpu_model(), os.cpu_count()))
    print("median of %d interleaved runs: wall time / system time / madvise+mmap+munmap "
          "calls (madvise) / peak RSS" % args.reps)
    print()
    print("| program | " + " | ".join(names) + " |")
    print("|" + "---|" * (len(names) + 1))
    med = {}
    for p in chosen:
        cells = []
        for a in names:
            rows = data[(p, a)]
            t = statistics.median(r[0] for r in rows)
            s = statistics.median(r[1] for r in rows)
            m = statistics.median(r[2] for r in rows)
            c = calls[(p, a)]
            med[(p, a)] = (t, s, c["total"], m)
            cells.append("%.3f s / %.3f s / %d (%d) / %.1f MiB" %
                         (t, s, c["total"], c.get("madvise", 0), m))
        print("| %s | %s |" % (p, " | ".join(cells)))
    if "alloy" in names and len(names) > 1:
        peers = [a for a in names if a != "alloy" and a in compare.PEERS]
        print()
        print("alloy / best peer (%s) per column: time, sys, calls, peak RSS" % ", ".join(peers))
        print()
        mi = "mimalloc" in names
        print("| program | time | sys | calls | peak RSS |%s" % (" calls / mimalloc's |" if mi else ""))
        print("|---|---|---|---|---|%s" % ("---|" if mi else ""))
        for p in chosen:
            a = med[(p, "alloy")]
            cells = []
            for i in range(4):
                best = min(med[(p, q)][i] for q in peers)
                cells.append("%.2f" % (a[i] / best) if best > 0 else ("%d vs 0" % a[i]))
            if mi:
                cells.append("%.2f" % (a[2] / max(med[(p, "mimalloc")][2], 1)))
            print("| %s | %s |" % (p, " | ".join(cells)))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
