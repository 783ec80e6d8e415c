#!/usr/bin/env bash
# Builds (release) and runs the SE OS connection-establishment benchmark:
# cache miss (the configuration read from the SE: what a device without
# payguard's cache does every time, the baseline) vs cache hit through the
# same link, for T=1, SWP and SPI test SEs on UNIX sockets and, with --pcsc,
# a test SE behind pcscd + vpcd (starts a private pcscd; run it under
# `flock /tmp/pcscd.lock` on a shared machine). Miss and hit take turns
# within a repeat (bench_seos_connect interleaves them), and the program runs
# REPEATS times (default 5) over every link, round by round. Every repeat's
# medians, the medians over repeats, the ratio miss/hit, the date, the load
# average, the commit and the links' configuration are written to
# bench/results/seos-DATE.json (issue 18 item 5: docs quote result files only).
#   bench/seos/run.sh [N] [REPEATS] [--pcsc]   (N establishments each per repeat, default 200)
# PG_BENCH_BUILD_DIR: the release build directory (default build-bench).
set -euo pipefail
cd "$(dirname "$0")/../.."
n=200 repeats=5 pcsc=0 pos=0
for a in "$@"; do
	case $a in
	--pcsc) pcsc=1 ;;
	*) if [ $pos = 0 ]; then n=$a; else repeats=$a; fi; pos=$((pos + 1)) ;;
	esac
done
build=${PG_BENCH_BUILD_DIR:-build-bench}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
nice cmake --build "$build" -j2 --target bench_seos_connect payguard >/dev/null
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
	"$build/src/payguard" seos sim --link vpcd --connect tcp:127.0.0.1:35963 \
		--master 404142434445464748494A4B4C4D4E4F --serial 0x4242 --version 3 \
		>"$work/sim.log" 2>&1 &
	sim_pid=$!
	sleep 1
	links+=("pcsc:Virtual PCD 00 00")
fi
cat /proc/loadavg >"$work/load0"
echo "load average: $(cut -d' ' -f1-3 "$work/load0")"
for r in $(seq 1 "$repeats"); do
	echo "repeat $r of $repeats"
	nice "$build/bench/seos/bench_seos_connect" "$n" "${links[@]}" | tee "$work/run$r"
done
ver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo none; }
/usr/bin/python3 - "$work" "$repeats" "$n" "$(git rev-parse --short HEAD)" "$pcsc" \
	"$(ver pcscd)" "$(ver vsmartcard-vpcd)" "$(ver libsqlite3-0)" "$(ver libssl3)" <<'PY'
import json, os, statistics, sys, time
work, reps, n, commit, pcsc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
pcscd, vpcd, sqlite, ssl = sys.argv[6:10]
runs = {}
for r in range(1, reps + 1):
    for line in open(os.path.join(work, "run%d" % r)):
        f = line.split()
        # link  miss(us)  APDUs  hit(us)  APDUs  ratio
        if len(f) == 6 and f[5].endswith("x") and f[0] in ("t1", "swp", "spi", "pcsc"):
            runs.setdefault(f[0], []).append({"miss_us": float(f[1]), "apdus_miss": int(f[2]),
                                              "hit_us": float(f[3]), "apdus_hit": int(f[4])})
links = {}
print("medians of %d repeats of %d establishments each (miss = no cache, the baseline):" % (reps, n))
for link, rs in runs.items():
    if len(rs) != reps:
        sys.exit("link %s: %d of %d repeats printed" % (link, len(rs), reps))
    miss = statistics.median(x["miss_us"] for x in rs)
    hit = statistics.median(x["hit_us"] for x in rs)
    links[link] = {"miss_us_median": miss, "hit_us_median": hit, "ratio_miss_over_hit": miss / hit,
                   "apdus_miss": rs[0]["apdus_miss"], "apdus_hit": rs[0]["apdus_hit"],
                   "ratio_miss_over_hit_runs": [x["miss_us"] / x["hit_us"] for x in rs], "runs": rs}
    print("  %-5s miss %8.1f us (%d APDUs)  hit %8.1f us (%d APDUs)  miss/hit %.2fx"
          % (link, miss, rs[0]["apdus_miss"], hit, rs[0]["apdus_hit"], miss / hit))
load0 = [float(x) for x in open(os.path.join(work, "load0")).read().split()[:3]]
load1 = [float(x) for x in open("/proc/loadavg").read().split()[:3]]
config = {"test_se": "payguard's GP test SE (seos sim card, serial 0x4242, SCP03 master key, version 3)",
          "t1_swp_spi": "the link's card role in a thread of the bench, on a UNIX socket",
          "store": "SQLite %s, a fresh file in /tmp" % sqlite, "openssl": ssl,
          "miss": "seos_cache emptied before each establishment"}
if pcsc:
    config["pcsc"] = "pcscd %s + vsmartcard-vpcd %s, `payguard seos sim --link vpcd` on TCP 35963" % (pcscd, vpcd)
out = {"bench": "seos", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": commit,
       "cpus": os.cpu_count(), "establishments_per_repeat": n, "repeats": reps,
       "loadavg_start": load0, "loadavg_end": load1, "config": config, "links": links}
print("load average %s at the start, %s at the end" % (load0, load1))
path = "bench/results/seos-%s.json" % time.strftime("%Y%m%d-%H%M%S", time.gmtime())
json.dump(out, open(path, "w"), indent=1)
print("written to " + path)
PY
