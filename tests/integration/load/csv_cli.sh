#!/usr/bin/env bash
# CSV collectors end to end through the CLI: a generated fleet written as
# Bitbrains GWA-T-12 files and as our plain CSV, three VMs broken on purpose
# (ragged line, non-numeric field, NaN, too few samples), then
# `load estimate` (table, --json, --csv, --png) and `load import` -> store.
# The broken VMs are named with file and line; the rest is still estimated
# and recovers the generator's types (ARI >= 0.9 with scikit-learn's ARI).
set -euo pipefail
PAYGUARD=${PAYGUARD:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export PAYGUARD_DATA_DIR=$tmp/data
db=${PAYGUARD_STORE:-$tmp/data/payguard.db}
storeq="/usr/bin/python3 $(dirname "$0")/../../fixtures/storeq.py" # sqlite3 or psql (issue 14: both engines)

"$PAYGUARD" load generate --vms 240 --seed 9 --samples 720 --format bitbrains \
	--out "$tmp/bb" --truth "$tmp/truth.csv"
# Break three VMs and add one with fewer samples than k1.
sed -i '5s/;[^;]*$//' "$tmp/bb/vm-000003.csv"          # ragged: 10 fields on line 5
sed -i '7s/^\([0-9]*\);/\1;x/' "$tmp/bb/vm-000010.csv" # non-numeric on line 7
sed -i '9s/;\t[0-9.]*$/;\tNaN/' "$tmp/bb/vm-000020.csv" # NaN on line 9
head -3 "$tmp/bb/vm-000030.csv" > "$tmp/bb/vm-short.csv"  # 2 samples < k1 = 3

"$PAYGUARD" load estimate --source "bitbrains:$tmp/bb" --json --csv "$tmp/est.csv" \
	--png "$tmp/est.png" > "$tmp/est.json" 2> "$tmp/err.txt"
cat "$tmp/err.txt"
grep -q "vm-000003.csv:5: 10 fields, expected 11" "$tmp/err.txt"
grep -q "vm-000010.csv:7: column 'CPU cores' is not a finite number" "$tmp/err.txt"
grep -q "vm-000020.csv:9: column 'Network transmitted throughput \[KB/s\]'" "$tmp/err.txt"
grep -q "VM 'vm-short': 2 samples, fewer than k1 = 3" "$tmp/err.txt"
head -c 8 "$tmp/est.png" | od -An -c | grep -q 'P   N   G'
test "$(wc -l < "$tmp/est.csv")" -eq 238   # header + 237 VMs

/usr/bin/python3 - "$tmp/est.json" "$tmp/truth.csv" "$tmp/est.csv" <<'PY'
import csv, json, sys
from sklearn.metrics import adjusted_rand_score
from scipy.stats import spearmanr
est = json.load(open(sys.argv[1]))
truth = {r["vm"]: r for r in csv.DictReader(open(sys.argv[2]))}
assert len(est["vms"]) == 237, len(est["vms"])
assert sorted(r["vm"] for r in est["rejected"]) == ["vm-000003", "vm-000010", "vm-000020", "vm-short"], est["rejected"]
t = [int(truth[v["vm"]]["type"]) for v in est["vms"]]
g = [v["type"] for v in est["vms"]]
ari = adjusted_rand_score(t, g)
rho = spearmanr([v["load"] for v in est["vms"]], [float(truth[v["vm"]]["heaviness"]) for v in est["vms"]]).correlation
print(f"bitbrains: {len(g)} VMs, ARI {ari:.3f}, Spearman {rho:.3f}, types {[x['name'] for x in est['types']]}")
assert ari >= 0.9 and rho >= 0.9
rows = list(csv.DictReader(open(sys.argv[3])))
assert {r["vm"] for r in rows} == {v["vm"] for v in est["vms"]}
PY

# Plain CSV: the same fleet, imported into the store, estimated from the store.
"$PAYGUARD" load generate --vms 120 --seed 9 --samples 720 --format csv --out "$tmp/fleet.csv"
"$PAYGUARD" load import --source "csv:$tmp/fleet.csv" --window 500 --json > "$tmp/imp.json"
grep -q '"vms": 120' "$tmp/imp.json"
grep -q '"samples": 60000' "$tmp/imp.json"
test "$($storeq query "$db" "SELECT COUNT(*) FROM load_samples")" -eq 60000
"$PAYGUARD" load estimate --source store: --k2 auto > "$tmp/table.txt"
cat "$tmp/table.txt"
grep -q "load over 120 VMs" "$tmp/table.txt"
# Table output from the CSV file directly agrees with the Bitbrains copy of the same VMs.
"$PAYGUARD" load estimate --source "csv:$tmp/fleet.csv" --json > "$tmp/csv.json"
/usr/bin/python3 - "$tmp/csv.json" "$tmp/truth.csv" <<'PY'
import csv, json, sys
from sklearn.metrics import adjusted_rand_score
est = json.load(open(sys.argv[1]))
truth = {r["vm"]: int(r["type"]) for r in csv.DictReader(open(sys.argv[2]))}
ari = adjusted_rand_score([truth[v["vm"]] for v in est["vms"]], [v["type"] for v in est["vms"]])
print(f"plain csv: {len(est['vms'])} VMs, ARI {ari:.3f}")
assert len(est["vms"]) == 120 and ari >= 0.9
PY
# Bad input at the command level: a missing folder and a bad header.
if "$PAYGUARD" load estimate --source bitbrains:/nonexistent 2> "$tmp/e1"; then exit 1; fi
grep -q "/nonexistent" "$tmp/e1"
printf 'vm,when,cpu\n' > "$tmp/bad.csv"
if "$PAYGUARD" load estimate --source "csv:$tmp/bad.csv" 2> "$tmp/e2"; then exit 1; fi
grep -q "bad.csv:1: header" "$tmp/e2"
# Faults far down long files, past runs the bulk row parser takes: named at
# their own line, non-zero exit, no crash (the test build runs under ASan).
/usr/bin/python3 - "$tmp" <<'PY'
import sys
t = sys.argv[1]
rows = ["%d.%03d,-%d.5,%d.25" % (i, i % 1000, i, i % 7) for i in range(3000)]
rows[2199] = "1.5,2.5,3x"
open(t + "/m.csv", "w").write("\n".join(rows) + "\n")
rows[2199] = "1.5,2.5,3"
rows[2499] = "1.5,2.5"
open(t + "/m2.csv", "w").write("\n".join(rows) + "\n")
rows[2499] = "1.5,2.5,3\0"
open(t + "/m3.csv", "w").write("\n".join(rows) + "\n")
hdr = "vm,timestamp_ms,cpu_pct,mem_pct,disk_read_kbps,disk_write_kbps,net_rx_kbps,net_tx_kbps\n"
body = ["vm-%d,%d,%d.5,50.25,1,2,3,4" % (i // 1500, 1372629804000 + 300000 * i, i % 100)
        for i in range(3000)]
body[2799] = "vm-1,1373469804000,10.5,-50.25,1,2,3,4"
open(t + "/neg.csv", "w").write(hdr + "\n".join(body) + "\n")
PY
if "$PAYGUARD" load kmeans --data "$tmp/m.csv" --k 3 2> "$tmp/e3"; then exit 1; fi
grep -q "m.csv:2200: field 3 is not a finite number" "$tmp/e3"
if "$PAYGUARD" load kmeans --data "$tmp/m2.csv" --k 3 2> "$tmp/e4"; then exit 1; fi
grep -q "m2.csv:2500: 2 fields, expected 3" "$tmp/e4"
if "$PAYGUARD" load kmeans --data "$tmp/m3.csv" --k 3 2> "$tmp/e5"; then exit 1; fi
grep -q "m3.csv:2500: NUL byte" "$tmp/e5"
"$PAYGUARD" load import --source "csv:$tmp/neg.csv" --json > "$tmp/imp2.json" 2> "$tmp/e6" || true
grep -q "neg.csv:2801: field 4 is negative" "$tmp/e6"
grep -q '"vms": 1' "$tmp/imp2.json"
echo "csv collectors: ok"
