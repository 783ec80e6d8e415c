#!/usr/bin/env bash
# cgroup v2 collector. Where this machine has a writable cgroup v2 hierarchy,
# the test makes a parent with two child cgroups, runs a busy loop in one, and
# checks `load collect --source cgroup:PARENT` sees it busy and the other idle.
# Where it does not (no cgroup2 mount, or no permission), it says so and
# exercises the same code through the CLI on a cgroup tree laid out in a
# temporary folder, whose counters the test advances between polls.
set -euo pipefail
PAYGUARD=${PAYGUARD:?}
tmp=$(mktemp -d)
busy=
parent=
cleanup() {
	if [ -n "$busy" ]; then kill "$busy" 2>/dev/null || true; wait "$busy" 2>/dev/null || true; fi
	if [ -n "$parent" ]; then rmdir "$parent"/vm-busy "$parent"/vm-idle "$parent" 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT
export PAYGUARD_DATA_DIR=$tmp/data
db=${PAYGUARD_STORE:-$tmp/data/payguard.db}
storeq="/usr/bin/python3 $(dirname "$0")/../../fixtures/storeq.py" # sqlite3 or psql (issue 14: both engines)

cg2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
real=0
if [ -n "$cg2" ] && grep -qw cpu "$cg2/cgroup.controllers" 2>/dev/null &&
	mkdir "$cg2/pg-load-test-$$" 2>/dev/null; then
	parent=$cg2/pg-load-test-$$
	if echo "+cpu +memory +io" > "$parent/cgroup.subtree_control" 2>/dev/null &&
		mkdir "$parent/vm-busy" "$parent/vm-idle"; then
		real=1
	fi
fi
if [ "$real" = 1 ]; then
	echo "cgroup v2 at $cg2: testing on real cgroups"
	sh -c 'while :; do :; done' &
	busy=$!
	echo "$busy" > "$parent/vm-busy/cgroup.procs"
	"$PAYGUARD" load collect --source "cgroup:$parent" --interval 0.5 --count 3 --json
	busy_cpu=$($storeq query "$db" "SELECT MIN(cpu) FROM load_samples WHERE vm = 'vm-busy'")
	idle_cpu=$($storeq query "$db" "SELECT MAX(cpu) FROM load_samples WHERE vm = 'vm-idle'")
	echo "busy ${busy_cpu}% idle ${idle_cpu}%"
	awk -v b="$busy_cpu" -v i="$idle_cpu" 'BEGIN { exit !(b > 5 && i < 1) }'
	echo "cgroup collector (real cgroups): ok"
	exit 0
fi
echo "this machine does not allow creating cgroup v2 groups" \
	"(cgroup2 mount: '${cg2:-none}'); using a cgroup tree in a temporary folder"
root=$tmp/machine.slice
for vm in vm-a vm-b; do
	mkdir -p "$root/$vm"
	echo "usage_usec 0" > "$root/$vm/cpu.stat"
	echo "max 100000" > "$root/$vm/cpu.max"
	echo "268435456" > "$root/$vm/memory.current"
	echo "1073741824" > "$root/$vm/memory.max"
	echo "8:0 rbytes=0 wbytes=0 rios=0 wios=0 dbytes=0 dios=0" > "$root/$vm/io.stat"
done
mkdir -p "$root/not-a-cgroup" # no cpu.stat: ignored
# Advance vm-a's counters while the collector polls (1 s of CPU and 1 MiB read per 0.2 s).
(
	for k in $(seq 1 40); do
		echo "usage_usec $((k * 1000000))" > "$root/vm-a/cpu.stat.new"
		mv "$root/vm-a/cpu.stat.new" "$root/vm-a/cpu.stat"
		echo "8:0 rbytes=$((k * 1048576)) wbytes=0 rios=$k wios=0 dbytes=0 dios=0" > "$root/vm-a/io.stat.new"
		mv "$root/vm-a/io.stat.new" "$root/vm-a/io.stat"
		sleep 0.2
	done
) &
busy=$!
"$PAYGUARD" load collect --source "cgroup:$root" --interval 1 --count 4 --json
test "$($storeq query "$db" "SELECT COUNT(DISTINCT vm) FROM load_samples")" -eq 2
# vm-a burns 5 cores' worth on this machine's cores: clipped to 100 % where read.
test "$($storeq query "$db" "SELECT COUNT(*) FROM load_samples WHERE vm = 'vm-a' AND cpu = 100 AND disk_rd > 1000 AND ABS(mem - 25) < 0.01")" -eq 3
test "$($storeq query "$db" "SELECT COUNT(*) FROM load_samples WHERE vm = 'vm-b' AND cpu = 0 AND disk_rd = 0")" -eq 3
$storeq query "$db" "SELECT vm, ROUND(cpu), ROUND(mem), ROUND(disk_rd) FROM load_samples"
# systemd's escaped unit names are shown unescaped.
mkdir -p "$tmp/names/machine-qemu\\x2d1\\x2dweb.scope"
for f in "usage_usec 0:cpu.stat" "max 100000:cpu.max" "1:memory.current" "2:memory.max"; do
	echo "${f%%:*}" > "$tmp/names/machine-qemu\\x2d1\\x2dweb.scope/${f#*:}"
done
# a store of its own: the data directory's, or a new database on the PostgreSQL pass
db2=$($storeq fresh names "$tmp/d2/payguard.db")
PAYGUARD_DATA_DIR=$tmp/d2 PAYGUARD_STORE=${PAYGUARD_STORE:+$db2} "$PAYGUARD" load collect --source "cgroup:$tmp/names" --interval 0.2 --count 2
test "$($storeq query "$db2" "SELECT vm FROM load_samples")" = "qemu-1-web"
# An empty tree warns; a cgroup v1 hierarchy is refused with a message.
mkdir "$tmp/empty"
PAYGUARD_DATA_DIR=$tmp/d3 "$PAYGUARD" load collect --source "cgroup:$tmp/empty" --interval 0.1 --count 2 2> "$tmp/w1"
cat "$tmp/w1"
test "$(grep -c "no child cgroups with cpu.stat" "$tmp/w1")" -eq 1
mkdir "$tmp/v1"
touch "$tmp/v1/tasks" "$tmp/v1/cpuacct.usage" "$tmp/v1/cpu.cfs_quota_us"
if PAYGUARD_DATA_DIR=$tmp/d4 "$PAYGUARD" load collect --source "cgroup:$tmp/v1" --count 2 2> "$tmp/w2"; then exit 1; fi
cat "$tmp/w2"
grep -q "is a cgroup v1 hierarchy: payguard reads cgroup v2 only" "$tmp/w2"
v1=$(awk '$3 == "cgroup" { print $2; exit }' /proc/mounts)
if [ -n "$v1" ]; then # a real cgroup v1 mount, where the machine has one
	if "$PAYGUARD" load collect --source "cgroup:$v1" --count 2 2> "$tmp/w3"; then exit 1; fi
	grep -q "cgroup v1 hierarchy" "$tmp/w3"
fi
echo "cgroup collector (temporary tree): ok"
