#!/usr/bin/env bash
# SE link benchmark in one run: every link type in process and over a
# socketpair, and PC/SC through pcscd + vpcd with payguard's PC/SC host beside
# a python3-pyscard client (the peer) sending the same command to the same card.
#   bash bench/se/run.sh [N_INPROCESS] [N_PCSC]
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-200000}
pn=${2:-2000}
bash scripts/build.sh
cmake --build build --target bench_se_links >&2
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
build/src/payguard se sim --link vpcd --connect tcp:127.0.0.1:35963 --once >"$work/sim.log" 2>&1 &
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
build/bench/se/bench_se_links --n "$n"
# PC/SC: ours and the peer take turns (3 rounds each, median of the rounds),
# so both see the same load on a shared machine.
for round in 1 2 3; do
	build/bench/se/bench_se_links --n 0 --pcsc "$reader" --pcsc-n "$pn" |
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
