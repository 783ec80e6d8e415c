#!/usr/bin/env bash
# SE link benchmark in one run: every link type in process and over a
# socketpair, and PC/SC through pcscd + vpcd with payguard's PC/SC host beside
# a python3-pyscard client (the peer) sending the same command to the same card.
# Every figure, with the date, the load average and the commit, is written to
# bench/results/se-DATE.json (issue 18 item 5: docs quote result files only).
#   bash bench/se/run.sh [N_INPROCESS] [N_PCSC]
# PG_BENCH_BUILD_DIR=DIR builds only payguard and the bench program in DIR (a
# release configuration like scripts/build.sh's) instead of the whole of build/.
# Starts pcscd: run it under `flock /tmp/pcscd.lock` on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-200000}
pn=${2:-2000}
build=${PG_BENCH_BUILD_DIR:-build}
if [ -z "${PG_BENCH_BUILD_DIR:-}" ]; then
	bash scripts/build.sh
else
	cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
	cmake --build "$build" -j2 --target payguard >&2
fi
cmake --build "$build" --target bench_se_links >&2
work=$(mktemp -d /tmp/pg-se-bench.XXXXXX)
pcscd_pid=""
sim_pid=""
cleanup() {
	[ -n "$sim_pid" ] && { kill "$sim_pid" 2>/dev/null; wait "$sim_pid" 2>/dev/null; } || true
	[ -n "$pcscd_pid" ] && { kill "$pcscd_pid" 2>/dev/null; wait "$pcscd_pid" 2>/dev/null; } || true
	rm -rf "$work"
}
trap cleanup EXIT
. scripts/se-pcscd.sh
pcscd_check
pcscd -f >"$work/pcscd.log" 2>&1 & # no -a: APDU logging would be timed too
pcscd_pid=$!
pcscd_ready "$pcscd_pid"
"$build/src/payguard" se sim --link vpcd --connect tcp:127.0.0.1:35963 --once >"$work/sim.log" 2>&1 &
sim_pid=$!
reader="Virtual PCD 00 00"
for _ in $(seq 1 100); do
	/usr/bin/python3 -c '
import sys
from smartcard.System import readers
[r for r in readers() if str(r) == sys.argv[1]][0].createConnection().connect()' "$reader" \
		2>/dev/null && break
	sleep 0.1
done
cat /proc/loadavg >"$work/load0"
"$build/bench/se/bench_se_links" --n "$n" | tee "$work/links"
# PC/SC: ours and the peer take turns (3 rounds each, median of the rounds),
# so both see the same load on a shared machine.
for round in 1 2 3; do
	"$build/bench/se/bench_se_links" --n 0 --pcsc "$reader" --pcsc-n "$pn" |
		awk '$1 == "pcsc" {print $3}' >>"$work/ours"
	/usr/bin/python3 - "$reader" "$pn" >>"$work/peer" <<'PY'
import sys, time, statistics
from smartcard.System import readers
r = [x for x in readers() if str(x) == sys.argv[1]][0]
n = int(sys.argv[2])
c = r.createConnection(); c.connect()
c.transmit([0x00, 0xA4, 0x04, 0x00, 0x0A, 0xF0] + list(b"payguard") + [0x01, 0x00])
cmd = [0x80, 0x10, 0x00, 0x00, 0x10] + list(range(16)) + [0x00]
runs = []
for _ in range(5):
    t0 = time.perf_counter()
    for _ in range(n):
        d, s1, s2 = c.transmit(cmd)
    runs.append((time.perf_counter() - t0) * 1e6 / n)
    assert d == list(range(16)) and (s1, s2) == (0x90, 0x00)
print("%.2f" % statistics.median(runs))
PY
done
ours=$(sort -g "$work/ours" | sed -n 2p)
peer=$(sort -g "$work/peer" | sed -n 2p)
[ -n "$ours" ] && [ -n "$peer" ] || { echo "PC/SC measurement failed" >&2; exit 1; }
awk -v p="$peer" -v o="$ours" 'BEGIN {
	printf "%-7s %-21s %10.2f %12.0f\n", "pcsc", "pcscd+vpcd (payguard)", o, 1e6 / o
	printf "%-7s %-21s %10.2f %12.0f\n", "pyscard", "pcscd+vpcd (peer)", p, 1e6 / p
	printf "PC/SC through pcscd+vpcd: payguard %.2f us/APDU, pyscard %.2f us/APDU, ratio pyscard/payguard %.2f\n", o, p, p / o
}'
/usr/bin/python3 - "$work" "$n" "$pn" "$(git rev-parse --short HEAD)" <<'PY'
import json, os, statistics, sys, time
work, n, pn, commit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
links = {}
for line in open(os.path.join(work, "links")):
    f = line.split()
    if len(f) == 4 and f[1] in ("in-process", "socketpair+thread"):
        links.setdefault(f[0], {})[f[1]] = {"us_per_apdu": float(f[2]),
                                            "apdus_per_s": float(f[3])}
ours = [float(x) for x in open(os.path.join(work, "ours")).read().split()]
peer = [float(x) for x in open(os.path.join(work, "peer")).read().split()]
o, p = statistics.median(ours), statistics.median(peer)
load0 = [float(x) for x in open(os.path.join(work, "load0")).read().split()[:3]]
load1 = [float(x) for x in open("/proc/loadavg").read().split()[:3]]
out = {"bench": "se", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
       "commit": commit, "cpus": os.cpu_count(), "apdus_in_process": n, "apdus_pcsc": pn,
       "loadavg_start": load0, "loadavg_end": load1, "links": links,
       "pcsc": {"payguard_us_per_apdu_runs": ours, "pyscard_us_per_apdu_runs": peer,
                "payguard_us_per_apdu_median": o, "pyscard_us_per_apdu_median": p,
                "ratio_pyscard_over_payguard": p / o}}
path = "bench/results/se-%s.json" % time.strftime("%Y%m%d-%H%M%S", time.gmtime())
json.dump(out, open(path, "w"), indent=1)
print("written to " + path)
PY
