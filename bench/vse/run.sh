#!/usr/bin/env bash
# VSE scale benchmark: release build, 200 VSEs on this machine, APDUs to all
# over their sockets, then two more exposed through pcscd + vpcd (pcscd started
# here) when se-pcsc's scripts/se-pcscd.sh is present.
# Usage: bench/vse/run.sh [COUNT] [APDUS_PER_VSE]
set -euo pipefail
cd "$(dirname "$0")/../.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build build -j2 --target payguard payguard-vse vse_bench >&2
ulimit -n 4096
pcscd_pid=""
conf=$(mktemp -d /tmp/pg-vse-bench-readers.XXXXXX)
cleanup() {
	if [ -n "$pcscd_pid" ]; then kill "$pcscd_pid" 2>/dev/null || true; wait "$pcscd_pid" 2>/dev/null || true; fi
	rm -rf "$conf"
}
trap cleanup EXIT
if [ -f scripts/se-pcscd.sh ]; then
	# Debian's one vpcd entry gives two readers (slots 0 and 1). More entries in a
	# private reader.conf.d (pcscd -c) do not work with this vpcd: the readers of
	# different entries end up reading one connection and pcscd hangs in
	# SCardConnect, so two VSEs are exposed through PC/SC, the rest on sockets.
	. scripts/se-pcscd.sh
	pcscd_check
	pcscd -f >"$conf/pcscd.log" 2>&1 &
	pcscd_pid=$!
	pcscd_ready "$pcscd_pid"
	export PG_VSE_BENCH_PCSC=2
fi
build/bench/vse/vse_bench "$PWD/build/src/payguard" "${1:-200}" "${2:-50}"
