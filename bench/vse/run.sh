#!/usr/bin/env bash
# VSE scale benchmark: release build, 200 VSEs on this machine, APDUs to all
# over their sockets, then two more exposed through pcscd + vpcd (pcscd started
# here) when se-pcsc's scripts/se-pcscd.sh is present.
# The figures, with the date, the load average and the commit, are written to
# bench/results/vse-DATE.json (issue 18 item 5: docs quote result files only).
# Starts pcscd: run it under `flock /tmp/pcscd.lock` on a shared machine.
# Usage: bench/vse/run.sh [COUNT] [APDUS_PER_VSE]   (PG_BENCH_BUILD_DIR: build dir)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${PG_BENCH_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build "$build" -j2 --target payguard payguard-vse vse_bench >&2
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
load0=$(cat /proc/loadavg)
"$build/bench/vse/vse_bench" "$PWD/$build/src/payguard" "${1:-200}" "${2:-50}" | tee "$conf/out"
/usr/bin/python3 - "$conf/out" "$load0" "$(git rev-parse --short HEAD)" <<'PY'
import json, os, re, sys, time
text, load0, commit = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3]
def num(pat):
    m = re.search(pat, text)
    if not m:
        sys.exit("vse_bench printed no line matching " + pat)
    return [float(x) for x in m.groups()]
created, count, fails = num(r"VSEs created:\s+(\d+) of (\d+) \(APDU failures: (\d+)\)")
out = {"bench": "vse", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
       "commit": commit, "cpus": os.cpu_count(),
       "loadavg_start": [float(x) for x in load0.split()[:3]],
       "loadavg_end": [float(x) for x in open("/proc/loadavg").read().split()[:3]],
       "vses": count, "created": created, "apdu_failures": fails,
       "create_ms_median": num(r"create time per VSE, median:\s+([\d.]+) ms")[0],
       "create_ms_max": num(r"create time per VSE, max:\s+([\d.]+) ms")[0]}
out["private_kib_median"], out["arena_resident_kib_median"] = num(
    r"private memory beyond the arena: ([\d.]+) KiB median.*arena resident ([\d.]+) KiB")
out["sockets_apdus_per_s"] = num(r"APDUs to all VSEs over sockets:\s+([\d.]+) APDUs/s")[0]
out["in_process_apdus_per_s"], out["in_process_t1_apdus_per_s"] = num(
    r"same card in process:\s+([\d.]+) APDUs/s direct, ([\d.]+) APDUs/s")
out["ratio_in_process_t1_over_sockets"] = num(r"ratio in-process T=1 / VSE over socket: ([\d.]+)x")[0]
m = re.search(r"through pcscd \+ vpcd:\s+([\d.]+) APDUs/s", text)
out["pcsc_apdus_per_s"] = float(m.group(1)) if m else None
path = "bench/results/vse-%s.json" % time.strftime("%Y%m%d-%H%M%S", time.gmtime())
json.dump(out, open(path, "w"), indent=1)
print("written to " + path)
PY
