#!/usr/bin/env bash
# Events benchmark (issue 15), on this machine, in one run:
#  1. POS tx/s with JetStream intake beside direct store intake. The same
#     messages and tool as bench/cluster/run.sh (`payguard pos load`, 64
#     connections, OpenCellID-shaped cells, 64 terminals) reach `payguard pos
#     serve` on a private PostgreSQL 15 (--sync normal), once writing the
#     store itself (--intake store) and once publishing to a private
#     three-node JetStream cluster (tests/fixtures/nats.sh: file storage, 3
#     replicas) with its sink storing into another database of the same
#     server (--intake jetstream), interleaved over REPEATS runs of SECONDS.
#     After each JetStream run the sink's drain time is measured (until the
#     stream is empty); afterwards every answered transaction must be stored.
#  2. Event publish latency: EVENTS events written to the outbox in one
#     transaction, then `payguard events relay` publishes them one by one
#     (synchronous publish, Nats-Msg-Id, acknowledgement) while a plain
#     NATS subscriber on payguard.> timestamps each arrival; the gaps between
#     arrivals are the per-event publish cycle (p50/p99), plus events/s.
# Printed and written to bench/results/events-DATE.json with the load average.
# Usage: bench/events/run.sh [REPEATS] [SECONDS] [EVENTS]   (defaults 3, 5, 2000)
set -euo pipefail
cd "$(dirname "$0")/../.."
repeats=${1:-3}
secs=${2:-5}
nevents=${3:-2000}
bash scripts/build.sh >/dev/null 2>&1 || bash scripts/build.sh
pg=$PWD/build/src/payguard
here=$PWD/bench/events
work=$(mktemp -d "${TMPDIR:-/tmp}/events-bench-XXXXXX")
chmod 0755 "$work"
srv=""
cleanup() {
	[ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
	bash tests/fixtures/nats.sh stop "$work/natsstate" >/dev/null 2>&1 || true
	bash tests/fixtures/postgres.sh stop "$work/pgstate" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

bash tests/fixtures/postgres.sh start "$work/pgstate" >/dev/null
bash tests/fixtures/nats.sh start "$work/natsstate" >/dev/null
urls=$(cat "$work/natsstate/nats.urls")
url=$(cat "$work/pgstate/postgres.url")
pgdir=$(cat "$work/pgstate/postgres.dir")
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
psqlq() { psql -X -A -t -h "$pgdir" -U payguard -d "${2:-payguard}" -c "$1"; }
# the same PostgreSQL settings as bench/cluster/run.sh
psqlq "ALTER SYSTEM SET shared_buffers = '1GB'" >/dev/null
psqlq "ALTER SYSTEM SET wal_buffers = '64MB'" >/dev/null
psqlq "ALTER SYSTEM SET max_wal_size = '8GB'" >/dev/null
psqlq "ALTER SYSTEM SET checkpoint_timeout = '30min'" >/dev/null
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
as_pg "$bindir/pg_ctl" -D "$pgdir/data" -w restart -l "$pgdir/server.log" >/dev/null
psqlq "CREATE DATABASE jsintake" >/dev/null
psqlq "CREATE DATABASE events" >/dev/null
url_js=${url/\/payguard\?//jsintake?}
url_ev=${url/\/payguard\?//events?}

# OpenCellID-shaped cells and one terminal per tenth site (as bench/cluster)
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
for db in "$url" "$url_js"; do
	$pg pos cells import "$work/cells.csv" --db "$db" --json >/dev/null
	$pg pos merchants import "$work/merchants.csv" --db "$db" --json >/dev/null
done

stream_msgs() {
	/usr/bin/python3 tests/fixtures/natsreq.py request "$urls" '$JS.API.STREAM.INFO.PAYGUARD_POS' |
		/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin).get("state", {}).get("messages", -1))'
}

# STANs differ per run (the load tool numbers from --stan-base), so no two
# runs' transactions share a key
run_one() { # mode rep
	local mode=$1 rep=$2 db=$url out="$work/$1-$2" extra=() base
	base=$(((rep - 1) * 100000))
	if [ "$mode" = jetstream ]; then
		db=$url_js
		extra=(--intake jetstream --nats "$urls" --node bench --commit-timeout-ms 5000)
	fi
	rm -f "$work/port"
	$pg --log-level warn pos serve --port 0 --port-file "$work/port" --db "$db" --sync normal \
		"${extra[@]}" 2>>"$work/server-$mode.log" &
	srv=$!
	for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
	$pg pos load --port "$(cat "$work/port")" --conns 64 --duration-ms $((secs * 1000)) \
		--stan-base "$base" --json "$work/tpl.jsonl" >"$out.json"
	local t0 drain=0 left=0
	t0=$(date +%s.%N)
	if [ "$mode" = jetstream ]; then
		for _ in $(seq 600); do
			left=$(stream_msgs)
			[ "$left" = 0 ] && break
			sleep 0.2
		done
		# printf: bc prints .3 for 0.3, which is no JSON number
		drain=$(printf '%.6f' "$(echo "$(date +%s.%N) - $t0" | bc)")
	fi
	kill "$srv"
	wait "$srv" || true
	srv=""
	echo "{\"drain_s\": $drain, \"left_in_stream\": $left}" >"$out.drain"
	echo "  $mode run $rep: $(tr -d '\n' <"$out.json" | cut -c1-110) drain ${drain}s" >&2
}
for rep in $(seq "$repeats"); do
	for mode in store jetstream; do run_one $mode "$rep"; done
done
stored_store=$(psqlq "SELECT count(*) FROM pos_txn")
stored_js=$(psqlq "SELECT count(*) FROM pos_txn" jsintake)
twice_js=$(psqlq "SELECT count(*) FROM (SELECT 1 FROM pos_txn GROUP BY tid, stan, f7 HAVING count(*) > 1) d" jsintake)

# event publish latency: the relay's publish cycle as a subscriber sees it
$pg events emit --db "$url_ev" --type bench.tick --subject bench --count "$nevents" >/dev/null
/usr/bin/python3 tests/fixtures/natsreq.py listen "$urls" 'payguard.>' "$nevents" 120 >"$work/arrivals" &
lst=$!
for _ in $(seq 100); do grep -q ready "$work/arrivals" 2>/dev/null && break; sleep 0.05; done
t0=$(date +%s.%N)
$pg --log-level warn events relay --db "$url_ev" --nats "$urls" 2>>"$work/relay.log" &
srv=$!
wait $lst
relay_s=$(echo "$(date +%s.%N) - $t0" | bc)
kill "$srv"
wait "$srv" || true
srv=""

pgver=$(psqlq "SHOW server_version")
natsver=$(nats-server --version 2>/dev/null | awk '{print $2}')
mkdir -p bench/results
/usr/bin/python3 - "$work" "$repeats" "$secs" "$stored_store" "$stored_js" "$twice_js" "$pgver" "$natsver" \
	"$nevents" "$relay_s" <<'PY'
import json, os, statistics, sys, time
work, reps, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
st_store, st_js, twice_js, pgver, natsver = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7], sys.argv[8]
nevents, relay_s = int(sys.argv[9]), float(sys.argv[10])
load = open("/proc/loadavg").read().split()[:3]
res = {"bench": "events", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
       "loadavg": [float(x) for x in load], "cpus": os.cpu_count(), "repeats": reps, "seconds": secs,
       "connections": 64, "postgres": {"version": pgver, "socket": "unix", "synchronous_commit": "off (--sync normal)"},
       "nats": {"server": natsver, "nodes": 3, "stream": "PAYGUARD_POS, file storage, 3 replicas"}, "pos": {}}
print("events bench (issue 15) -- medians of %d runs of %d s, 64 connections; load average %s"
      % (reps, secs, " ".join(load)))
answered = {}
for mode in ("store", "jetstream"):
    runs = []
    for r in range(1, reps + 1):
        j = json.load(open("%s/%s-%d.json" % (work, mode, r)))
        d = json.load(open("%s/%s-%d.drain" % (work, mode, r)))
        runs.append({"tps": j["tps"], "p50_us": j["p50_us"], "p99_us": j["p99_us"], "max_us": j["max_us"],
                     "answered": j["answered"], "drain_s": d["drain_s"], "left_in_stream": d["left_in_stream"],
                     "stored_per_s": j["answered"] / (secs + d["drain_s"])})
    answered[mode] = sum(x["answered"] for x in runs)
    med = lambda k: statistics.median(x[k] for x in runs)
    s = {"tps_median": med("tps"), "p50_us_median": med("p50_us"), "p99_us_median": med("p99_us"),
         "stored_per_s_median": med("stored_per_s"), "runs": runs}
    line = "  pos intake %-9s %8.0f tx/s answered  p50 %6.0f us  p99 %7.0f us" % (
        mode, s["tps_median"], s["p50_us_median"], s["p99_us_median"])
    if mode == "jetstream":
        s["drain_s_median"] = med("drain_s")
        line += "  sink drained %.1f s after the load: %.0f tx/s stored" % (s["drain_s_median"], s["stored_per_s_median"])
    res["pos"][mode] = s
    print(line)
ratio = res["pos"]["jetstream"]["tps_median"] / res["pos"]["store"]["tps_median"]
res["pos"]["jetstream_over_store"] = ratio
print("  jetstream/store answered tx/s ratio %.2f" % ratio)
ok = st_store >= answered["store"] and st_js >= answered["jetstream"] and twice_js == 0
res["pos"]["stored"] = {"store": st_store, "jetstream": st_js, "jetstream_twice": twice_js}
res["pos"]["answered"] = answered
print("  every answered transaction stored: store %d answered / %d rows, jetstream %d answered / %d rows"
      " (%d twice): %s" % (answered["store"], st_store, answered["jetstream"], st_js, twice_js, "yes" if ok else "NO"))
lines = [l for l in open(work + "/arrivals").read().split() if l != "ready"]
t = [float(x) for x in lines]
gaps = sorted((b - a) * 1e6 for a, b in zip(t, t[1:]))
if len(t) == nevents and gaps:
    q = lambda p: gaps[min(len(gaps) - 1, int(p * len(gaps)))]
    ev = {"events": nevents, "relay_seconds": relay_s, "events_per_s": nevents / relay_s,
          "publish_cycle_p50_us": q(0.50), "publish_cycle_p99_us": q(0.99), "publish_cycle_max_us": gaps[-1]}
    print("  event publish (relay, synchronous, R3 file stream): %d events in %.2f s = %.0f/s, per event"
          " p50 %.0f us  p99 %.0f us" % (nevents, relay_s, ev["events_per_s"], ev["publish_cycle_p50_us"],
                                         ev["publish_cycle_p99_us"]))
else:
    ev = {"events": nevents, "arrived": len(t), "error": "not every event arrived"}
    print("  event publish: only %d of %d events arrived" % (len(t), nevents))
    ok = False
res["event_publish"] = ev
path = "bench/results/events-%s.json" % time.strftime("%Y%m%d-%H%M%S", time.gmtime())
json.dump(res, open(path, "w"), indent=1)
print("  written to " + path)
sys.exit(0 if ok else 1)
PY
