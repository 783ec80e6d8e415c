#!/usr/bin/env bash
# VSE scale benchmark: release build, 200 VSEs on this machine, APDUs to all
# over their sockets, then 16 more exposed through pcscd + vpcd (pcscd started
# here with a private reader.conf.d of 8 vpcd entries = 16 readers, the most
# pcscd shows) when se-pcsc's scripts/se-pcscd.sh is present.
# Usage: bench/vse/run.sh [COUNT] [APDUS_PER_VSE]
set -euo pipefail
cd "$(dirname "$0")/../.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build build -j2 --target payguard vse_bench >&2
ulimit -n 4096
pcscd_pid=""
conf=$(mktemp -d /tmp/pg-vse-bench-readers.XXXXXX)
cleanup() {
	if [ -n "$pcscd_pid" ]; then kill "$pcscd_pid" 2>/dev/null || true; wait "$pcscd_pid" 2>/dev/null || true; fi
	rm -rf "$conf"
}
trap cleanup EXIT
if [ -f scripts/se-pcscd.sh ]; then
	. scripts/se-pcscd.sh
	pcscd_check
	for k in 0 1 2 3 4 5 6 7; do
		port=$((35963 + 2 * k))
		printf 'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:0x%X\nLIBPATH /usr/lib/pcsc/drivers/serial/libifdvpcd.so\nCHANNELID 0x%X\n\n' \
			$port $port >>"$conf/vpcd"
	done
	pcscd -f -c "$conf" >"$conf/pcscd.log" 2>&1 &
	pcscd_pid=$!
	pcscd_ready "$pcscd_pid"
	export PG_VSE_BENCH_PCSC=16
fi
build/bench/vse/vse_bench "$PWD/build/src/payguard" "${1:-200}" "${2:-50}"
