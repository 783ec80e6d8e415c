#!/usr/bin/env bash
# Upgrade jobs of cluster nodes under a lease (issue 14), whole processes on
# SQLite and on the PostgreSQL fixture's server (a database of its own):
# node a runs a queued upgrade of a real image (mkfs.ext4 -d + sfdisk, a
# 96 MiB package from dpkg-deb) under a 1 s lease; while it runs for more
# than twice its lease node b never gets the job (the progress renews the
# lease). a is SIGKILLed mid-unpack; b gets nothing until a's lease
# expired, then takes the job over and finishes it. Then a node that only
# stalls (SIGSTOP) past its lease: b takes over and finishes, and a, woken
# up, stops with "taken over" and writes nothing. Each time: exactly one
# overlay per job and no .partial left, the job 'done' on node b with the
# take-over in its log, qemu-img check and e2fsck -fn clean, the package's
# file and dpkg state right in the overlay (debugfs, dpkg-query), and the
# original image byte-identical (SHA-256).
# usage: lease.sh POSTGRES_URL_FILE
. "$(dirname "$0")/helpers.sh"
urlfile=${1:?usage: lease.sh POSTGRES_URL_FILE}
make_small_root "$work/root"
make_gpt_image "$work/root" "$work/disk.img" 320
make_big_deb "$work/big.deb" 96 none random
sha=$(sha256sum <"$work/disk.img")
LEASE=1000

# jobfield DB JOB KEY: one field of a job from `image jobs --json`
jobfield() {
	"$PAYGUARD" image jobs --json --db "$1" | /usr/bin/python3 -c '
import json, sys
j = [x for x in json.load(sys.stdin) if x["id"] == int(sys.argv[1])][0]
v = j.get(sys.argv[2])
print("" if v is None else v)' "$2" "$3"
}
# run_node DB NODE OUT: upgrade --next as NODE in the background; $! is it
run_node() {
	"$PAYGUARD" image upgrade --db "$1" --next --node "$2" --lease-ms $LEASE --deb "$work/big.deb" \
		>"$3.out" 2>"$3.err" &
}
# wait_running DB JOB PID: until the job's progress passed 10 %
wait_running() {
	local p
	for _ in $(seq 600); do
		kill -0 "$3" 2>/dev/null || fail "runner $3 ended before 10 %: $(cat "$work"/*.err)"
		p=$(jobfield "$1" "$2" progress)
		case $p in 0.[1-9]*) return 0;; esac
		sleep 0.05
	done
	fail "job $2 never passed 10 % ($p)"
}
# throttle PID: runs PID at a quarter speed (SIGSTOP 150 ms, SIGCONT 50 ms)
# so that the upgrade outlasts several leases even on a fast machine; each
# stop is well below the lease, so the runner's progress still renews it.
throttle() {
	while kill -STOP "$1" 2>/dev/null; do
		sleep 0.15
		kill -CONT "$1" 2>/dev/null || break
		sleep 0.05
	done
}
# claim_fails DB: node b finds no free job (exit != 0, "no queued job")
claim_fails() {
	if "$PAYGUARD" image upgrade --db "$1" --next --node b --lease-ms $LEASE --deb "$work/big.deb" \
		>"$work/b-try.out" 2>"$work/b-try.err"; then
		fail "node b got a job under a live lease: $(cat "$work/b-try.err")"
	fi
	grep -q "no queued job" "$work/b-try.err" || { cat "$work/b-try.err"; fail "node b: unexpected error"; }
}
# take_over DB JOB: node b retries until a's lease expired, then finishes
take_over() {
	local t0=$SECONDS
	while :; do
		if "$PAYGUARD" image upgrade --db "$1" --next --node b --lease-ms $LEASE \
			--deb "$work/big.deb" >"$work/b.out" 2>"$work/b.err"; then
			break
		fi
		grep -q "no queued job" "$work/b.err" || { cat "$work/b.err"; fail "node b failed"; }
		[ $((SECONDS - t0)) -lt 20 ] || fail "node b never took job $2 over"
		sleep 0.2
	done
	grep -q "^job $2:" "$work/b.out" || { cat "$work/b.out"; fail "node b ran another job"; }
}
# check_job DB JOB: done on b, taken over, one overlay, clean and right
check_job() {
	local db=$1 job=$2 ov log
	[ "$(jobfield "$db" "$job" state)" = done ] || fail "job $job is $(jobfield "$db" "$job" state)"
	[ "$(jobfield "$db" "$job" node)" = b ] || fail "job $job done on node $(jobfield "$db" "$job" node)"
	log=$(jobfield "$db" "$job" log)
	grep -q "lease of node a expired; taken over by node b" <<<"$log" || { echo "$log"; fail "no take-over in the log"; }
	grep -q "removed the previous runner's partial overlay" <<<"$log" || { echo "$log"; fail "partial not removed"; }
	ov=$(jobfield "$db" "$job" overlay)
	[ "$(ls "$work/data/overlays" | grep -c "job$job\.")" = 1 ] || { ls -la "$work/data/overlays"; fail "job $job: not exactly one overlay file"; }
	[ -f "$ov" ] || fail "overlay $ov missing"
	qemu-img check "$ov" >"$work/check" 2>&1 || { cat "$work/check"; fail "qemu-img check $ov"; }
	extract_fs "$ov" "$work/up.fs" 320
	e2fsck -fn "$work/up.fs" >"$work/fsck" 2>&1 || { cat "$work/fsck"; fail "e2fsck -fn $ov"; }
	debugfs -R "dump /usr/share/bigdata/blob $work/blob.out" "$work/up.fs" >/dev/null 2>&1
	cmp -s "$work/blob.out" "$work/big.deb.blob" || fail "big file differs in $ov"
	rm -rf "$work/dump"; mkdir -p "$work/dump/var/lib"
	debugfs -R "rdump /var/lib/dpkg $work/dump/var/lib" "$work/up.fs" >/dev/null 2>&1
	[ "$(dpkg-query --admindir="$work/dump/var/lib/dpkg" -W -f='${Version} ${Status}' bigdata)" \
		= "2.0 install ok installed" ] || fail "dpkg state in $ov"
	rm -f "$work/up.fs" "$work/blob.out"
	[ "$(sha256sum <"$work/disk.img")" = "$sha" ] || fail "original image changed"
}

engine() {
	local db=$1 name=$2 a job t0 thr
	rm -rf "$work/data"
	"$PAYGUARD" image scan --db "$db" "$work/disk.img" >/dev/null || fail "$name: scan"
	# 1. node a dies (SIGKILL) mid-upgrade
	job=$("$PAYGUARD" image queue --json --db "$db" "$work/disk.img" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["job"])')
	run_node "$db" a "$work/a"; a=$!
	throttle $a & thr=$!
	t0=$SECONDS
	wait_running "$db" "$job" $a
	# a's progress keeps its lease alive for more than twice its length
	while [ $((SECONDS - t0)) -lt 3 ]; do claim_fails "$db"; sleep 0.3; done
	kill -0 $a 2>/dev/null || fail "$name: node a finished before the lease test ran long enough"
	kill $thr; wait $thr 2>/dev/null || true
	kill -CONT $a
	[ "$(jobfield "$db" "$job" state)" = running ] && [ "$(jobfield "$db" "$job" node)" = a ] \
		|| fail "$name: job $job not running on a"
	ls "$work/data/overlays/"*.a.partial >/dev/null || fail "$name: no partial overlay of node a"
	kill -KILL $a; wait $a 2>/dev/null || true
	claim_fails "$db" # a's lease still runs
	take_over "$db" "$job"
	check_job "$db" "$job"
	echo "$name: SIGKILLed node's job taken over and done by b"

	# 2. node a stalls (SIGSTOP) past its lease, then wakes up
	job=$("$PAYGUARD" image queue --json --db "$db" "$work/disk.img" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["job"])')
	run_node "$db" a "$work/a"; a=$!
	wait_running "$db" "$job" $a
	kill -STOP $a
	take_over "$db" "$job"
	kill -CONT $a
	status=0; wait $a || status=$?
	[ $status -ne 0 ] || fail "$name: the stalled node a finished job $job too"
	grep -q "taken over by another node" "$work/a.err" || { cat "$work/a.err"; fail "$name: a's message"; }
	check_job "$db" "$job"
	ls "$work/data/overlays" | grep -q partial && fail "$name: a partial overlay was left"
	echo "$name: stalled node's job taken over; a woke up and left it alone"
}

engine "$work/lease.db" sqlite
base=$(cat "$urlfile")
host=$(sed -n 's/.*[?&]host=\([^&]*\).*/\1/p' <<<"$base")
user=$(sed -n 's/.*[?&]user=\([^&]*\).*/\1/p' <<<"$base")
psql -X -q -h "$host" -U "$user" -d payguard -c "DROP DATABASE IF EXISTS image_lease" >/dev/null
psql -X -q -h "$host" -U "$user" -d payguard -c "CREATE DATABASE image_lease" >/dev/null
engine "postgresql:///image_lease?host=$host&user=$user" postgresql
psql -X -q -h "$host" -U "$user" -d payguard -c "DROP DATABASE IF EXISTS image_lease" >/dev/null
