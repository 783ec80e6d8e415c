#!/usr/bin/env bash
# Cluster benchmark, first part (issue 14): POS intake with group commit on
# PostgreSQL beside SQLite, in one run, on this machine. The same messages
# from `payguard pos load` (64 connections on loopback, INFLIGHT requests
# outstanding on each) reach `payguard pos
# serve` on a SQLite file and on a private PostgreSQL 15 server (initdb +
# pg_ctl in a temporary folder, UNIX socket, synchronous_commit as --sync
# says), interleaved over REPEATS runs of SECONDS each, for --sync normal
# and --sync full. Printed and written to bench/results/cluster-DATE.json:
# tx/s and p50/p99 latency (medians), the server's and the load
# generator's CPU microseconds per transaction, PostgreSQL's CPU
# microseconds and bytes of WAL per
# transaction, the machine's load average. Every answered transaction must
# be stored: the rows are counted afterwards.
# With PREV=path/to/an/older/payguard, that binary runs interleaved with
# this one on the same stores ("prev-" keys in the JSON): before and after
# in one run (issue 18). The disk's fsync time is measured first (8 kB
# write + fdatasync where PostgreSQL keeps its WAL): with one request in
# flight per connection, --sync full cannot pass 64 / fsync time.
# INFLIGHT (default "1 16") lists the requests kept outstanding per
# connection (`pos load --inflight`, as a concentrator multiplexes
# terminals); each value is a run of its own, keyed ENGINE-SYNC for 1 and
# ENGINE-SYNC-inflightN otherwise. A PREV whose `pos load` has no
# --inflight runs its own load generator at 1 and this build's beside its
# server at the others (recorded as "prev_loader").
# Usage: [PREV=BIN] [INFLIGHT="1 16"] bench/cluster/run.sh [REPEATS] [SECONDS]   (defaults 5, 5)
set -euo pipefail
cd "$(dirname "$0")/../.."
repeats=${1:-5}
secs=${2:-5}
bash scripts/build.sh >/dev/null 2>&1 || bash scripts/build.sh
pg=build/src/payguard
prev=${PREV:-}
[ -z "$prev" ] || [ -x "$prev" ] || { echo "PREV=$prev is not an executable" >&2; exit 2; }
inflights=${INFLIGHT:-1 16}
for n in $inflights; do
	case $n in '' | *[!0-9]* | 0) echo "INFLIGHT: '$n' is not a whole number >= 1" >&2; exit 2 ;; esac
done
prev_inflight=0 # PREV's pos load takes --inflight
if [ -n "$prev" ]; then
	prevhelp=$("$prev" pos load --help 2>&1 || true)
	case $prevhelp in *--inflight*) prev_inflight=1 ;; esac
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/cluster-bench-XXXXXX")
chmod 0755 "$work"
srv=""
cleanup() {
	[ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
	bash tests/fixtures/postgres.sh stop "$work/pgstate" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

. bench/cluster/pgserver.sh
pg_bench_start "$work"

# OpenCellID-shaped cells and one terminal per tenth site (as bench/pos)
/usr/bin/python3 - "$work" <<'PY'
import sys, random, json
work = sys.argv[1]
random.seed(7)
tpl = []
with open(work + "/cells.csv", "w") as f, open(work + "/merchants.csv", "w") as m:
    f.write("radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal\n")
    m.write("terminal_id,merchant_id,lat,lon,uncertainty_m,limit_m,mcc,name\n")
    for s in range(20000):
        lat = 47.3 + 7.7 * random.random(); lon = 5.9 + 9.1 * random.random()
        for k in range(3):
            i = 3 * s + k
            f.write("LTE,262,1,%d,%d,,%.6f,%.6f,%d,10,1,1459692000,1700000000,\n"
                    % (1000 + s // 100, 100000 + i, lon + random.uniform(-0.003, 0.003),
                       lat + random.uniform(-0.002, 0.002), random.randint(300, 1500)))
        if s < 2000:
            m.write("T%07d,M%014d,%.6f,%.6f,50,2000,262,merchant %d\n" % (s, s, lat, lon, s))
            if s < 64:
                tpl.append({"0": "0200", "2": "4761739001010119", "3": "000000", "4": "000000001250",
                            "7": "1125120000", "11": "000000", "22": "071", "41": "T%07d" % s,
                            "42": "M%014d" % s, "49": "978",
                            "cell": {"serving": {"radio": "LTE", "mcc": 262, "mnc": 1, "area": 1000 + s // 100,
                                                 "cid": 100000 + 3 * s, "signal": -70}, "neighbours": []}})
with open(work + "/tpl.jsonl", "w") as t:
    for x in tpl:
        t.write(json.dumps(x) + "\n")
PY
sq="$work/bench.db"
for db in "$sq" "$url"; do
	$pg pos cells import "$work/cells.csv" --db "$db" --json >/dev/null
	$pg pos merchants import "$work/merchants.csv" --db "$db" --json >/dev/null
done

cpu_of() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# CPU ticks of every process of the private PostgreSQL (postmaster and children)
pg_cpu() {
	local pm t=0 p
	pm=$(head -1 "$pgdir/data/postmaster.pid")
	for p in $pm $(pgrep -P "$pm"); do t=$((t + $(cpu_of "$p"))); done
	echo $t
}
wal_lsn() { psqlq "SELECT pg_current_wal_lsn()"; }

# fdatasync of an 8 kB write, milliseconds, on the disk of the WAL
/usr/bin/python3 - "$pgdir" >"$work/fsync.json" <<'PY'
import os, sys, time, json, statistics
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
buf, ts, end = b"\0" * 8192, [], time.monotonic() + 2
while time.monotonic() < end:
    t = time.monotonic(); os.pwrite(fd, buf, 0); os.fdatasync(fd); ts.append(1e3 * (time.monotonic() - t))
os.close(fd); os.unlink(path)
print(json.dumps({"fsync_ms_median": statistics.median(ts), "fsync_ms_p90": sorted(ts)[int(0.9 * len(ts))], "n": len(ts)}))
PY

# the load generator's CPU seconds (user + system), from its own rusage
cat >"$work/cpuof.py" <<'PY'
import os, subprocess, sys
with open(sys.argv[1], "w") as out:
    p = subprocess.Popen(sys.argv[3:], stdout=out)
    _, status, ru = os.wait4(p.pid, 0)
open(sys.argv[2], "w").write("%.6f\n" % (ru.ru_utime + ru.ru_stime))
sys.exit(os.waitstatus_to_exitcode(status))
PY

run_one() { # variant engine sync rep inflight   (variant: "" this build, "prev-" PREV)
	local bin=$pg engine=$2 sync=$3 rep=$4 inf=$5 db=$sq key loader=$pg
	key=$2-$3
	[ "$inf" -eq 1 ] || key=$key-inflight$inf
	local out="$work/$1$key-$4" infopt=(--inflight "$inf")
	[ -n "$1" ] && bin=$prev && loader=$prev
	if [ -n "$1" ] && [ $prev_inflight -eq 0 ]; then
		# PREV's load generator knows one request in flight only
		if [ "$inf" -eq 1 ]; then infopt=(); else loader=$pg; fi
	fi
	[ "$engine" = postgres ] && db=$url
	rm -f "$work/port"
	$bin --log-level warn pos serve --port 0 --port-file "$work/port" --db "$db" --sync "$sync" \
		2>>"$work/server.log" &
	srv=$!
	for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
	local c0 p0 l0 c1 p1 l1
	c0=$(cpu_of $srv); p0=$(pg_cpu); l0=$(wal_lsn)
	/usr/bin/python3 "$work/cpuof.py" "$out.json" "$out.loadcpu" \
		$loader pos load --port "$(cat "$work/port")" --conns 64 "${infopt[@]}" \
		--duration-ms $((secs * 1000)) --json "$work/tpl.jsonl"
	c1=$(cpu_of $srv); p1=$(pg_cpu); l1=$(wal_lsn)
	kill "$srv"; wait "$srv" || true; srv=""
	local wal
	wal=$(psqlq "SELECT pg_wal_lsn_diff('$l1', '$l0')")
	echo "{\"cpu_ticks\": $((c1 - c0)), \"pg_cpu_ticks\": $((p1 - p0)), \"pg_wal_bytes\": $wal, \"load_cpu_s\": $(cat "$out.loadcpu")}" >"$out.cost"
	echo "  $1$key run $rep: $(cat "$out.json" | tr -d '\n' | cut -c1-120)" >&2
}
for rep in $(seq "$repeats"); do
	for inf in $inflights; do
		for sync in normal full; do
			for engine in sqlite postgres; do
				# each build first in every other repeat: the run after
				# another engine's (PostgreSQL's background work) is the slower
				if [ -n "$prev" ] && [ $((rep % 2)) -eq 0 ]; then
					run_one prev- $engine $sync $rep "$inf"
					run_one "" $engine $sync $rep "$inf"
				else
					run_one "" $engine $sync $rep "$inf"
					[ -z "$prev" ] || run_one prev- $engine $sync $rep "$inf"
				fi
			done
		done
	done
done
stored_sqlite=$(sqlite3 "$sq" "SELECT count(*) FROM pos_txn")
stored_pg=$(psqlq "SELECT count(*) FROM pos_txn")
pgver=$(psqlq "SHOW server_version")
mkdir -p bench/results
prevdesc=""
[ -z "$prev" ] || prevdesc="$prev $("$prev" --version 2>/dev/null | head -1 || true)"
/usr/bin/python3 - "$work" "$repeats" "$stored_sqlite" "$stored_pg" "$(getconf CLK_TCK)" "$pgver" "$secs" "$prevdesc" "$(git rev-parse --short HEAD)" "$inflights" "$prev_inflight" <<'PY'
import json, os, statistics, sys, time
work, reps, st_sq, st_pg, hz, pgver, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], int(sys.argv[7])
prev, head = sys.argv[8], sys.argv[9]
inflights, prev_inflight = [int(x) for x in sys.argv[10].split()], sys.argv[11] == "1"
variants = ["", "prev-"] if prev else [""]
load = open("/proc/loadavg").read().split()[:3]
res = {"bench": "cluster/pos-intake", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
       "loadavg": [float(x) for x in load], "cpus": os.cpu_count(), "repeats": reps, "seconds": secs,
       "connections": 64, "inflight": inflights, "postgres": {"version": pgver, "socket": "unix", "synchronous_commit": "--sync full: on, normal: off",
       "shared_buffers": "1GB", "wal_buffers": "64MB", "max_wal_size": "8GB"}, "runs": {},
       "commit": head, "disk": json.load(open(work + "/fsync.json"))}
if prev:
    res["prev"] = prev
    res["prev_loader"] = ("PREV's own pos load" if prev_inflight else
                          "PREV's own pos load at inflight 1 (it has no --inflight), this build's at the others")
fs = res["disk"]["fsync_ms_median"]
answered = {"sqlite": 0, "postgres": 0}
print("cluster bench (issue 14): POS intake, 64 connections, %s in flight on each, group commit -- medians of %d runs of %d s; load average %s"
      % ("/".join(map(str, inflights)), reps, secs, " ".join(load)))
print("  disk: fdatasync of 8 kB %.2f ms (median), so --sync full is bounded by 64 / %.2f ms = %.0f tx/s"
      % (fs, fs, 64e3 / fs))
for inf, sync, engine, v in [(i, s, e, v) for i in inflights for s in ("normal", "full") for e in ("sqlite", "postgres") for v in variants]:
        runs = []
        key = "%s-%s" % (engine, sync) + ("" if inf == 1 else "-inflight%d" % inf)
        for r in range(1, reps + 1):
            j = json.load(open("%s/%s%s-%d.json" % (work, v, key, r)))
            c = json.load(open("%s/%s%s-%d.cost" % (work, v, key, r)))
            answered[engine] += j["answered"]
            n = max(j["answered"], 1)
            runs.append({"tps": j["tps"], "p50_us": j["p50_us"], "p99_us": j["p99_us"], "answered": j["answered"],
                         "server_cpu_us_per_tx": 1e6 * c["cpu_ticks"] / hz / n,
                         "load_cpu_us_per_tx": 1e6 * c["load_cpu_s"] / n, "errors": j["errors"],
                         "pg_cpu_us_per_tx": 1e6 * c["pg_cpu_ticks"] / hz / n if engine == "postgres" else None,
                         "pg_wal_bytes_per_tx": c["pg_wal_bytes"] / n if engine == "postgres" else None})
        med = lambda k: statistics.median(x[k] for x in runs)
        s = {"inflight": inf, "tps_median": med("tps"), "p50_us_median": med("p50_us"), "p99_us_median": med("p99_us"),
             "server_cpu_us_per_tx_median": med("server_cpu_us_per_tx"),
             "load_cpu_us_per_tx_median": med("load_cpu_us_per_tx"), "runs": runs}
        line = "  %-13s --sync %-6s x%-3d %9.0f tx/s  p50 %6.0f us  p99 %7.0f us  server %.1f us CPU/tx  load %.1f" % (
            v + engine, sync, inf, s["tps_median"], s["p50_us_median"], s["p99_us_median"],
            s["server_cpu_us_per_tx_median"], s["load_cpu_us_per_tx_median"])
        if engine == "postgres":
            s["pg_cpu_us_per_tx_median"] = med("pg_cpu_us_per_tx")
            s["pg_wal_bytes_per_tx_median"] = med("pg_wal_bytes_per_tx")
            line += "  postgres %.1f us CPU/tx, %.0f B WAL/tx" % (s["pg_cpu_us_per_tx_median"], s["pg_wal_bytes_per_tx_median"])
        res["runs"][v + key] = s
        print(line)
for inf in inflights:
    for sync in ("normal", "full"):
        k = sync + ("" if inf == 1 else "-inflight%d" % inf)
        a, b = res["runs"]["postgres-" + k]["tps_median"], res["runs"]["sqlite-" + k]["tps_median"]
        print("  --sync %-6s x%-3d postgres/sqlite ratio %.2f" % (sync, inf, a / b))
res["stored"] = {"sqlite": st_sq, "postgres": st_pg}
res["answered"] = answered
ok = st_sq >= answered["sqlite"] and st_pg >= answered["postgres"]
print("  every answered transaction stored: sqlite %d answered / %d rows, postgres %d answered / %d rows: %s"
      % (answered["sqlite"], st_sq, answered["postgres"], st_pg, "yes" if ok else "NO"))
path = "bench/results/cluster-%s.json" % time.strftime("%Y%m%d-%H%M%S", time.gmtime())
json.dump(res, open(path, "w"), indent=1)
print("  written to " + path)
sys.exit(0 if ok else 1)
PY
