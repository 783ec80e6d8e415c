#!/usr/bin/env bash
# Acceptance (fault): the upgrade is killed with SIGKILL at 60 seeded random
# points. Every time the original stays byte-identical, the store stays
# usable, a job is "done" only if its overlay is complete (qemu-img check
# clean), and no half-written overlay is left under its final name.
. "$(dirname "$0")/lib.sh"
here=$(dirname "$0")
mkdir -p "$work/debs"
for p in hostname mawk ncurses-base; do /usr/bin/python3 "$here/mkdeb.py" "$ROOT" $p "$work/debs" >/dev/null; done
args=(); for d in "$work"/debs/*.deb; do args+=(--deb "$d"); done
make_gpt_image "$ROOT" "$work/disk.img" 300
sha=$(sha256sum <"$work/disk.img")
"$PAYGUARD" image scan "$work/disk.img" >/dev/null
# full runs to learn how long an upgrade takes here (the fastest of three)
full_ms=999999
for r in 1 2 3; do
	t0=$(date +%s%N)
	"$PAYGUARD" image upgrade --output "$work/full$r.qcow2" "${args[@]}" "$work/disk.img" >/dev/null 2>&1 || fail "full run"
	t=$(( ($(date +%s%N) - t0) / 1000000 )); [ $t -lt $full_ms ] && full_ms=$t
	rm -f "$work/full$r.qcow2"
done
# Seeded kill points in [0, 90 %] of the fastest run; runs that finish
# before their kill still count as trials (and are checked), and trials go
# on until at least 50 processes were really killed mid-run. The PostgreSQL
# pass (PAYGUARD_STORE set, issue 14) checks the store side of a kill (the
# job's row, the store usable after it) with 15 kills in 20 trials: the 60
# points of the acceptance are about the overlay files, which no engine
# changes, and they would add some 6 minutes to CI.
min_killed=50 min_trials=60
[ -n "${PAYGUARD_STORE:-}" ] && min_killed=15 min_trials=20
trials=0 killed=0 finished=0
RANDOM=4242
while [ $killed -lt $min_killed ] || [ $trials -lt $min_trials ]; do
	trials=$((trials + 1)); i=$trials
	[ $trials -le 250 ] || fail "only $killed kills in 250 trials"
	ov=$work/ov$i.qcow2
	delay_ms=$(( RANDOM % (full_ms * 9 / 10 + 1) ))
	"$PAYGUARD" image upgrade --output "$ov" "${args[@]}" "$work/disk.img" >/dev/null 2>&1 &
	pid=$!
	sleep "$((delay_ms / 1000)).$(printf %03d $((delay_ms % 1000)))"
	# only a process that is still running (not a zombie) counts as killed
	if [ "$(ps -o stat= -p $pid 2>/dev/null | cut -c1)" != Z ] && kill -KILL $pid 2>/dev/null; then
		killed=$((killed + 1))
	fi
	status=0; wait $pid || status=$?
	[ "$(sha256sum <"$work/disk.img")" = "$sha" ] || fail "trial $i: original changed"
	"$PAYGUARD" image jobs --json >"$work/jobs.json" || fail "trial $i: store unusable"
	state=$(/usr/bin/python3 -c '
import json, sys
jobs = [j for j in json.load(open(sys.argv[1])) if j["overlay"] == sys.argv[2]]
print(jobs[0]["state"] if jobs else "none")' "$work/jobs.json" "$ov")
	case $state in
	done)
		# finished, or killed after the job was recorded (during exit)
		finished=$((finished + 1))
		qemu-img check "$ov" >/dev/null 2>&1 || fail "trial $i: done job with a bad overlay";;
	interrupted|none)
		[ $status -ne 0 ] || fail "trial $i: finished run not done ($state)"
		# the final name only ever holds a complete overlay
		if [ -e "$ov" ]; then qemu-img check "$ov" >/dev/null 2>&1 || fail "trial $i: partial overlay under the final name"; fi
		[ ! -e "$ov.partial" ] || fail "trial $i: interrupted job left $ov.partial";;
	*) fail "trial $i: unexpected state $state";;
	esac
	rm -f "$ov"
done
echo "fault: $trials SIGKILL trials ($killed killed mid-run, $finished ended as done jobs; fastest full run ${full_ms} ms): original intact, no half-written overlay reported"
