#!/usr/bin/python3
"""Load benchmark: scikit-learn and payguard on the same data, same initial
centers, in one run; prints both times and the ratios (medians).

  /usr/bin/python3 bench/load/run.py [--build DIR] [--repeat N] [--quick]

Single fits: 1,000,000 x 4 and 100,000 x 16, k = 8, 200,000 x 32, k = 20,
float32 and float64;
scikit-learn's Lloyd and Elkan against payguard's Lloyd and Hamerly, each
side's best algorithm compared. Two-level job: 10,000 VMs x 1,440 samples x 4
features, k1 = 3, k2 = 5; scikit-learn is given its fastest arrangement (one
single-threaded fit per VM in two processes), the same first- and second-level
initial centers as payguard, and computes the same characteristic value.
k-means++ seeding alone (float32; 1M x 4 k=8 up to 100k x 64 k=64): time and
the potential reached, each side with its own random stream. Then payguard
alone streams 100,000 VMs x 1,440 samples (time, peak memory).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

# OpenBLAS picks its kernels from the CPU it detects; on this machine's virtual
# CPU ("Intel Xeon Processor") 0.3.21 falls back to Prescott (SSE3) kernels,
# and OPENBLAS_CORETYPE may also be set in the environment. To give
# scikit-learn its best, a short probe times its Lloyd step under the
# environment's setting and under the core types the CPU flags allow, and the
# fastest is used for the whole run (before numpy is loaded).
PROBE = """
import time, numpy as np
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_info
X = np.random.RandomState(0).normal(size=(300000, 4)).astype(np.float32)
ts = []
for _ in range(3):
    t = time.perf_counter()
    KMeans(8, init=X[:8].copy(), n_init=1, max_iter=20, tol=0).fit(X)
    ts.append(time.perf_counter() - t)
arch = [i.get("architecture") for i in threadpool_info() if i["internal_api"] == "openblas"]
print(min(ts), arch[0] if arch else "?")
"""


def pick_coretype():
    env = os.environ.get("OPENBLAS_CORETYPE")
    flags = open("/proc/cpuinfo").read()
    cands = [env]
    if "avx512f" in flags:
        cands.append("SkylakeX")
    if "avx2" in flags:
        cands.append("Haswell")
    res = []
    for c in dict.fromkeys(cands):
        e = dict(os.environ)
        e.pop("OPENBLAS_CORETYPE", None)
        if c:
            e["OPENBLAS_CORETYPE"] = c
        out = subprocess.run([sys.executable, "-c", PROBE], env=e, check=True,
                             capture_output=True, text=True).stdout.split()
        res.append((float(out[0]), c, out[1]))
    best = min(res, key=lambda r: r[0])
    os.environ.pop("OPENBLAS_CORETYPE", None)
    if best[1]:
        os.environ["OPENBLAS_CORETYPE"] = best[1]
    return env, res, best


CORETYPE_ENV, CORETYPE_PROBE, CORETYPE_BEST = pick_coretype()

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.cluster import kmeans_plusplus  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def blas_line():
    np.dot(np.ones((64, 64)), np.ones((64, 64)))
    libs = [f"{i['internal_api']} {i.get('version') or ''} ({i.get('architecture') or '?'}, "
            f"{i['num_threads']} threads) {i['filepath']}" for i in threadpool_info()]
    return "; ".join(libs)


def sk_fit(X, init, algo, repeat):
    ts, km = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        km = KMeans(n_clusters=init.shape[0], init=init, n_init=1, algorithm=algo, tol=1e-4,
                    max_iter=300).fit(X)
        ts.append(time.perf_counter() - t0)
    return median(ts), km.inertia_, km.n_iter_


def pg_fit(bench, tmp, X, init, algo, repeat, threads=2):
    xp, ip = os.path.join(tmp, "x.bin"), os.path.join(tmp, "init.bin")
    X.tofile(xp)
    init.astype(np.float64).tofile(ip)
    dt = "f32" if X.dtype == np.float32 else "f64"
    out = subprocess.run([bench, "fit", xp, ip, str(X.shape[0]), str(X.shape[1]),
                          str(init.shape[0]), dt, algo, str(threads), str(repeat)],
                         check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    return r["median"], r["inertia"], r["n_iter"]


def blobs(n, d, k, seed):
    rng = np.random.RandomState(seed)
    centers = rng.uniform(-10, 10, size=(k, d))
    lab = rng.randint(0, k, size=n)
    return centers[lab] + rng.normal(scale=2.5, size=(n, d))


def potential(X, c):
    """Sum over rows of the squared distance to the nearest of centers c (float64)."""
    c = c.astype(np.float64)
    tot = 0.0
    for i in range(0, X.shape[0], 20000):
        x = X[i:i + 20000].astype(np.float64)
        d2 = (x * x).sum(1)[:, None] - 2 * x @ c.T + (c * c).sum(1)[None]
        tot += float(np.maximum(d2.min(1), 0).sum())
    return tot


# ---- two-level job, scikit-learn side ----
_feat = None


def _sk_init(path, vms, samples):
    global _feat
    _feat = np.memmap(path, dtype=np.float32, mode="r", shape=(vms, samples, 4))
    threadpool_limits(1)


def _sk_vm(args):
    v, init = args
    X = np.asarray(_feat[v])  # float32, as payguard's first level
    km = KMeans(n_clusters=init.shape[0], init=init, n_init=1, algorithm="lloyd", tol=1e-4,
                max_iter=300).fit(X)
    share = np.bincount(km.labels_, minlength=init.shape[0]) / X.shape[0]
    c = km.cluster_centers_
    mean = share @ c
    peak = np.where((share >= 0.05)[:, None], c, 0.0).max(axis=0)
    peak = np.maximum(peak, 0.0)
    return 0.25 * mean + 0.75 * peak, km.inertia_


def two_level(bench, tmp, vms, samples, repeat):
    import multiprocessing as mp
    fpath = os.path.join(tmp, "features.bin")
    # The generated fleet's normalised features, written once by payguard's generator.
    subprocess.run([bench, "features", fpath, str(vms), str(samples)], check=True)
    ours = []
    for _ in range(repeat):
        out = subprocess.run([bench, "twolevel", fpath, str(vms), str(samples), "3", "5", "2",
                              tmp], check=True, capture_output=True, text=True).stdout
        ours.append(json.loads(out))
    init1 = np.fromfile(os.path.join(tmp, "init1.bin")).reshape(vms, 3, 4)
    init2 = np.fromfile(os.path.join(tmp, "init2.bin")).reshape(5, 4)
    ctx = mp.get_context("fork")
    times, inertia1, inertia2 = [], 0, 0
    with ctx.Pool(2, initializer=_sk_init, initargs=(fpath, vms, samples)) as pool:
        pool.map(_sk_vm, [(0, init1[0]), (1, init1[1])])  # warm the workers
        for _ in range(repeat):
            t0 = time.perf_counter()
            res = pool.map(_sk_vm, [(v, init1[v]) for v in range(vms)], chunksize=64)
            chars = np.array([r[0] for r in res])
            km2 = KMeans(n_clusters=5, init=init2, n_init=1, algorithm="lloyd").fit(chars)
            times.append(time.perf_counter() - t0)
            inertia1 = sum(r[1] for r in res)
            inertia2 = km2.inertia_
    return median([o["seconds"] for o in ours]), ours[-1], median(times), inertia1, inertia2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    ap.add_argument("--skip-stream", action="store_true")
    a = ap.parse_args()
    bench = os.path.join(a.build, "bench", "load", "bench_load")
    print(f"scikit-learn {sklearn.__version__}, numpy {np.__version__}")
    print(f"BLAS used by scikit-learn: {blas_line()}")
    print(f"OPENBLAS_CORETYPE in the environment: {CORETYPE_ENV or '(unset)'}; probe "
          + ", ".join(f"{c or 'as set'} -> {arch} {t * 1000:.0f} ms" for t, c, arch in CORETYPE_PROBE)
          + f"; scikit-learn runs with OPENBLAS_CORETYPE={CORETYPE_BEST[1] or '(as set)'}")
    print(f"CPU: {os.cpu_count()} logical CPUs, shared; times are medians of {a.repeat} runs\n")
    scale = 10 if a.quick else 1
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'data':<22}{'sklearn best':>16}{'payguard best':>18}{'ratio':>8}"
              f"{'inertia diff':>14}")
        for n, d, k in ((1_000_000 // scale, 4, 8), (100_000 // scale, 16, 8),
                        (200_000 // scale, 32, 20)):
            X64 = blobs(n, d, k, 0)
            init = kmeans_plusplus(X64, k, random_state=0)[0]
            for dt in (np.float32, np.float64):
                X = X64.astype(dt)
                sk = {alg: sk_fit(X, init.astype(dt), alg, a.repeat) for alg in ("lloyd", "elkan")}
                pg = {alg: pg_fit(bench, tmp, X, init, alg, a.repeat)
                      for alg in ("lloyd", "hamerly")}
                sb = min(sk, key=lambda k: sk[k][0])
                pb = min(pg, key=lambda k: pg[k][0])
                diff = (pg[pb][1] / sk[sb][1] - 1) * 100
                name = f"{n}x{d} k={k} {np.dtype(dt).name}"
                print(f"{name:<22}{sk[sb][0]:>9.3f}s {sb:<6}{pg[pb][0]:>9.3f}s {pb:<8}"
                      f"{sk[sb][0] / pg[pb][0]:>7.1f}x{diff:>+13.3f}%")
                print(f"{'':<22}  sklearn lloyd {sk['lloyd'][0]:.3f}s ({sk['lloyd'][2]} it), "
                      f"elkan {sk['elkan'][0]:.3f}s; payguard lloyd {pg['lloyd'][0]:.3f}s "
                      f"({pg['lloyd'][2]} it), hamerly {pg['hamerly'][0]:.3f}s")
        # k-means++ seeding alone, both sides single runs of their own seeding (different
        # random streams): time and the potential (sum of squared distances) reached.
        print(f"\n{'k-means++ seeding':<22}{'sklearn':>16}{'payguard':>18}{'ratio':>8}"
              f"{'potential diff':>16}")
        for n, d, k in ((1_000_000 // scale, 4, 8), (100_000 // scale, 16, 8),
                        (200_000 // scale, 32, 20), (100_000 // scale, 64, 64)):
            X = blobs(n, d, k, 0).astype(np.float32)
            ts, pots = [], []
            for r in range(a.repeat):
                t0 = time.perf_counter()
                c, _ = kmeans_plusplus(X, k, random_state=r)
                ts.append(time.perf_counter() - t0)
                pots.append(potential(X, c))
            xp = os.path.join(tmp, "x.bin")
            X.tofile(xp)
            out = subprocess.run([bench, "seed", xp, str(n), str(d), str(k), "f32", "2",
                                  str(a.repeat)], check=True, capture_output=True,
                                 text=True).stdout
            r = json.loads(out)
            sk_pot = median(pots)
            diff = f"{(r['potential'] / sk_pot - 1) * 100:+15.2f}%"
            name = f"{n}x{d} k={k} float32"
            print(f"{name:<22}{median(ts):>9.3f}s{'':<7}{r['median']:>9.3f}s{'':<9}"
                  f"{median(ts) / r['median']:>7.1f}x{diff}")
        vms = 10_000 // scale
        ours, o, theirs, i1, i2 = two_level(bench, tmp, vms, 1440, max(1, min(a.repeat, 3)))
        print(f"\ntwo-level job, {vms} VMs x 1440 samples x 4 features, k1=3, k2=5:")
        print(f"  scikit-learn (2 processes, 1 thread each): {theirs:.3f} s")
        print(f"  payguard (2 threads):                      {ours:.3f} s   ratio "
              f"{theirs / ours:.1f}x")
        print(f"  first-level inertia sum: payguard {o['inertia1']:.8g}, sklearn {i1:.8g} "
              f"({(o['inertia1'] / i1 - 1) * 100:+.4f}%); second level {o['inertia2']:.8g} vs "
              f"{i2:.8g} ({(o['inertia2'] / i2 - 1) * 100:+.4f}%)")
        if not a.skip_stream:
            out = subprocess.run([bench, "stream", str(100_000 // scale), "1440"], check=True,
                                 capture_output=True, text=True).stdout
            s = json.loads(out)
            print(f"\nstreaming {100_000 // scale} VMs x 1440 samples through the estimator: "
                  f"{s['seconds']:.1f} s (of which {s['generator_seconds']:.1f} s generating the "
                  f"data), peak memory {s['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
