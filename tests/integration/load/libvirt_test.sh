#!/usr/bin/env bash
# libvirt collector through libvirt itself: the test driver (test:///FILE) with
# a node file describing 40 running domains, each with a disk and an
# interface. Debian 12's test driver fills only the state group in
# virConnectGetAllDomainStats, so the per-call fallback must supply cpu time,
# block and interface counters; we check that every domain's counters grow
# (positive rates), not exact values. Then: estimate from the store, and an
# unreachable URI gives a clear error.
set -euo pipefail
PAYGUARD=${PAYGUARD:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export PAYGUARD_DATA_DIR=$tmp/data
storeq="/usr/bin/python3 $(dirname "$0")/../../fixtures/storeq.py" # sqlite3 or psql (issue 14: both engines)
n=40
{
	echo "<node>"
	for i in $(seq 0 $((n - 1))); do
		printf "  <domain type='test'><name>dom-%03d</name>\n" "$i"
		printf "    <memory unit='KiB'>%d</memory><currentMemory unit='KiB'>%d</currentMemory>\n" \
			$((1048576 * (1 + i % 4))) $((524288 * (1 + i % 4)))
		printf "    <vcpu>%d</vcpu><os><type arch='x86_64'>hvm</type></os><devices>\n" $((1 + i % 4))
		printf "      <disk type='file' device='disk'><source file='/guest/d%d.img'/><target dev='vda' bus='virtio'/></disk>\n" "$i"
		printf "      <interface type='user'><mac address='52:54:00:00:%02x:%02x'/><target dev='vnet%d'/></interface>\n" \
			$((i / 256)) $((i % 256)) "$i"
		echo "    </devices></domain>"
	done
	echo "</node>"
} > "$tmp/node.xml"

"$PAYGUARD" --log-level info load collect --source "libvirt:test://$tmp/node.xml" \
	--interval 0.25 --count 4 --json > "$tmp/out.json" 2> "$tmp/err.txt"
cat "$tmp/out.json" "$tmp/err.txt"
grep -q '"samples": 120' "$tmp/out.json"
grep -q "used per-call functions" "$tmp/err.txt"
db=${PAYGUARD_STORE:-$tmp/data/payguard.db}
test "$($storeq query "$db" "SELECT COUNT(DISTINCT vm) FROM load_samples")" -eq $n
test "$($storeq query "$db" "SELECT COUNT(*) FROM load_samples")" -eq $((3 * n))
# Counters grow: every sample has positive CPU, disk and network rates.
test "$($storeq query "$db" "SELECT COUNT(*) FROM load_samples WHERE cpu > 0 AND disk_rd > 0 AND disk_wr > 0 AND net_rx > 0 AND net_tx > 0 AND mem > 0")" -eq $((3 * n))
# CPU percent is per provisioned vCPU: a domain with more vCPUs shows less.
$storeq query "$db" "SELECT vm, ROUND(CAST(AVG(cpu) AS NUMERIC), 1) FROM load_samples GROUP BY vm LIMIT 4"
"$PAYGUARD" load estimate --source store: --k2 2 > "$tmp/est.txt"
grep -q "load over $n VMs" "$tmp/est.txt"
# An unreachable libvirt: clear error naming the URI, non-zero exit.
if "$PAYGUARD" load collect --source "libvirt:qemu+tcp://127.0.0.1:1/system" --count 2 \
	--interval 0.1 2> "$tmp/e1"; then exit 1; fi
cat "$tmp/e1"
grep -q "libvirt 'qemu+tcp://127.0.0.1:1/system'" "$tmp/e1"
# The test driver's node XML file missing: "not found", naming the file
# (libvirt itself only says it failed to open it).
if "$PAYGUARD" load collect --source "libvirt:test://$tmp/no-such-node.xml" --count 2 \
	--interval 0.1 2> "$tmp/e2"; then exit 1; fi
cat "$tmp/e2"
grep -q "node XML file '$tmp/no-such-node.xml' not found" "$tmp/e2"
echo "libvirt collector: ok"
