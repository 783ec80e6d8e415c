#!/usr/bin/python3
"""Prints the Markdown tables of docs/load.md's "Benchmark" section from one
bench/results/load-*.json written by bench/load/run.py, so the figures in the
docs are copied from a result file, not typed (tests/integration/quality/
bench_figures.py checks they are held by it).

  /usr/bin/python3 bench/load/tables.py bench/results/load-DATE.json
"""
import json
import sys


def fmt_int(n):
    return f"{n:,}"


def main():
    path = sys.argv[1]
    r = json.load(open(path))
    s = r["sections"]
    print(f"Run {r['date']} ({path}): load average {r['loadavg_start'][0]:.1f} at the start, "
          f"{r['loadavg_end'][0]:.1f} at the end; per section:")
    for name, sec in s.items():
        print(f"  {name}: {sec['loadavg_before'][0]:.1f} -> {sec['loadavg_after'][0]:.1f}")
    print()
    if "ingest" in s:
        print("| ingest, MB per CPU second | pandas | payguard | ratio |")
        print("|---|---|---|---|")
        names = {"bitbrains": "Bitbrains", "plain": "plain CSV", "matrix": "matrix CSV"}
        for k, v in s["ingest"]["result"].items():
            rt = (f" (round_trip: {v['pandas_round_trip_mb_per_cpu_s']:.0f} MB/s)"
                  if "pandas_round_trip_mb_per_cpu_s" in v else "")
            print(f"| {names[k]}, {v['bytes'] / 1e6:.0f} MB | {v['pandas_mb_per_cpu_s']:.0f} MB/s{rt}"
                  f" | {v['payguard_mb_per_cpu_s']:.0f} MB/s | {v['ratio_per_core']:.1f}× |")
        print()
    if "e2e" in s:
        e = s["e2e"]["result"]
        print(f"End to end, {fmt_int(e['n'])} × {e['d']} float32, k = {e['k']}: .npy "
              f"{e['payguard_npy_s']:.3f} s, CSV {e['payguard_csv_s']:.3f} s, scikit-learn's fit "
              f"{e['sklearn_fit_s']:.3f} s ({e['sklearn_algorithm']}): {e['ratio_npy']:.1f}× and "
              f"{e['ratio_csv']:.1f}×; inertia {e['inertia_diff_pct']:+.4f} %\n")
    if "fit" in s:
        print("| single fit | scikit-learn best | payguard best | ratio |")
        print("|---|---|---|---|")
        for c in s["fit"]["result"]:
            sb, pb = c["sklearn_best"], c["payguard_best"]
            print(f"| {fmt_int(c['n'])} × {c['d']}, k = {c['k']}, {c['dtype']} | "
                  f"{c['sklearn'][sb]['seconds']:.3f} s ({sb.capitalize()}) | "
                  f"{c['payguard'][pb]['seconds']:.3f} s ({pb.capitalize()}) | {c['ratio']:.1f}× |")
        worst = max(abs(c["inertia_diff_pct"]) for c in s["fit"]["result"])
        print(f"\nInertia equal within {worst:.4f} % in every row.\n")
    if "seed" in s:
        print("| k-means++ seeding, float32 | scikit-learn | payguard (2 threads) | ratio | potential |")
        print("|---|---|---|---|---|")
        for c in s["seed"]["result"]:
            print(f"| {fmt_int(c['n'])} × {c['d']}, k = {c['k']} | {c['sklearn_s']:.3f} s | "
                  f"{c['payguard_s']:.3f} s | {c['ratio']:.1f}× | {c['potential_diff_pct']:+.1f}% |")
        print()
    if "twolevel" in s:
        t = s["twolevel"]["result"]
        print(f"Two-level job, {fmt_int(t['vms'])} VMs × {fmt_int(t['samples'])} × 4, k1 = "
              f"{t['k1']}, k2 = {t['k2']}: scikit-learn {t['sklearn_s']:.3f} s, payguard "
              f"{t['payguard_s']:.3f} s, {t['ratio']:.1f}×; inertia {t['inertia1_diff_pct']:+.5f} % "
              f"/ {t['inertia2_diff_pct']:+.5f} %\n")
    if "stream" in s:
        st = s["stream"]["result"]
        print(f"Streaming: {st['seconds']:.1f} s, of which {st['generator_seconds']:.1f} s "
              f"generating, peak memory {st['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
