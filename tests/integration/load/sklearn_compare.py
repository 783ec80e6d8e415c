#!/usr/bin/python3
"""payguard's k-means engine against scikit-learn (Debian's python3-sklearn).

On the data sets scikit-learn ships (iris, wine, breast cancer, digits):
  * the same explicit initial centers -> the same labels and centers within
    1e-6 relative, for Lloyd and Hamerly (float64), and float32 close;
  * an initial center far from the data -> the empty cluster is relocated as
    scikit-learn does (one empty cluster: the farthest point);
  * k-means++ with the same n_init -> inertia within 1% of scikit-learn's.
Exits non-zero on any mismatch (and when scikit-learn is missing).
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import sklearn
from sklearn import datasets
from sklearn.cluster import KMeans

PAYGUARD = os.environ.get("PAYGUARD", "payguard")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def write_csv(path, a):
    np.savetxt(path, a, delimiter=",", fmt="%.17g")


def ours(tmp, X, init=None, k=None, algo="lloyd", n_init=1, seed=0, f32=False, threads=2):
    xp = os.path.join(tmp, "x.csv")
    write_csv(xp, X)
    cmd = [PAYGUARD, "load", "kmeans", "--data", xp, "--algorithm", algo, "--json",
           "--threads", str(threads), "--tol", "1e-4", "--max-iter", "300"]
    if init is not None:
        ip = os.path.join(tmp, "init.csv")
        write_csv(ip, init)
        cmd += ["--init", ip]
    else:
        cmd += ["--k", str(k), "--n-init", str(n_init), "--seed", str(seed)]
    if f32:
        cmd.append("--float32")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    return np.array(r["labels"]), np.array(r["centers"]), r["inertia"], r["n_iter"]


def rel_close(a, b, rtol):
    scale = max(np.abs(b).max(), 1e-300)
    return np.all(np.abs(a - b) <= rtol * np.maximum(np.abs(b), 1e-3 * scale))


def main():
    print(f"scikit-learn {sklearn.__version__}, numpy {np.__version__}")
    sets = [("iris", datasets.load_iris, 3), ("wine", datasets.load_wine, 3),
            ("breast_cancer", datasets.load_breast_cancer, 2), ("digits", datasets.load_digits, 10)]
    with tempfile.TemporaryDirectory() as tmp:
        for name, loader, k in sets:
            X = loader().data.astype(np.float64)
            rng = np.random.RandomState(0)
            init = X[rng.choice(X.shape[0], k, replace=False)].copy()
            for algo in ("lloyd", "elkan"):
                sk = KMeans(n_clusters=k, init=init, n_init=1, algorithm=algo, tol=1e-4,
                            max_iter=300).fit(X)
                ours_algo = "lloyd" if algo == "lloyd" else "hamerly"
                lab, cen, inertia, nit = ours(tmp, X, init=init, algo=ours_algo)
                check(np.array_equal(lab, sk.labels_),
                      f"{name} k={k} {ours_algo} vs sklearn {algo}: same labels "
                      f"({(lab != sk.labels_).sum()} differ; iterations {nit} vs {sk.n_iter_})")
                check(rel_close(cen, sk.cluster_centers_, 1e-6),
                      f"{name} {ours_algo}: centers within 1e-6 relative (max abs diff "
                      f"{np.abs(cen - sk.cluster_centers_).max():.3g})")
                check(abs(inertia - sk.inertia_) <= 1e-6 * sk.inertia_,
                      f"{name} {ours_algo}: inertia {inertia:.10g} vs {sk.inertia_:.10g}")
            # float32: scikit-learn computes in float32 too; rounding may move a few
            # points on a boundary, so we ask for near-equality.
            X32 = X.astype(np.float32)
            sk = KMeans(n_clusters=k, init=init.astype(np.float32), n_init=1, algorithm="lloyd",
                        tol=1e-4, max_iter=300).fit(X32)
            lab, cen, inertia, nit = ours(tmp, X32.astype(np.float64), init=init, f32=True)
            agree = (lab == sk.labels_).mean()
            check(agree >= 0.99 and abs(inertia - sk.inertia_) <= 1e-4 * sk.inertia_,
                  f"{name} float32: {agree*100:.2f}% same labels, inertia {inertia:.8g} vs "
                  f"{sk.inertia_:.8g}")
            # k-means++ with the same n_init: inertia within 1%.
            sk = KMeans(n_clusters=k, init="k-means++", n_init=10, random_state=0).fit(X)
            _, _, inertia, _ = ours(tmp, X, k=k, n_init=10, seed=0)
            check(abs(inertia - sk.inertia_) <= 0.01 * sk.inertia_ or inertia < sk.inertia_,
                  f"{name} k-means++ n_init=10: inertia {inertia:.8g} vs sklearn "
                  f"{sk.inertia_:.8g} ({(inertia / sk.inertia_ - 1) * 100:+.3f}%)")
        # Empty-cluster relocation: one initial center far from the data.
        X = datasets.load_iris().data.astype(np.float64)
        init = X[[0, 50, 100]].copy()
        init[2] = [100.0, 100.0, 100.0, 100.0]
        for algo in ("lloyd", "elkan"):
            sk = KMeans(n_clusters=3, init=init, n_init=1, algorithm=algo).fit(X)
            lab, cen, inertia, _ = ours(tmp, X, init=init,
                                        algo="lloyd" if algo == "lloyd" else "hamerly")
            check(np.array_equal(lab, sk.labels_) and rel_close(cen, sk.cluster_centers_, 1e-6),
                  f"iris, empty cluster relocated ({algo}): same labels and centers as sklearn")
        # Thread count must not change the result.
        X = datasets.load_digits().data.astype(np.float64)
        a = ours(tmp, X, k=10, n_init=3, seed=5, threads=1)
        b = ours(tmp, X, k=10, n_init=3, seed=5, threads=2)
        check(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]),
              "digits: 1 and 2 threads give identical labels and centers")
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
