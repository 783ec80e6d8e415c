#!/usr/bin/env bash
# `load estimate --vms` (and --json, --csv) list numbered VMs in numeric
# order: vm2 before vm10 (issue 13). The trace lists them in file order
# vm10, vm1, vm2, vm11, vm3 so neither input order nor strcmp passes.
set -euo pipefail
pg=${PAYGUARD:?}
fail() { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export PAYGUARD_DATA_DIR=$tmp/data
/usr/bin/python3 - "$tmp/fleet.csv" <<'PY'
import math, sys
with open(sys.argv[1], "w") as f:
    f.write("vm,timestamp_ms,cpu_pct,mem_pct,disk_read_kbps,disk_write_kbps,net_rx_kbps,net_tx_kbps\n")
    for k, vm in enumerate(["vm10", "vm1", "vm2", "vm11", "vm3"]):
        for t in range(60):
            x = 10 + 7 * k + 5 * math.sin(t / 5.0 + k)
            f.write(f"{vm},{t * 60000},{x:.3f},{x / 2:.3f},{x * 3:.3f},{x:.3f},{x * 4:.3f},{x * 2:.3f}\n")
PY
want="vm1 vm2 vm3 vm10 vm11"
"$pg" load estimate --source "csv:$tmp/fleet.csv" --k2 2 --vms --csv "$tmp/out.csv" --json >"$tmp/est.json"
got=$(/usr/bin/python3 -c 'import json,sys; print(" ".join(v["vm"] for v in json.load(open(sys.argv[1]))["vms"]))' "$tmp/est.json")
[ "$got" = "$want" ] || fail "--json order: $got"
got=$(tail -n +2 "$tmp/out.csv" | cut -d, -f1 | xargs)
[ "$got" = "$want" ] || fail "--csv order: $got"
"$pg" load estimate --source "csv:$tmp/fleet.csv" --k2 2 --vms >"$tmp/table"
got=$(awk '$1 ~ /^vm[0-9]+$/ {print $1}' "$tmp/table" | xargs)
[ "$got" = "$want" ] || { cat "$tmp/table"; fail "--vms table order: $got"; }
echo "load estimate: VMs in numeric order in the table, --json and --csv"
