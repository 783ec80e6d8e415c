#!/usr/bin/python3
"""The layers the build enforces (issue 16, item 5; docs/ARCHITECTURE.md "Layers").

Over a built tree (PG_BUILD_DIR) and its sources (PG_SOURCE_DIR) it checks:

  links     each layer library links only libraries of layers below it;
  probes    compiled with a layer library's own include directories, a
            header of every layer above it is not found (the build refuses a
            wrong include), and each of its own public headers compiles;
  includes  no source or private header under src/ includes a public or a
            shared private header of a layer above its own;
  symbols   no object file of a layer references a symbol defined in a layer
            above it (nm);
  cycles    no two files depend on each other through their symbols, other
            than the cycles named in layers-cycles-allow.txt (with a reason);
            a line there that no longer matches a cycle fails too;
  cmac      AES-CMAC is computed only by src/core/cmac.c.

Exit 1 with one line per finding; 0 when all hold.
"""
import glob
import os
import re
import subprocess
import sys
import tempfile

SRC = os.environ.get("PG_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD = os.environ.get("PG_BUILD_DIR") or sys.exit("PG_BUILD_DIR not set")
CC = os.environ.get("CC", "cc")
LAYERS = os.path.join(BUILD, "layers")
ALLOW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "layers-cycles-allow.txt")

# The folder of each layer library (the top, the CLI, is the payguard binary).
FOLDERS = {
    "pg_core": "src/core", "pg_events": "src/events", "pg_codec": "src/se/codec",
    "pg_link": "src/se/link", "pg_card": "src/se/card", "pg_converter": "src/se/converter",
    "pg_vse": "src/se/vse", "pg_seos": "src/se/seos", "pg_nfcswitch": "src/se/nfcswitch",
    "pg_image": "src/image", "pg_load": "src/load", "pg_pos": "src/pos",
    "pg_serve": "src/serve", "payguard": "src/cli",
}
# CMake targets whose objects belong to a layer library's folder.
TARGET_LIB = {"payguard-vse": "pg_vse"}

problems = []


def fail(msg):
    problems.append(msg)


def read_lines(path):
    with open(path) as f:
        return [l.strip() for l in f if l.strip()]


order_file = os.path.join(LAYERS, "order")
if not os.path.exists(order_file):
    print("layers: %s missing: the build defines no layer libraries "
          "(src/CMakeLists.txt, pg_layer_headers)" % order_file)
    sys.exit(1)
order = read_lines(order_file)[0].split(";") + ["payguard"]
rank = {lib: i for i, lib in enumerate(order)}
for lib in FOLDERS:
    if lib not in rank:
        fail("links: library %s of %s is not a layer of the build" % (lib, FOLDERS[lib]))
for lib in order:
    if lib not in FOLDERS:
        fail("layers.py: layer library %s has no folder in FOLDERS" % lib)


def lib_of_path(rel):
    """The layer library whose folder holds rel (a path relative to SRC)."""
    best = None
    for lib, d in FOLDERS.items():
        if rel.startswith(d + "/") and (best is None or len(d) > len(FOLDERS[best])):
            best = lib
    return best


# ---- links ----
for lib in order:
    path = os.path.join(LAYERS, lib + ".links")
    for dep in read_lines(path) if os.path.exists(path) else []:
        if dep in rank and rank[dep] >= rank[lib]:
            fail("links: %s (layer %d) links %s (layer %d), not below it"
                 % (lib, rank[lib], dep, rank[dep]))

# ---- the headers each layer owns: BUILD/layers/LIB/<dir>/<header> ----
owned = {}  # include spelling ("payguard/x.h", "link/atr.h") -> lib
for lib in order:
    base = os.path.join(LAYERS, lib)
    for h in glob.glob(os.path.join(base, "*", "*.h")):
        owned[os.path.relpath(h, base)] = lib
# a folder's private headers by their bare name (the includes scan)
private = {}
for lib, d in FOLDERS.items():
    for h in glob.glob(os.path.join(SRC, d, "*.h")):
        private.setdefault(os.path.basename(h), lib)
pub = [h for h in glob.glob(os.path.join(SRC, "include/payguard/*.h"))]
for h in pub:
    if "payguard/" + os.path.basename(h) not in owned:
        fail("probes: include/payguard/%s belongs to no layer" % os.path.basename(h))

# ---- probes: what a layer library's own sources can include ----
def compiles(lib, header, tmp):
    incs = read_lines(os.path.join(LAYERS, lib + ".includes"))
    probe = os.path.join(tmp, "probe.c")
    with open(probe, "w") as f:
        f.write('#include "%s"\nint pg_layer_probe;\n' % header)
    r = subprocess.run([CC, "-std=gnu17", "-D_GNU_SOURCE", "-fsyntax-only"]
                       + ["-I" + i for i in incs] + [probe],
                       capture_output=True, text=True, cwd=tmp)
    return r.returncode == 0, r.stderr


with tempfile.TemporaryDirectory() as tmp:
    nprobe = 0
    for lib in order[:-1]:
        mine = sorted(h for h, l in owned.items() if l == lib and h.startswith("payguard/"))
        for h in mine:
            ok, err = compiles(lib, h, tmp)
            nprobe += 1
            if not ok:
                fail("probes: %s cannot compile its own %s:\n%s" % (lib, h, err[:600]))
        above = sorted(h for h, l in owned.items() if rank[l] > rank[lib])
        for h in above:
            ok, err = compiles(lib, h, tmp)
            nprobe += 1
            if ok:
                fail("probes: %s's sources can include %s of %s, a layer above"
                     % (lib, h, owned[h]))
            elif "No such file" not in err and "not found" not in err:
                fail("probes: including %s in %s failed, but not as 'not found':\n%s"
                     % (h, lib, err[:600]))
    if nprobe < 100:
        fail("probes: only %d probes compiled; expected every layer's headers" % nprobe)

# ---- includes: the sources under src/ ----
INC = re.compile(r'^\s*#\s*include\s*(<|")([^>"]+)[>"]')
for path in sorted(glob.glob(os.path.join(SRC, "src/**/*.[ch]"), recursive=True)):
    rel = os.path.relpath(path, SRC)
    lib = lib_of_path(rel)
    if lib is None:
        continue
    with open(path, errors="replace") as f:
        for n, line in enumerate(f, 1):
            m = INC.match(line)
            if not m:
                continue
            inc = m.group(2)
            target = os.path.normpath(os.path.join(os.path.dirname(rel), inc))
            if os.path.exists(os.path.join(SRC, target)):
                hl = lib_of_path(target)  # beside it, or a relative path ("../x/y.h")
            elif inc in owned:
                hl = owned[inc]
            elif m.group(1) == '"' and "/" not in inc:
                hl = private.get(inc)  # another folder's private header
            else:
                hl = None
            if hl and rank[hl] > rank[lib]:
                fail("includes: %s:%d includes %s of %s, a layer above %s"
                     % (rel, n, inc, hl, lib))

# ---- symbols and cycles: nm over the objects of the layer libraries ----
defs, undefs = {}, {}
objects = glob.glob(os.path.join(BUILD, "src", "**", "CMakeFiles", "*.dir", "**", "*.o"),
                    recursive=True)
for o in objects:
    m = re.search(r"/CMakeFiles/([^/]+)\.dir/(.*)\.o$", o)
    tgt = TARGET_LIB.get(m.group(1), m.group(1))
    if tgt not in rank:
        continue
    # the object's source: the target's folder + the path under X.dir
    srcdir = os.path.relpath(o[: o.index("/CMakeFiles/")], BUILD)
    src = os.path.normpath(os.path.join(srcdir, m.group(2)))
    if not src.startswith("src/") or not os.path.exists(os.path.join(SRC, src)):
        continue  # generated (www_files.c), or left over from a deleted source
    out = subprocess.run(["nm", "-P", o], capture_output=True, text=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) < 2:
            continue
        if f[1] == "U":
            undefs.setdefault(src, set()).add(f[0])
        elif f[1] in "TDBRCVW":
            defs.setdefault(f[0], set()).add(src)
if len(undefs) < 100:
    fail("symbols: only %d objects found under %s/src: build first" % (len(undefs), BUILD))
edges = {}
for src, us in undefs.items():
    for sym in us:
        for d in defs.get(sym, ()):
            if d == src:
                continue
            edges.setdefault(src, {}).setdefault(d, set()).add(sym)
            ls, ld = lib_of_path(src), lib_of_path(d)
            if ls and ld and rank[ld] > rank[ls]:
                fail("symbols: %s (%s) uses %s of %s (%s), a layer above"
                     % (src, ls, sym, d, ld))

# Tarjan's strongly connected components over the file graph.
index, low, stack, on, sccs = {}, {}, [], set(), []
sys.setrecursionlimit(10000)


def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on.add(v)
    for w in edges.get(v, {}):
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(frozenset(comp))


for v in sorted(set(undefs) | set(edges)):
    if v not in index:
        visit(v)
allowed = {}
for line in read_lines(ALLOW):
    if line.startswith("#"):
        continue
    files, _, why = line.partition("#")
    if not why.strip():
        fail("cycles: %s: a line without a reason: %s" % (os.path.basename(ALLOW), line))
    allowed[frozenset(files.split())] = line
for comp in sccs:
    if comp in allowed:
        continue
    fail("cycles: these files depend on each other: %s" % " ".join(sorted(comp)))
    for a in sorted(comp):
        for b in sorted(edges.get(a, {})):
            if b in comp:
                fail("    %s -> %s: %s" % (a, b, ", ".join(sorted(edges[a][b])[:6])))
for key, line in allowed.items():
    if key not in sccs:
        fail("cycles: stale line in %s (no such cycle now): %s"
             % (os.path.basename(ALLOW), line))

# ---- one AES-CMAC ----
CMAC = re.compile(r'"CMAC"|\bCMAC_(Init|Update|Final|CTX_new)\b|OSSL_MAC_NAME_CMAC')
for path in glob.glob(os.path.join(SRC, "src/**/*.c"), recursive=True):
    rel = os.path.relpath(path, SRC)
    if rel == "src/core/cmac.c":
        continue
    with open(path, errors="replace") as f:
        for n, line in enumerate(f, 1):
            if CMAC.search(line):
                fail("cmac: %s:%d computes AES-CMAC itself; use payguard/cmac.h" % (rel, n))

for p in problems:
    print(p)
print("layers: %d libraries in order %s; %d files, %d cycles allowed; %d problem(s)"
      % (len(order), " < ".join(order), len(undefs), len(allowed), len(problems)))
sys.exit(1 if problems else 0)
