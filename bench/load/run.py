#!/usr/bin/python3
"""Load benchmark: scikit-learn (and pandas) and payguard on the same data,
same initial centers, in one run; prints both times and the ratios (medians)
and writes everything to bench/results/load-DATE.json.

  /usr/bin/python3 bench/load/run.py [--build DIR] [--repeat N] [--quick]
                                     [--only ingest,e2e,fit,seed,twolevel,stream]

Each case runs the peer and payguard interleaved (peer, payguard, peer, ...)
over --repeat rounds (at least 5), so a change in the machine's load hits both
sides alike; the load average is printed and stored with every section.

Ingest: MB/s per core (bytes over the CPU seconds of the read alone, taken
inside each process on both sides, steadier than wall time on a shared
machine; wall MB/s beside it) of payguard's readers (`bench_load ingest`, one
thread) beside pandas.read_csv (its fastest set-up, PANDAS_SETUP below;
default and round_trip float precision) on the same files: a Bitbrains
GWA-T-12 folder (100 VMs x 8,640 rows), our plain CSV (200 VMs x 8,640 rows)
and a numeric matrix CSV (4,000,000 x 4, ~150 MB). End to end: `payguard load
kmeans` on a 1,000,000 x 4 matrix as CSV and as .npy (the whole process: read, fit, print) beside
scikit-learn's fit alone (best of Lloyd and Elkan, same initial centers, data
already in memory).

Single fits, float32 and float64, over issue 18's grid (n 100k-2M, d 2-64,
k 4-64): 2,000,000 x 2, k = 4; 1,000,000 x 4, k = 8; 500,000 x 8, k = 16;
100,000 x 16, k = 8; 200,000 x 32, k = 20; 100,000 x 64, k = 64; and with
very unequal cluster sizes (weights 1, 1/4, 1/9, ...) 500,000 x 4, k = 8
and 200,000 x 8, k = 16. scikit-learn's Lloyd and Elkan against payguard's
Lloyd and Hamerly, each side's best algorithm compared; the inertia of
payguard's result is compared with that of scikit-learn's labels and centers
recomputed in float64 (scikit-learn sums a float32 inertia in float32, which
is off by up to about 0.01 % at 2M points; its own figure is stored too) and
must agree within 0.01 % (the run says MISMATCH and exits 1 otherwise). Two-level job: 10,000 VMs x 1,440 samples x 4
features, k1 = 3, k2 = 5; scikit-learn is given its fastest arrangement (one
single-threaded fit per VM in two processes), the same first- and second-level
initial centers as payguard, and computes the same characteristic value.
k-means++ seeding alone (float32; 1M x 4 k=8 up to 100k x 64 k=64): time and
the potential reached, each side with its own random stream. Then payguard
alone streams 100,000 VMs x 1,440 samples (time, peak memory).
"""
import argparse
import datetime
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
FAILED = []  # sections whose results disagree with the peer's
ROOT = os.path.dirname(os.path.dirname(HERE))


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def loadavg():
    return [round(x, 2) for x in os.getloadavg()]


def say_load(what):
    la = loadavg()
    print(f"[load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} {what}]")
    return la


def blas_line():
    np.dot(np.ones((64, 64)), np.ones((64, 64)))
    libs = [f"{i['internal_api']} {i.get('version') or ''} ({i.get('architecture') or '?'}, "
            f"{i['num_threads']} threads) {i['filepath']}" for i in threadpool_info()]
    return "; ".join(libs)


def sk_fit1(X, init, algo, keep=None):
    t0 = time.perf_counter()
    km = KMeans(n_clusters=init.shape[0], init=init, n_init=1, algorithm=algo, tol=1e-4,
                max_iter=300).fit(X)
    t = time.perf_counter() - t0
    if keep is not None:
        keep[algo] = km
    return t, km.inertia_, km.n_iter_


def exact_inertia(X, km):
    """Inertia of a fitted model's labels and centers, summed in float64."""
    c = km.cluster_centers_.astype(np.float64)
    tot = 0.0
    for i in range(0, X.shape[0], 200000):
        x = X[i:i + 200000].astype(np.float64)
        tot += float(((x - c[km.labels_[i:i + 200000]]) ** 2).sum())
    return tot


def pg_fit1(bench, xp, ip, X, k, algo, threads=2):
    dt = "f32" if X.dtype == np.float32 else "f64"
    out = subprocess.run([bench, "fit", xp, ip, str(X.shape[0]), str(X.shape[1]),
                          str(k), dt, algo, str(threads), "1"],
                         check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    return r["median"], r["inertia"], r["n_iter"]


def fit_case(bench, tmp, X, init, repeat):
    """Both sides' algorithms, interleaved round by round; medians per algorithm."""
    xp, ip = os.path.join(tmp, "x.bin"), os.path.join(tmp, "init.bin")
    X.tofile(xp)
    init.astype(np.float64).tofile(ip)
    sk = {a: [] for a in ("lloyd", "elkan")}
    pg = {a: [] for a in ("lloyd", "hamerly")}
    models = {}
    for _ in range(repeat):
        for a in ("lloyd", "elkan"):
            sk[a].append(sk_fit1(X, init.astype(X.dtype), a, models))
        for a in ("lloyd", "hamerly"):
            pg[a].append(pg_fit1(bench, xp, ip, X, init.shape[0], a))
    med = lambda runs: (median([r[0] for r in runs]), runs[-1][1], runs[-1][2])
    exact = {a: exact_inertia(X, km) for a, km in models.items()}
    return ({a: med(v) + (exact[a],) for a, v in sk.items()},
            {a: med(v) for a, v in pg.items()})


FIT_SHAPES = (  # n, d, k, cluster sizes
    (2_000_000, 2, 4, "even"), (1_000_000, 4, 8, "even"), (500_000, 8, 16, "even"),
    (100_000, 16, 8, "even"), (200_000, 32, 20, "even"), (100_000, 64, 64, "even"),
    (500_000, 4, 8, "uneven"), (200_000, 8, 16, "uneven"))


def blobs(n, d, k, seed, sizes="even"):
    """n points around k random centers; "uneven": cluster i gets a share
    proportional to 1 / (i + 1)^2 (at k = 16 the largest is 100 times the
    smallest)."""
    rng = np.random.RandomState(seed)
    centers = rng.uniform(-10, 10, size=(k, d))
    if sizes == "uneven":
        w = 1.0 / np.arange(1, k + 1) ** 2
        lab = rng.choice(k, size=n, p=w / w.sum())
    else:
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

    def ours_once():
        out = subprocess.run([bench, "twolevel", fpath, str(vms), str(samples), "3", "5", "2",
                              tmp], check=True, capture_output=True, text=True).stdout
        return json.loads(out)

    ours_once()  # writes the initial centers scikit-learn is given; not counted
    init1 = np.fromfile(os.path.join(tmp, "init1.bin")).reshape(vms, 3, 4)
    init2 = np.fromfile(os.path.join(tmp, "init2.bin")).reshape(5, 4)
    ctx = mp.get_context("fork")
    times, ours, inertia1, inertia2 = [], [], 0, 0
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
            ours.append(ours_once())
    return median([o["seconds"] for o in ours]), ours[-1], median(times), inertia1, inertia2


# ---- ingest: payguard's readers beside pandas.read_csv ----
BB_HEADER = ("Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage [MHZ];\t"
             "CPU usage [%];\tMemory capacity provisioned [KB];\tMemory usage [KB];\t"
             "Disk read throughput [KB/s];\tDisk write throughput [KB/s];\t"
             "Network received throughput [KB/s];\tNetwork transmitted throughput [KB/s]\n")


def write_ingest_data(tmp, scale):
    """A Bitbrains folder, our plain CSV and a matrix CSV (+ .npy), in the published
    number formats (Bitbrains: 6 decimals as in fastStorage; ours: %.6g as
    `payguard load export` writes; the matrix: float32 values, %.7g), and a
    larger matrix CSV for the ingest rounds alone (4,000,000 x 4, ~150 MB: a
    round of the 37 MB one took a tenth of a second, too short for a steady
    median on shared cores)."""
    rng = np.random.default_rng(1)
    bb = os.path.join(tmp, "bitbrains")
    os.makedirs(bb, exist_ok=True)
    n = 8640
    for vm in range(1, 100 // scale + 1):
        ts = 1372629804 + 300 * np.arange(n)
        cap = 5851.99912
        use = rng.uniform(0, cap, n)
        mem = rng.uniform(0, 8388608, n)
        io = rng.exponential(100, (n, 4))
        with open(os.path.join(bb, f"{vm}.csv"), "w") as f:
            f.write(BB_HEADER)
            f.write("".join(
                "%d;\t2;\t%.5f;\t%.6f;\t%.6f;\t8388608;\t%.6f;\t%.6f;\t%.6f;\t%.6f;\t%.6f\n"
                % (ts[i], cap, use[i], 100 * use[i] / cap, mem[i], *io[i]) for i in range(n)))
    plain = os.path.join(tmp, "plain.csv")
    with open(plain, "w") as f:
        f.write("vm,timestamp_ms,cpu_pct,mem_pct,disk_read_kbps,disk_write_kbps,net_rx_kbps,"
                "net_tx_kbps\n")
        for vm in range(200 // scale):
            a = rng.uniform(0, 100, (n, 2))
            b = rng.exponential(500, (n, 4))
            ts = 1372629804000 + 300000 * np.arange(n)
            f.write("".join("vm-%04d,%d,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g\n"
                            % (vm, ts[i], *a[i], *b[i]) for i in range(n)))
    X = blobs(1_000_000 // scale, 4, 8, 0).astype(np.float32)
    mcsv, mnpy = os.path.join(tmp, "m.csv"), os.path.join(tmp, "m.npy")
    np.savetxt(mcsv, X, delimiter=",", fmt="%.7g")
    np.save(mnpy, X)
    big = os.path.join(tmp, "m_ingest.csv")
    np.savetxt(big, blobs(4_000_000 // scale, 4, 8, 1).astype(np.float32), delimiter=",",
               fmt="%.7g")
    return bb, plain, mcsv, mnpy, big


# pandas' fastest set-up here (measured with pandas 1.5.3): the C engine, the
# numeric columns' dtypes given (float64; the timestamp int64), the VM name
# column inferred (giving it str was slower), low_memory left on (off was
# slower on the matrix). The default float_precision ("high", not always
# correctly rounded) is the fast one; "round_trip" rounds correctly as payguard
# does and is timed beside it for the matrix.
PLAIN_DTYPES = {"timestamp_ms": np.int64, "cpu_pct": np.float64, "mem_pct": np.float64,
                "disk_read_kbps": np.float64, "disk_write_kbps": np.float64,
                "net_rx_kbps": np.float64, "net_tx_kbps": np.float64}
PANDAS_SETUP = ("read_csv(engine='c'); Bitbrains: sep=';', skipinitialspace=True, "
                "dtype=float64; plain: dtype float64 (timestamp int64), vm inferred; matrix: "
                "header=None, dtype=float64, float_precision default ('high') and 'round_trip'")


def pandas_read(kind, path):
    """CPU and wall seconds of pandas.read_csv over the source, and rows read."""
    import pandas as pd
    c0, t0 = time.process_time(), time.perf_counter()
    rows = 0
    if kind == "bitbrains":
        for name in sorted(os.listdir(path)):
            rows += len(pd.read_csv(os.path.join(path, name), sep=";", skipinitialspace=True,
                                    engine="c", dtype=np.float64))
    elif kind == "plain":
        rows = len(pd.read_csv(path, engine="c", dtype=PLAIN_DTYPES))
    elif kind == "matrix":
        rows = len(pd.read_csv(path, header=None, engine="c", dtype=np.float64))
    else:  # matrix with correctly rounded floats, as payguard's parser gives
        rows = len(pd.read_csv(path, header=None, engine="c", dtype=np.float64,
                               float_precision="round_trip"))
    return time.process_time() - c0, time.perf_counter() - t0, rows


def ingest(bench, tmp, scale, repeat):
    bb, plain, _, _, big = write_ingest_data(tmp, scale)
    cases = [("bitbrains", bb, f"bitbrains:{bb}"), ("plain", plain, f"csv:{plain}"),
             ("matrix", big, f"matrix:{big}")]
    out = {}
    print(f"\npandas: {PANDAS_SETUP}")
    print("MB per CPU second of the read alone, measured inside each process (payguard: "
          "bench_load ingest; pandas: process_time around read_csv); rounds interleaved")
    print(f"\n{'ingest (MB/s per core)':<26}{'pandas':>10}{'pandas rt':>11}{'payguard':>10}"
          f"{'ratio':>8}   wall MB/s pandas / payguard   load avg")
    for name, path, spec in cases:
        size = (sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
                if os.path.isdir(path) else os.path.getsize(path))
        pd_runs, rt_runs, pg_runs = [], [], []
        for _ in range(repeat):
            pd_runs.append(pandas_read(name, path))
            if name == "matrix":
                rt_runs.append(pandas_read("matrix_rt", path))
            r = json.loads(subprocess.run([bench, "ingest", spec, "1"], check=True,
                                          capture_output=True, text=True).stdout)
            pg_runs.append(r)
        la = loadavg()
        mb = size / 1e6
        pd_cpu = median([r[0] for r in pd_runs])
        pd_wall = median([r[1] for r in pd_runs])
        pg_cpu = median([r["cpu_seconds"] for r in pg_runs])
        pg_wall = median([r["seconds"] for r in pg_runs])
        rt = f"{mb / median([r[0] for r in rt_runs]):>11.0f}" if rt_runs else f"{'':>11}"
        print(f"{name + f' ({mb:.0f} MB)':<26}{mb / pd_cpu:>10.0f}{rt}{mb / pg_cpu:>10.0f}"
              f"{pd_cpu / pg_cpu:>7.1f}x   {f'{mb / pd_wall:.0f} / {mb / pg_wall:.0f}':<30}"
              f"{la[0]:.2f}")
        out[name] = {
            "bytes": size, "pandas_mb_per_cpu_s": mb / pd_cpu, "pandas_mb_per_s": mb / pd_wall,
            "payguard_mb_per_cpu_s": mb / pg_cpu, "payguard_mb_per_s": mb / pg_wall,
            "ratio_per_core": pd_cpu / pg_cpu,
            "pandas_rows": pd_runs[-1][2], "payguard_items": pg_runs[-1]["items"],
            "pandas_cpu_s": [r[0] for r in pd_runs],
            "payguard_cpu_s": [r["cpu_seconds"] for r in pg_runs], "loadavg_after": la}
        if rt_runs:
            out[name]["pandas_round_trip_mb_per_cpu_s"] = mb / median([r[0] for r in rt_runs])
    return out


def end_to_end(payguard, tmp, scale, repeat):
    """`payguard load kmeans` (read + fit + print, the whole process) beside
    scikit-learn's fit alone on data already in memory."""
    _, _, mcsv, mnpy = (os.path.join(tmp, "bitbrains"), None, os.path.join(tmp, "m.csv"),
                        os.path.join(tmp, "m.npy"))
    X = np.load(mnpy)
    init = kmeans_plusplus(X.astype(np.float64), 8, random_state=0)[0]
    icsv = os.path.join(tmp, "init.csv")
    with open(icsv, "w") as f:
        for row in init:
            f.write(",".join(repr(float(v)) for v in row) + "\n")
    sk = {"lloyd": [], "elkan": []}
    ours = {"csv": [], "npy": []}
    inertia = {}
    for _ in range(repeat):
        for a in sk:
            t, i, _ = sk_fit1(X, init.astype(np.float32), a)
            sk[a].append(t)
            inertia["sklearn"] = i
        for kind, path in (("csv", mcsv), ("npy", mnpy)):
            t0 = time.perf_counter()
            r = subprocess.run([payguard, "load", "kmeans", "--data", path, "--init", icsv,
                                "--float32", "--threads", "2"], check=True,
                               capture_output=True, text=True)
            ours[kind].append(time.perf_counter() - t0)
            inertia["payguard"] = float(r.stdout.split("inertia ")[1].split()[0])
    skb = min(sk, key=lambda a: median(sk[a]))
    skt = median(sk[skb])
    print(f"\nend to end, {X.shape[0]} x 4 float32, k = 8 (payguard load kmeans --float32, "
          f"whole process) vs scikit-learn's fit alone ({skb}):")
    res = {"n": X.shape[0], "d": 4, "k": 8, "sklearn_fit_s": skt, "sklearn_algorithm": skb,
           "sklearn_fit_runs": sk[skb],
           "inertia_diff_pct": (inertia["payguard"] / inertia["sklearn"] - 1) * 100}
    for kind in ours:
        t = median(ours[kind])
        print(f"  from .{kind}: {t:.3f} s vs {skt:.3f} s: {skt / t:.1f}x")
        res[f"payguard_{kind}_s"] = t
        res[f"payguard_{kind}_runs"] = ours[kind]
        res[f"ratio_{kind}"] = skt / t
    print(f"  inertia: payguard {inertia['payguard']:.10g}, scikit-learn "
          f"{inertia['sklearn']:.10g} ({res['inertia_diff_pct']:+.4f}%)")
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    ap.add_argument("--only", default="ingest,e2e,fit,seed,twolevel,stream",
                    help="comma-separated sections")
    ap.add_argument("--skip-stream", action="store_true")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"),
                    help="folder for load-DATE.json ('' to write none)")
    a = ap.parse_args()
    if a.repeat < 5 and not a.quick:
        ap.error("--repeat must be at least 5 (medians of interleaved runs)")
    only = set(a.only.split(","))
    if a.skip_stream:
        only.discard("stream")
    bench = os.path.join(a.build, "bench", "load", "bench_load")
    payguard = os.path.join(a.build, "src", "payguard")
    start = datetime.datetime.now(datetime.timezone.utc)
    res = {"bench": "load", "date": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
           "cpus": os.cpu_count(), "repeats": a.repeat, "quick": a.quick,
           "peer": {"sklearn": sklearn.__version__, "numpy": np.__version__,
                    "blas": blas_line(),
                    "openblas_coretype": CORETYPE_BEST[1] or "(as set)",
                    "coretype_probe": [{"coretype": c or "as set", "arch": arch,
                                        "seconds": t} for t, c, arch in CORETYPE_PROBE],
                    "sklearn_threads": "2 (OpenMP) for single fits; 2 processes x 1 thread "
                                       "for the two-level job",
                    "pandas": PANDAS_SETUP},
           "payguard_threads": 2, "sections": {}}
    print(f"scikit-learn {sklearn.__version__}, numpy {np.__version__}")
    print(f"BLAS used by scikit-learn: {res['peer']['blas']}")
    print(f"OPENBLAS_CORETYPE in the environment: {CORETYPE_ENV or '(unset)'}; probe "
          + ", ".join(f"{c or 'as set'} -> {arch} {t * 1000:.0f} ms" for t, c, arch in CORETYPE_PROBE)
          + f"; scikit-learn runs with OPENBLAS_CORETYPE={CORETYPE_BEST[1] or '(as set)'}")
    print(f"CPU: {os.cpu_count()} logical CPUs, shared; peer and payguard interleaved, "
          f"medians of {a.repeat} rounds")
    res["loadavg_start"] = say_load("at the start")
    scale = 10 if a.quick else 1

    def section(name, fn):
        la0 = say_load(f"before {name}")
        out = fn()
        res["sections"][name] = {"loadavg_before": la0, "loadavg_after": loadavg(),
                                 "result": out}

    with tempfile.TemporaryDirectory() as tmp:
        if "ingest" in only or "e2e" in only:
            section("ingest", lambda: ingest(bench, tmp, scale, a.repeat))
        if "e2e" in only:
            section("e2e", lambda: end_to_end(payguard, tmp, scale, a.repeat))
        if "fit" in only:
            section("fit", lambda: fits(bench, tmp, scale, a.repeat))
        if "seed" in only:
            section("seed", lambda: seeding(bench, tmp, scale, a.repeat))
        if "twolevel" in only:
            section("twolevel", lambda: twolevel_section(bench, tmp, scale, a.repeat))
        if "stream" in only:
            section("stream", lambda: stream(bench, scale))
    res["loadavg_end"] = say_load("at the end")
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        path = os.path.join(a.out, "load-" + start.strftime("%Y%m%d-%H%M%S") + ".json")
        with open(path, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
        print(f"written: {os.path.relpath(path, ROOT)}")
    if FAILED:
        print("results disagree with the peer in: " + ", ".join(FAILED))
        sys.exit(1)


def fits(bench, tmp, scale, repeat):
    out = []
    bad = []
    print(f"\n{'data':<30}{'sklearn best':>16}{'payguard best':>18}{'ratio':>8}"
          f"{'inertia diff':>14}")
    for n, d, k, sizes in FIT_SHAPES:
        n //= scale
        X64 = blobs(n, d, k, 0, sizes)
        init = kmeans_plusplus(X64, k, random_state=0)[0]
        for dt in (np.float32, np.float64):
            X = X64.astype(dt)
            sk, pg = fit_case(bench, tmp, X, init, repeat)
            sb = min(sk, key=lambda k: sk[k][0])
            pb = min(pg, key=lambda k: pg[k][0])
            # against scikit-learn's result's inertia summed in float64
            diff = (pg[pb][1] / sk[sb][3] - 1) * 100
            name = f"{n}x{d} k={k} {np.dtype(dt).name}" + (" uneven" if sizes == "uneven" else "")
            flag = "" if abs(diff) <= 0.01 else "  MISMATCH"
            if flag:
                bad.append(name)
            print(f"{name:<30}{sk[sb][0]:>9.3f}s {sb:<6}{pg[pb][0]:>9.3f}s {pb:<8}"
                  f"{sk[sb][0] / pg[pb][0]:>7.1f}x{diff:>+13.4f}%{flag}")
            print(f"{'':<30}  sklearn lloyd {sk['lloyd'][0]:.3f}s ({sk['lloyd'][2]} it), "
                  f"elkan {sk['elkan'][0]:.3f}s ({sk['elkan'][2]} it); payguard lloyd "
                  f"{pg['lloyd'][0]:.3f}s ({pg['lloyd'][2]} it), hamerly "
                  f"{pg['hamerly'][0]:.3f}s ({pg['hamerly'][2]} it)", flush=True)
            out.append({"n": n, "d": d, "k": k, "sizes": sizes, "dtype": np.dtype(dt).name,
                        "sklearn": {a: {"seconds": v[0], "inertia": v[1], "n_iter": int(v[2]),
                                        "inertia_float64": v[3]}
                                    for a, v in sk.items()},
                        "payguard": {a: {"seconds": v[0], "inertia": v[1], "n_iter": v[2]}
                                     for a, v in pg.items()},
                        "sklearn_best": sb, "payguard_best": pb,
                        "ratio": sk[sb][0] / pg[pb][0], "inertia_diff_pct": diff})
    if bad:
        print("inertia differs by more than 0.01 %: " + ", ".join(bad))
        FAILED.append("fit")
    return out


def seeding(bench, tmp, scale, repeat):
    # k-means++ seeding alone, each side its own random stream: time and the
    # potential (sum of squared distances) reached; rounds interleaved.
    out = []
    print(f"\n{'k-means++ seeding':<22}{'sklearn':>16}{'payguard':>18}{'ratio':>8}"
          f"{'potential diff':>16}")
    for n, d, k in ((1_000_000 // scale, 4, 8), (100_000 // scale, 16, 8),
                    (200_000 // scale, 32, 20), (100_000 // scale, 64, 64)):
        X = blobs(n, d, k, 0).astype(np.float32)
        xp = os.path.join(tmp, "x.bin")
        X.tofile(xp)
        ts, pots, ours = [], [], []
        for r in range(repeat):
            t0 = time.perf_counter()
            c, _ = kmeans_plusplus(X, k, random_state=r)
            ts.append(time.perf_counter() - t0)
            pots.append(potential(X, c))
            o = json.loads(subprocess.run([bench, "seed", xp, str(n), str(d), str(k), "f32",
                                           "2", "1"], check=True, capture_output=True,
                                          text=True).stdout)
            ours.append(o)
        sk_pot = median(pots)
        pgt = median([o["median"] for o in ours])
        diff = (ours[-1]["potential"] / sk_pot - 1) * 100
        name = f"{n}x{d} k={k} float32"
        print(f"{name:<22}{median(ts):>9.3f}s{'':<7}{pgt:>9.3f}s{'':<9}"
              f"{median(ts) / pgt:>7.1f}x{diff:+15.2f}%")
        out.append({"n": n, "d": d, "k": k, "sklearn_s": median(ts), "payguard_s": pgt,
                    "ratio": median(ts) / pgt, "potential_diff_pct": diff})
    return out


def twolevel_section(bench, tmp, scale, repeat):
    vms = 10_000 // scale
    ours, o, theirs, i1, i2 = two_level(bench, tmp, vms, 1440, repeat)
    print(f"\ntwo-level job, {vms} VMs x 1440 samples x 4 features, k1=3, k2=5:")
    print(f"  scikit-learn (2 processes, 1 thread each): {theirs:.3f} s")
    print(f"  payguard (2 threads):                      {ours:.3f} s   ratio "
          f"{theirs / ours:.1f}x")
    print(f"  first-level inertia sum: payguard {o['inertia1']:.8g}, sklearn {i1:.8g} "
          f"({(o['inertia1'] / i1 - 1) * 100:+.4f}%); second level {o['inertia2']:.8g} vs "
          f"{i2:.8g} ({(o['inertia2'] / i2 - 1) * 100:+.4f}%)")
    return {"vms": vms, "samples": 1440, "k1": 3, "k2": 5, "sklearn_s": theirs,
            "payguard_s": ours, "ratio": theirs / ours,
            "inertia1_diff_pct": (o["inertia1"] / i1 - 1) * 100,
            "inertia2_diff_pct": (o["inertia2"] / i2 - 1) * 100}


def stream(bench, scale):
    out = subprocess.run([bench, "stream", str(100_000 // scale), "1440"], check=True,
                         capture_output=True, text=True).stdout
    s = json.loads(out)
    print(f"\nstreaming {100_000 // scale} VMs x 1440 samples through the estimator: "
          f"{s['seconds']:.1f} s (of which {s['generator_seconds']:.1f} s generating the "
          f"data), peak memory {s['peak_rss_mb']:.0f} MB")
    return s


if __name__ == "__main__":
    main()
