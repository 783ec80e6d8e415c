#!/usr/bin/python3
"""`payguard load kmeans` reads NumPy .npy matrices written by numpy itself
(issue 18 item 3): float64 and float32, format 1.0, 2.0 and 3.0, with the same
result as the same matrix written as CSV with every digit (repr), which also
checks the CSV number parser end to end (an exactly rounded parse gives the
same bits as the .npy). Fortran order, integer dtypes, 1-D and 3-D arrays, a
truncated file and a NaN are refused with a message and a non-zero exit.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from numpy.lib import format as npf

PAYGUARD = os.environ.get("PAYGUARD", "payguard")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def kmeans(data, init, *extra):
    r = subprocess.run([PAYGUARD, "load", "kmeans", "--data", data, "--init", init,
                        "--json", *extra], capture_output=True, text=True)
    return r


def main():
    rng = np.random.default_rng(7)
    centers = rng.uniform(-50, 50, size=(4, 5))
    x = np.concatenate([c + rng.normal(0, 3, size=(500, 5)) for c in centers])
    x[0, 0] = 4.9406564584124654e-324  # a subnormal survives both routes
    x[1, 1] = 1.2345678901234567e-300
    init = x[[0, 600, 1100, 1700]]
    with tempfile.TemporaryDirectory() as td:
        p = lambda n: os.path.join(td, n)
        with open(p("x.csv"), "w") as f:
            f.write("a,b,c,d,e\n")
            for row in x:
                f.write(",".join(repr(float(v)) for v in row) + "\n")
        with open(p("init.csv"), "w") as f:
            for row in init:
                f.write(",".join(repr(float(v)) for v in row) + "\n")
        ref = kmeans(p("x.csv"), p("init.csv"))
        check(ref.returncode == 0, "CSV route runs: " + ref.stderr.strip())
        ref = json.loads(ref.stdout)
        for ver in [(1, 0), (2, 0), (3, 0)]:
            with open(p("x.npy"), "wb") as f:
                npf.write_array(f, x, version=ver)
            np.save(p("init.npy"), init)
            r = kmeans(p("x.npy"), p("init.npy"))
            check(r.returncode == 0, f".npy {ver} float64 runs: " + r.stderr.strip())
            if r.returncode == 0:
                o = json.loads(r.stdout)
                check(o["labels"] == ref["labels"] and o["centers"] == ref["centers"]
                      and o["inertia"] == ref["inertia"] and o["n"] == 2000 and o["d"] == 5,
                      f".npy {ver} float64: the same labels, centers, inertia as the CSV")
        # float32: the values are the float32 ones; --float32 on the CSV of the
        # float32 values gives the same fit.
        x32 = x.astype("<f4")
        np.save(p("x32.npy"), x32)
        with open(p("x32.csv"), "w") as f:
            for row in x32:
                f.write(",".join(repr(float(v)) for v in row) + "\n")
        a = kmeans(p("x32.npy"), p("init.npy"), "--float32")
        b = kmeans(p("x32.csv"), p("init.npy"), "--float32")
        check(a.returncode == 0 and b.returncode == 0 and
              json.loads(a.stdout)["labels"] == json.loads(b.stdout)["labels"] and
              json.loads(a.stdout)["inertia"] == json.loads(b.stdout)["inertia"],
              "float32 .npy equals its CSV")
        # Refused, with a message naming the reason.
        bad = {
            "fortran.npy": (np.asfortranarray(x), "Fortran order"),
            "int.npy": (np.ones((3, 2), dtype="<i8"), "dtype '<i8'"),
            "big.npy": (np.ones((3, 2), dtype=">f8"), "dtype '>f8'"),
            "one.npy": (np.ones(3), "1 dimensions"),
            "three.npy": (np.ones((2, 2, 2)), "3 dimensions"),
            "nan.npy": (np.array([[1.0, np.nan]]), "not finite"),
        }
        for name, (arr, msg) in bad.items():
            np.save(p(name), arr)
            r = kmeans(p(name), p("init.npy"))
            check(r.returncode != 0 and msg in r.stderr and "Sanitizer" not in r.stderr,
                  f"{name} refused: {r.stderr.strip()[:120]}")
        raw = open(p("x.npy"), "rb").read()
        open(p("trunc.npy"), "wb").write(raw[:-5])
        r = kmeans(p("trunc.npy"), p("init.npy"))
        check(r.returncode != 0 and "shape (2000, 5) of float64 needs 80000" in r.stderr,
              "truncated .npy refused: " + r.stderr.strip()[:120])
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)


if __name__ == "__main__":
    main()
