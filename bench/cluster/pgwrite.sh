#!/usr/bin/env bash
# The PostgreSQL write path alone (issue 14): pgwrite (pgwrite.c) writes
# ROWS in-place transactions through the POS engine's batch writer in
# batches of each SIZE into a fresh database of a private PostgreSQL 15
# (tests/fixtures/postgres.sh, the settings of bench/cluster/run.sh,
# synchronous_commit on) and prints, per size, the backend's and the whole
# server's CPU microseconds per row, the writer's own (payguard's side),
# bytes of WAL per row and milliseconds per batch. With PREV=path/to/an/older/pg_pgwrite the older build runs
# interleaved with this one, each on its own database (its own schema):
# before and after in one run. REPEATS rounds; printed and written to
# bench/results/pgwrite-DATE.json with the load average. An older build:
# copy bench/cluster/{pgwrite.c,CMakeLists.txt} into a checkout of it (git
# worktree add), build target pg_pgwrite there and pass it as PREV.
# Usage: [PREV=BIN] bench/cluster/pgwrite.sh [REPEATS] [ROWS] [SIZE...]
#        (defaults 3, 131072, 64 512 4096)
set -euo pipefail
cd "$(dirname "$0")/../.."
repeats=${1:-3}
rows=${2:-131072}
shift 2 2>/dev/null || shift $#
sizes=${*:-64 512 4096}
bash scripts/build.sh >/dev/null 2>&1 || bash scripts/build.sh
bin=build/bench/cluster/pg_pgwrite
prev=${PREV:-}
[ -z "$prev" ] || [ -x "$prev" ] || { echo "PREV=$prev is not an executable" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/pgwrite-bench-XXXXXX")
chmod 0755 "$work"
cleanup() {
	bash tests/fixtures/postgres.sh stop "$work/pgstate" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
. bench/cluster/pgserver.sh
pg_bench_start "$work"

variants="this"
[ -n "$prev" ] && variants="prev this"
out="$work/lines"
: >"$out"
for r in $(seq "$repeats"); do
	for v in $variants; do
		b=$bin
		[ "$v" = prev ] && b=$prev
		db="w_${v}_$r"
		psqlq "CREATE DATABASE $db" >/dev/null
		# a checkpoint first: every variant starts with no page written since one
		psqlq "CHECKPOINT" >/dev/null
		"$b" "postgresql:///$db?host=$pgdir&user=payguard" "$rows" $sizes |
			sed "s/^{/{\"variant\": \"$v\", \"repeat\": $r, /" | tee -a "$out"
		psqlq "DROP DATABASE $db" >/dev/null
	done
done
mkdir -p bench/results
res=bench/results/pgwrite-$(date -u +%Y%m%d-%H%M%S).json
/usr/bin/python3 - "$out" "$(cut -d' ' -f1-3 /proc/loadavg)" "$variants" $sizes >"$res" <<'PY'
import sys, json, statistics
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
load, variants, sizes = sys.argv[2], sys.argv[3].split(), [int(s) for s in sys.argv[4:]]
res = {"load_average": load, "repeats": max(l["repeat"] for l in lines), "medians": []}
keys = ["backend_us_per_row", "server_us_per_row", "writer_us_per_row", "wal_bytes_per_row", "ms_per_batch", "rows_per_s"]
for s in sizes:
    for v in variants:
        xs = [l for l in lines if l["batch"] == s and l["variant"] == v]
        res["medians"].append(dict({"variant": v, "batch": s},
                                   **{k: round(statistics.median(x[k] for x in xs), 2) for k in keys}))
res["runs"] = lines
print(json.dumps(res, indent=1))
PY
/usr/bin/python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print("load average", r["load_average"])
print("%-6s %6s %12s %12s %12s %10s %10s %10s" % ("code", "batch", "backend us/r", "server us/r", "writer us/r", "WAL B/row", "ms/batch", "rows/s"))
for m in r["medians"]:
    print("%-6s %6d %12.2f %12.2f %12.2f %10.1f %10.3f %10.0f" % (m["variant"], m["batch"], m["backend_us_per_row"], m["server_us_per_row"], m["writer_us_per_row"], m["wal_bytes_per_row"], m["ms_per_batch"], m["rows_per_s"]))
' "$res"
echo "written: $res"
