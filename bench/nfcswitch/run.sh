#!/usr/bin/env bash
# NFC switch benchmark (release build): routing decision with 100,000 AIDs and
# the per-APDU latency through the switch beside the same APDU sent directly.
# Runs the program REPEATS times (default 5) and writes every run, the medians,
# the date, the load average and the commit to bench/results/nfcswitch-DATE.json
# (issue 18 item 5: the docs quote figures from result files only).
#   bash bench/nfcswitch/run.sh [N_AIDS] [REPEATS]
# PG_BENCH_BUILD_DIR=DIR builds only the bench program in DIR (a release
# configuration like scripts/build.sh's) instead of the whole of build/.
set -euo pipefail
cd "$(dirname "$0")/../.."
aids=${1:-100000} repeats=${2:-5}
build=${PG_BENCH_BUILD_DIR:-build}
if [ -z "${PG_BENCH_BUILD_DIR:-}" ]; then
	bash scripts/build.sh >&2
else
	cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
fi
cmake --build "$build" --target bench_nfcswitch >&2
work=$(mktemp -d /tmp/pg-nfcsw-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
cat /proc/loadavg >"$work/load0"
for i in $(seq 1 "$repeats"); do
	nice "$build/bench/nfcswitch/bench_nfcswitch" --aids "$aids" | tee "$work/run$i"
done
/usr/bin/python3 - "$work" "$repeats" "$aids" "$(git rev-parse --short HEAD)" <<'PY'
import json, os, re, statistics, sys, time
work, reps, aids, commit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
# printed line -> (key, factor to microseconds)
lines = [(r"routing decision, exact AID:\s+([\d.]+) ns", "route_exact_us", 1e-3),
         (r"routing decision, partial AID \(7 B\):\s+([\d.]+) ns", "route_partial_us", 1e-3),
         (r"APDU to the SE directly \(SWP link\):\s+([\d.]+) us", "direct_us", 1),
         (r"APDU through the switch:\s+([\d.]+) us\s+added (-?[\d.]+) us \(ratio ([\d.]+)",
          "switch_us", 1),
         (r"APDU through the slave port \+ switch:\s+([\d.]+) us\s+added (-?[\d.]+) us \(ratio ([\d.]+)",
          "slave_us", 1)]
runs = []
for i in range(1, reps + 1):
    text = open(os.path.join(work, "run%d" % i)).read()
    run = {}
    for pat, key, f in lines:
        m = re.search(pat, text)
        if not m:
            sys.exit("bench_nfcswitch printed no '%s' line" % key)
        run[key] = float(m.group(1)) * f
        if m.lastindex == 3:
            run[key.replace("_us", "_added_us")] = float(m.group(2))
            # the same run's ratio to the direct APDU (from the unrounded times),
            # less exposed to the shared machine than the times themselves
            run[key.replace("_us", "_ratio")] = float(m.group(3))
    runs.append(run)
med = {k + "_median": statistics.median(r[k] for r in runs) for k in runs[0]}
load0 = [float(x) for x in open(os.path.join(work, "load0")).read().split()[:3]]
load1 = [float(x) for x in open("/proc/loadavg").read().split()[:3]]
out = {"bench": "nfcswitch", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
       "commit": commit, "cpus": os.cpu_count(), "aids": aids + 1, "repeats": reps,
       "loadavg_start": load0, "loadavg_end": load1, "medians": med, "runs": runs}
path = "bench/results/nfcswitch-%s.json" % time.strftime("%Y%m%d-%H%M%S", time.gmtime())
json.dump(out, open(path, "w"), indent=1)
print("medians of %d runs: %s" % (reps, ", ".join("%s %.3f" % kv for kv in med.items())))
print("written to " + path)
PY
