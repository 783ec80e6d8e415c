#!/usr/bin/env bash
# Prometheus collector against a real Prometheus (Debian's prometheus): a
# generated fleet with known types is turned into libvirt-exporter counters
# (OpenMetrics), backfilled with `promtool tsdb create-blocks-from
# openmetrics`, served by prometheus on a free loopback port, and estimated
# through query_range. Then an unreachable Prometheus gives a clear error.
set -euo pipefail
PAYGUARD=${PAYGUARD:?}
command -v prometheus >/dev/null && command -v promtool >/dev/null || {
	echo "prometheus/promtool missing: run scripts/setup.sh" >&2; exit 1; }
tmp=$(mktemp -d)
pid=
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT
n=60
"$PAYGUARD" load generate --vms $n --seed 5 --samples 720 --format csv --out "$tmp/fleet.csv" \
	--truth "$tmp/truth.csv"
end=$(( $(date +%s) / 60 * 60 - 7200 ))
start=$(( end - 719 * 60 ))
/usr/bin/python3 - "$tmp/fleet.csv" "$tmp/data.om" "$start" <<'PY'
import csv, sys
from collections import defaultdict
rows = defaultdict(list)
for r in csv.DictReader(open(sys.argv[1])):
    rows[r["vm"]].append(r)
start = int(sys.argv[3])
vcpus = {vm: 1 + i % 4 for i, vm in enumerate(sorted(rows))}
maxmem = {vm: (1 + i % 3) * 4 << 30 for i, vm in enumerate(sorted(rows))}
fams = [
  ("libvirt_domain_info_cpu_time_seconds", "counter", "", lambda vm, r: float(r["cpu_pct"]) / 100 * vcpus[vm] * 60),
  ("libvirt_domain_info_virtual_cpus", "gauge", "", None),
  ("libvirt_domain_info_maximum_memory_bytes", "gauge", "", None),
  ("libvirt_domain_info_memory_usage_bytes", "gauge", "", None),
  ("libvirt_domain_block_stats_read_bytes", "counter", ',target_device="vda"', lambda vm, r: float(r["disk_read_kbps"]) * 1024 * 60),
  ("libvirt_domain_block_stats_write_bytes", "counter", ',target_device="vda"', lambda vm, r: float(r["disk_write_kbps"]) * 1024 * 60),
  ("libvirt_domain_interface_stats_receive_bytes", "counter", ',target_device="vnet0"', lambda vm, r: float(r["net_rx_kbps"]) * 1024 * 60),
  ("libvirt_domain_interface_stats_transmit_bytes", "counter", ',target_device="vnet0"', lambda vm, r: float(r["net_tx_kbps"]) * 1024 * 60),
]
with open(sys.argv[2], "w") as out:
    for name, typ, extra, inc in fams:
        out.write(f"# TYPE {name} {typ}\n")
        for vm in sorted(rows):
            acc = 0.0
            for i, r in enumerate(rows[vm]):
                t = start + 60 * i
                if typ == "counter":
                    acc += inc(vm, r)
                    out.write(f'{name}_total{{domain="{vm}"{extra}}} {acc:.3f} {t}\n')
                elif name.endswith("virtual_cpus"):
                    out.write(f'{name}{{domain="{vm}"}} {vcpus[vm]} {t}\n')
                elif name.endswith("maximum_memory_bytes"):
                    out.write(f'{name}{{domain="{vm}"}} {maxmem[vm]} {t}\n')
                else:
                    out.write(f'{name}{{domain="{vm}"}} {float(r["mem_pct"]) / 100 * maxmem[vm]:.0f} {t}\n')
    out.write("# EOF\n")
PY
promtool tsdb create-blocks-from openmetrics "$tmp/data.om" "$tmp/tsdb" > "$tmp/promtool.log"
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'global:\n  scrape_interval: 1h\n' > "$tmp/prometheus.yml"
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/tsdb" \
	--storage.tsdb.retention.time=30d --web.listen-address="127.0.0.1:$port" \
	> "$tmp/prometheus.log" 2>&1 &
pid=$!
for _ in $(seq 1 120); do
	curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null && break
	kill -0 "$pid" 2>/dev/null || { cat "$tmp/prometheus.log"; exit 1; }
	sleep 0.5
done
curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null
"$PAYGUARD" load estimate --source "prometheus:http://127.0.0.1:$port,$start,$end,60" --json \
	> "$tmp/est.json"
# The same fleet read straight from its CSV file: what Prometheus returned must
# give (nearly) the same estimate; rate() over 4 steps smooths it a little.
"$PAYGUARD" load estimate --source "csv:$tmp/fleet.csv" --json > "$tmp/direct.json"
/usr/bin/python3 - "$tmp/est.json" "$tmp/direct.json" "$tmp/truth.csv" "$n" <<'PY'
import csv, json, sys
from sklearn.metrics import adjusted_rand_score
est = json.load(open(sys.argv[1]))
direct = {v["vm"]: v for v in json.load(open(sys.argv[2]))["vms"]}
truth = {r["vm"]: int(r["type"]) for r in csv.DictReader(open(sys.argv[3]))}
vms = est["vms"]
assert len(vms) == int(sys.argv[4]), len(vms)
assert all(v["samples"] >= 700 for v in vms), [v["samples"] for v in vms]
same = adjusted_rand_score([direct[v["vm"]]["type"] for v in vms], [v["type"] for v in vms])
dload = sum(abs(direct[v["vm"]]["load"] - v["load"]) for v in vms) / len(vms)
ari = adjusted_rand_score([truth[v["vm"]] for v in vms], [v["type"] for v in vms])
print(f"prometheus: {len(vms)} VMs, {vms[0]['samples']} samples each; types vs direct CSV "
      f"ARI {same:.3f}, mean |load diff| {dload:.2f}; vs generator truth ARI {ari:.3f}; "
      f"types {[t['name'] for t in est['types']]}")
assert same >= 0.8 and dload < 5 and ari >= 0.7
PY
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
# Unreachable Prometheus: the error names the URL; exit status is non-zero.
if "$PAYGUARD" load estimate --source "prometheus:http://127.0.0.1:$port" 2> "$tmp/e1"; then exit 1; fi
cat "$tmp/e1"
grep -q "prometheus 'http://127.0.0.1:$port'" "$tmp/e1"
echo "prometheus collector: ok"
