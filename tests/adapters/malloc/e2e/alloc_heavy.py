# An allocation-heavy Python workload for the malloc adapter's end-to-end
# test. Run with PYTHONMALLOC=malloc so every object goes through malloc.
# Prints deterministic digests; the test compares them with and without
# LD_PRELOAD=liballoy_malloc.so.
import hashlib
import json
import random
import zlib

rng = random.Random(12345)
out = []

# Many small objects: dicts of lists of strings, built and dropped in waves.
for wave in range(6):
    d = {}
    for i in range(20000):
        key = "k%d_%d" % (wave, rng.randrange(100000))
        d.setdefault(key, []).append(str(i) * (i % 7 + 1))
    total = sum(len(v) for v in d.values())
    longest = max(len(s) for v in d.values() for s in v)
    out.append(("wave", wave, len(d), total, longest))
    del d

# Growing and shrinking buffers (realloc-heavy).
buf = bytearray()
for i in range(30000):
    buf += bytes([i % 251]) * (i % 50)
    if i % 1000 == 999:
        del buf[: len(buf) // 3]
out.append(("buf", len(buf), zlib.crc32(bytes(buf))))

# Big integers.
f = 1
for i in range(1, 1500):
    f *= i
out.append(("fact", len(str(f)), hashlib.sha256(str(f).encode()).hexdigest()[:16]))

# JSON round trips of nested structures.
doc = [{"id": i, "tags": ["t%d" % (j % 13) for j in range(i % 20)],
        "nested": {"x": [i] * (i % 9), "s": "v" * (i % 40)}} for i in range(8000)]
text = json.dumps(doc, sort_keys=True)
back = json.loads(text)
out.append(("json", len(text), back[7777]["nested"]["s"], hashlib.md5(text.encode()).hexdigest()))

# Reference cycles collected by the garbage collector.
class Node:
    def __init__(self, v):
        self.v = v
        self.peers = []
for round_ in range(20):
    nodes = [Node(i) for i in range(3000)]
    for i, n in enumerate(nodes):
        n.peers.append(nodes[(i * 7 + 1) % len(nodes)])
        n.peers.append(nodes[(i * 13 + 5) % len(nodes)])
    del nodes
import gc
out.append(("gc", gc.collect() >= 0))

# Sorting large lists of tuples and strings.
items = [(rng.random(), "s%08d" % rng.randrange(10**8)) for _ in range(60000)]
items.sort()
out.append(("sort", items[0][1], items[-1][1], len(set(s for _, s in items))))

for row in out:
    print(*row)
