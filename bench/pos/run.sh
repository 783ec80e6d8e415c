#!/usr/bin/env bash
# pos benchmark (seed 4), one run, all figures side by side:
#  1. batch checks per second on one core (parse + cell lookup + distance + policy);
#  2. the server: transactions per second and p50/p99 latency, 64 connections on
#     loopback, every decision stored by group commit before it is answered;
#  3. the same messages decoded by payguard and by the npm package iso_8583
#     (run with /usr/bin/node), as a ratio.
# Usage: bench/pos/run.sh [MESSAGES] [CELLS]   (defaults 1000000, 200000)
set -euo pipefail
cd "$(dirname "$0")/../.."
msgs=${1:-1000000}
ncells=${2:-200000}
bash scripts/build.sh >/dev/null 2>&1 || bash scripts/build.sh
cmake --build build --target pos_bench >/dev/null
pg=build/src/payguard
[ -x "$pg" ] || pg=build/payguard
work=$(mktemp -d "${TMPDIR:-/tmp}/pos-bench-XXXXXX")
srv=""
cleanup() { [ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# the npm peer, installed from the lock file into the build directory
npmdir=build/pos-npm
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

# 1 + 3a: batch checks and payguard's decode of the peer layout
taskset -c 0 build/bench/pos/pos_bench --db "$db" --messages "$msgs" --runs 5 \
	--peer-out "$work/peer.hex" >"$work/ours.json"
# 3b: the peer on the same messages (the first 200000)
peer=$(NODE_PATH="$npmdir/node_modules" taskset -c 0 /usr/bin/node bench/pos/peer_decode.js "$work/peer.hex" 5)

# 2: the server, 64 connections, three runs of 5 s
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
$pg --log-level warn pos serve --port 0 --port-file "$work/port" --db "$db" 2>"$work/server.log" &
srv=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
port=$(cat "$work/port")
for r in 1 2 3; do
	c0=$(awk '{print $14+$15}' /proc/$srv/stat)
	$pg pos load --port "$port" --conns 64 --duration-ms 5000 --json "$work/tpl.jsonl" >"$work/load$r.json"
	c1=$(awk '{print $14+$15}' /proc/$srv/stat)
	echo $(( (c1 - c0) * 1000 / $(getconf CLK_TCK) )) >"$work/cpu$r"
done
kill "$srv"; wait "$srv" || true; srv=""
stored=$(sqlite3 "$db" "SELECT count(*) FROM pos_txn")
# the same with an fsync per group commit (--sync full: survives power loss)
rm -f "$work/port"
$pg --log-level warn pos serve --port 0 --port-file "$work/port" --db "$db" --sync full 2>>"$work/server.log" &
srv=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
$pg pos load --port "$(cat "$work/port")" --conns 64 --duration-ms 5000 --json "$work/tpl.jsonl" >"$work/loadfull.json"
kill "$srv"; wait "$srv" || true; srv=""

/usr/bin/python3 - "$work" "$peer" "$stored" <<'PY'
import json, sys, statistics
work, peer, stored = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
ours = json.load(open(work + "/ours.json"))
loads = [json.load(open("%s/load%d.json" % (work, r))) for r in (1, 2, 3)]
tps = statistics.median(l["tps"] for l in loads)
med = sorted(loads, key=lambda l: l["tps"])[1]
answered = sum(l["answered"] for l in loads)
cpu_ms = sum(int(open("%s/cpu%d" % (work, r)).read()) for r in (1, 2, 3))
print("pos benchmark (seed 4) -- medians; one machine, shared")
print("  batch checks, one core (parse+lookup+distance+policy): %12.0f /CPU-s (target 2,000,000; min %.0f max %.0f; wall %.0f /s; %d messages, %d cells, %d terminals)"
      % (ours["checks_per_s_median"], ours["checks_per_s_min"], ours["checks_per_s_max"], ours["checks_per_wall_s_median"], ours["messages"], ours["cells"], ours["terminals"]))
print("    decisions: %d in place, %d moved, %d undetermined, %d unregistered" % (ours["in_place"], ours["moved"], ours["undetermined"], ours["unregistered"]))
print("  server, 64 connections, loopback, group commit:          %12.0f tx/s (target 100,000) p50 %.0f us p99 %.0f us; runs %s"
      % (tps, med["p50_us"], med["p99_us"], ", ".join("%.0f" % l["tps"] for l in loads)))
print("    every answered transaction stored: %d answered, %d rows; server CPU %.1f us per transaction (%.0f tx per CPU-s)"
      % (answered, stored, 1000.0 * cpu_ms / answered, answered / (cpu_ms / 1000.0)))
full = json.load(open(work + "/loadfull.json"))
print("    with --sync full (fsync per batch): %.0f tx/s, p50 %.0f us, p99 %.0f us" % (full["tps"], full["p50_us"], full["p99_us"]))
print("  decode, same messages (npm iso_8583 layout, %.0f bytes):" % ours["avg_peer_msg_bytes"])
print("    payguard  %12.0f msg/CPU-s" % ours["decode_per_s_median"])
print("    iso_8583  %12.0f msg/CPU-s   (/usr/bin/node, %d messages)" % (peer["decode_per_s_median"], peer["messages"]))
print("    ratio     %12.1f x" % (ours["decode_per_s_median"] / peer["decode_per_s_median"]))
PY
