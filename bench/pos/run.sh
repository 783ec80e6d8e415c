#!/usr/bin/env bash
# pos benchmark (seed 4), one run, all figures side by side:
#  1. batch checks per CPU-second on one core (parse + cell lookup + distance + policy);
#  2. the server: transactions per second and p50/p99 latency, 64 connections on
#     loopback, every decision stored by group commit before it is answered,
#     with --sync normal and --sync full (fsync per group commit) in turn;
#  3. the same messages decoded by payguard and by the npm package iso_8583
#     (the peer, run with /usr/bin/node), as a ratio.
# Every part runs REPEATS rounds (default 5); in each round payguard's decode
# and the peer's take turns, and so do the two sync modes, so both sides see
# the same load on a shared machine. Medians over the rounds, every round's
# values, the date, the load average, the commit and the peer's configuration
# are written to bench/results/pos-DATE.json (issue 18 item 5: docs quote
# result files only).
# Usage: bench/pos/run.sh [MESSAGES] [CELLS] [REPEATS] [SECONDS]
#        (defaults 1000000, 200000, 5, 5)
# PG_BENCH_BUILD_DIR=DIR builds only payguard and pos_bench in DIR (a release
# configuration like scripts/build.sh's) instead of the whole of build/.
set -euo pipefail
cd "$(dirname "$0")/../.."
msgs=${1:-1000000}
ncells=${2:-200000}
repeats=${3:-5}
secs=${4:-5}
build=${PG_BENCH_BUILD_DIR:-build}
if [ -z "${PG_BENCH_BUILD_DIR:-}" ]; then
	bash scripts/build.sh >/dev/null 2>&1 || bash scripts/build.sh
else
	cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
	cmake --build "$build" -j2 --target payguard >&2
fi
cmake --build "$build" --target pos_bench >/dev/null
pg=$build/src/payguard
work=$(mktemp -d "${TMPDIR:-/tmp}/pos-bench-XXXXXX")
srv=""
cleanup() { [ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# the npm peer, installed from the lock file into the build directory
npmdir=$build/pos-npm
mkdir -p "$npmdir"
cp tests/integration/pos/npm/package.json tests/integration/pos/npm/package-lock.json "$npmdir/"
[ -f "$npmdir/node_modules/iso_8583/package.json" ] || (cd "$npmdir" && npm ci --no-audit --no-fund >/dev/null)

# synthetic but OpenCellID-shaped data: LTE sites of three sector cells each,
# scattered over Germany; one terminal registered at each of the first 10% of sites
/usr/bin/python3 - "$work" "$ncells" <<'PY'
import sys, random
work, n = sys.argv[1], int(sys.argv[2])
random.seed(7)
with open(work + "/cells.csv", "w") as f, open(work + "/merchants.csv", "w") as m:
    f.write("radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal\n")
    m.write("terminal_id,merchant_id,lat,lon,uncertainty_m,limit_m,mcc,name\n")
    for s in range(n // 3):
        lat = 47.3 + 7.7 * random.random(); lon = 5.9 + 9.1 * random.random()
        for k in range(3):
            i = 3 * s + k
            f.write("LTE,262,1,%d,%d,,%.6f,%.6f,%d,10,1,1459692000,1700000000,\n"
                    % (1000 + s // 100, 100000 + i, lon + random.uniform(-0.003, 0.003),
                       lat + random.uniform(-0.002, 0.002), random.randint(300, 1500)))
        if s < n // 30:
            m.write("T%07d,M%014d,%.6f,%.6f,50,2000,262,merchant %d\n" % (s, s, lat, lon, s))
PY
db="$work/bench.db"
t0=$(date +%s.%N)
$pg pos cells import "$work/cells.csv" --db "$db" --json >"$work/ci.json"
t1=$(date +%s.%N)
$pg pos merchants import "$work/merchants.csv" --db "$db" --json >/dev/null
echo "cells import: $ncells rows in $(echo "$t1 - $t0" | bc) s" >&2

cat /proc/loadavg >"$work/load0"
echo "load average at the start: $(cut -d' ' -f1-3 "$work/load0")" >&2
# 1 + 3: batch checks and payguard's decode of the peer layout, then the peer
# on the same messages (the first 200000), in turns, one run each per round
for r in $(seq 1 "$repeats"); do
	out=()
	[ "$r" = 1 ] && out=(--peer-out "$work/peer.hex")
	taskset -c 0 "$build/bench/pos/pos_bench" --db "$db" --messages "$msgs" --runs 1 \
		"${out[@]}" >"$work/ours$r.json"
	NODE_PATH="$npmdir/node_modules" taskset -c 0 /usr/bin/node bench/pos/peer_decode.js \
		"$work/peer.hex" 1 >"$work/peer$r.json"
	echo "  round $r: $(cut -c1-120 "$work/ours$r.json") peer $(cat "$work/peer$r.json")" >&2
done

# 2: the server, 64 connections, --sync normal and --sync full in turns
/usr/bin/python3 - "$db" >"$work/tpl.jsonl" <<'PY'
import sqlite3, sys, json, struct
db = sqlite3.connect(sys.argv[1])
rows = db.execute("SELECT t.tid, t.mid, c.mcc, c.net, c.area, c.cell FROM pos_terminals t JOIN pos_cells c "
                  "ON c.cell = 100000 + 3 * CAST(substr(t.tid, 2) AS INTEGER) LIMIT 64").fetchall()
for tid, mid, mcc, net, area, cid in rows:
    print(json.dumps({"0": "0200", "2": "4761739001010119", "3": "000000", "4": "000000001250",
                      "7": "1125120000", "11": "000000", "22": "071", "41": tid, "42": mid, "49": "978",
                      "cell": {"serving": {"radio": "LTE", "mcc": mcc, "mnc": net, "area": area, "cid": cid,
                                           "signal": -70}, "neighbours": []}}))
PY
for r in $(seq 1 "$repeats"); do
	for sync in normal full; do
		rm -f "$work/port"
		$pg --log-level warn pos serve --port 0 --port-file "$work/port" --db "$db" --sync $sync \
			2>>"$work/server.log" &
		srv=$!
		for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
		c0=$(awk '{print $14+$15}' /proc/$srv/stat)
		$pg pos load --port "$(cat "$work/port")" --conns 64 --duration-ms $((secs * 1000)) \
			--stan-base $((((r - 1) * 100000) % 1000000)) --json "$work/tpl.jsonl" >"$work/$sync$r.json"
		c1=$(awk '{print $14+$15}' /proc/$srv/stat)
		echo $(((c1 - c0) * 1000000 / $(getconf CLK_TCK))) >"$work/$sync$r.cpu_us"
		kill "$srv"
		wait "$srv" || true
		srv=""
		echo "  round $r --sync $sync: $(tr -d " \n" <"$work/$sync$r.json" | cut -c1-140)" >&2
	done
done
stored=$(sqlite3 "$db" "SELECT count(*) FROM pos_txn")
peercfg="iso_8583 $(NODE_PATH="$npmdir/node_modules" /usr/bin/node -p 'require("iso_8583/package.json").version'), node $(/usr/bin/node --version), one core (taskset -c 0), CPU time of the process"
mkdir -p bench/results
/usr/bin/python3 - "$work" "$repeats" "$secs" "$stored" "$(git rev-parse --short HEAD)" "$peercfg" \
	"$(sqlite3 --version | cut -d' ' -f1)" <<'PY'
import json, os, statistics, sys, time
work, reps, secs, stored, commit, peercfg, sqlite = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                                       int(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7])
med = statistics.median
ours = [json.load(open("%s/ours%d.json" % (work, r))) for r in range(1, reps + 1)]
peer = [json.load(open("%s/peer%d.json" % (work, r))) for r in range(1, reps + 1)]
o0 = ours[0]
batch = {"checks_per_s_median": med(o["checks_per_s_median"] for o in ours),
         "checks_per_wall_s_median": med(o["checks_per_wall_s_median"] for o in ours),
         "checks_per_s_runs": [o["checks_per_s_median"] for o in ours],
         "messages": o0["messages"], "cells": o0["cells"], "terminals": o0["terminals"],
         "decisions": {k: o0[k] for k in ("in_place", "moved", "undetermined", "unregistered")}}
dec = {"payguard_decode_per_s_median": med(o["decode_per_s_median"] for o in ours),
       "iso_8583_decode_per_s_median": med(p["decode_per_s_median"] for p in peer),
       "payguard_decode_per_s_runs": [o["decode_per_s_median"] for o in ours],
       "iso_8583_decode_per_s_runs": [p["decode_per_s_median"] for p in peer],
       "ratio_payguard_over_iso_8583_runs": [o["decode_per_s_median"] / p["decode_per_s_median"]
                                             for o, p in zip(ours, peer)],
       "avg_peer_msg_bytes": o0["avg_peer_msg_bytes"], "peer_messages": peer[0]["messages"]}
dec["ratio_payguard_over_iso_8583"] = dec["payguard_decode_per_s_median"] / dec["iso_8583_decode_per_s_median"]
server, answered = {}, 0
for sync in ("normal", "full"):
    runs = []
    for r in range(1, reps + 1):
        l = json.load(open("%s/%s%d.json" % (work, sync, r)))
        cpu = int(open("%s/%s%d.cpu_us" % (work, sync, r)).read())
        answered += l["answered"]
        runs.append({"tps": l["tps"], "p50_us": l["p50_us"], "p99_us": l["p99_us"], "max_us": l["max_us"],
                     "answered": l["answered"], "errors": l["errors"],
                     "server_cpu_us_per_tx": cpu / max(1, l["answered"])})
    server[sync] = {"tps_median": med(x["tps"] for x in runs), "p50_us_median": med(x["p50_us"] for x in runs),
                    "p99_us_median": med(x["p99_us"] for x in runs),
                    "server_cpu_us_per_tx_median": med(x["server_cpu_us_per_tx"] for x in runs), "runs": runs}
server["answered"], server["stored"] = answered, stored
server["ratio_full_over_normal_tps"] = server["full"]["tps_median"] / server["normal"]["tps_median"]
load0 = [float(x) for x in open(work + "/load0").read().split()[:3]]
load1 = [float(x) for x in open("/proc/loadavg").read().split()[:3]]
res = {"bench": "pos", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": commit,
       "cpus": os.cpu_count(), "repeats": reps, "seconds": secs, "connections": 64,
       "loadavg_start": load0, "loadavg_end": load1,
       "config": {"peer": peercfg, "payguard": "release build, pos_bench pinned to core 0, CPU time of the thread",
                  "store": "SQLite %s file, group commit" % sqlite, "server": "pos serve, 64 connections of pos load, one request in flight each, loopback"},
       "batch": batch, "decode": dec, "server": server}
print("pos benchmark (seed 4) -- medians of %d rounds; load average %s at the start, %s at the end"
      % (reps, " ".join(map(str, load0)), " ".join(map(str, load1))))
print("  batch checks, one core (parse+lookup+distance+policy): %12.0f /CPU-s (target 2,000,000; wall %.0f /s; %d messages, %d cells, %d terminals)"
      % (batch["checks_per_s_median"], batch["checks_per_wall_s_median"], batch["messages"], batch["cells"], batch["terminals"]))
print("    decisions: %(in_place)d in place, %(moved)d moved, %(undetermined)d undetermined, %(unregistered)d unregistered" % batch["decisions"])
for sync in ("normal", "full"):
    s = server[sync]
    print("  server --sync %-6s 64 connections, loopback: %10.0f tx/s p50 %.0f us p99 %.0f us, server CPU %.1f us/tx; runs %s"
          % (sync, s["tps_median"], s["p50_us_median"], s["p99_us_median"], s["server_cpu_us_per_tx_median"],
             ", ".join("%.0f" % x["tps"] for x in s["runs"])))
print("    every answered transaction stored: %d answered, %d rows: %s" % (answered, stored, "yes" if stored >= answered else "NO"))
print("  decode, same messages (npm iso_8583 layout, %.0f bytes):" % dec["avg_peer_msg_bytes"])
print("    payguard  %12.0f msg/CPU-s" % dec["payguard_decode_per_s_median"])
print("    iso_8583  %12.0f msg/CPU-s   (peer: %s; %d messages)" % (dec["iso_8583_decode_per_s_median"], peercfg, dec["peer_messages"]))
print("    ratio     %12.1f x" % dec["ratio_payguard_over_iso_8583"])
path = "bench/results/pos-%s.json" % time.strftime("%Y%m%d-%H%M%S", time.gmtime())
json.dump(res, open(path, "w"), indent=1)
print("  written to " + path)
sys.exit(0 if stored >= answered else 1)
PY
