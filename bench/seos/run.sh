#!/usr/bin/env bash
# Builds (release) and runs the SE OS connection-establishment benchmark:
# cache miss vs cache hit through the same link, medians of N, and the ratio,
# for T=1, SWP and SPI test SEs on UNIX sockets and, with --pcsc, a test SE
# behind pcscd + vpcd (starts a private pcscd; needs the machine's one socket).
#   bench/seos/run.sh [N] [--pcsc]
set -euo pipefail
cd "$(dirname "$0")/../.."
n=200 pcsc=0
for a in "$@"; do case $a in --pcsc) pcsc=1 ;; *) n=$a ;; esac; done
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
nice cmake --build build-bench -j2 --target bench_seos_connect payguard >/dev/null
links=(t1 swp spi)
pcscd_pid="" sim_pid="" work=$(mktemp -d /tmp/pg-seos-bench.XXXXXX)
cleanup() {
	[ -z "$sim_pid" ] || { kill "$sim_pid" 2>/dev/null; wait "$sim_pid" 2>/dev/null; } || true
	[ -z "$pcscd_pid" ] || { kill "$pcscd_pid" 2>/dev/null; wait "$pcscd_pid" 2>/dev/null; } || true
	rm -rf "$work"
}
trap cleanup EXIT
if [ $pcsc = 1 ]; then
	. scripts/se-pcscd.sh
	pcscd_check
	pcscd -f >"$work/pcscd.log" 2>&1 &
	pcscd_pid=$!
	pcscd_ready "$pcscd_pid"
	build-bench/src/payguard seos sim --link vpcd --connect tcp:127.0.0.1:35963 \
		--master 404142434445464748494A4B4C4D4E4F --serial 0x4242 --version 3 \
		>"$work/sim.log" 2>&1 &
	sim_pid=$!
	sleep 1
	links+=("pcsc:Virtual PCD 00 00")
fi
nice build-bench/bench/seos/bench_seos_connect "$n" "${links[@]}"
