#!/usr/bin/env bash
# Upgrade jobs as the daemon drives them (issue 9): image_jobs_test runs a
# stop from the progress callback, the queued-job path, stale queued jobs
# and a new upgrade after the stop through the library; this script builds
# the image (mkfs.ext4 -d + sfdisk) and the 64 MiB package (dpkg-deb), then
# checks with real tools: the originals byte-identical, no overlay or
# .partial after the stop, qemu-img check and e2fsck -fn clean on the
# upgraded overlays, the big file identical. Then the CLI: queue + --job,
# the PROGRESS column, and SIGTERM mid-upgrade -> job interrupted.
# usage: jobs.sh IMAGE_JOBS_TEST
. "$(dirname "$0")/helpers.sh"
tester=${1:?usage: jobs.sh IMAGE_JOBS_TEST}
make_small_root "$work/root"
make_gpt_image "$work/root" "$work/disk.img" 320
cp --sparse=always "$work/disk.img" "$work/disk2.img"
make_big_deb "$work/big.deb" 64 none random
sha1=$(sha256sum <"$work/disk.img"); sha2=$(sha256sum <"$work/disk2.img")

"$tester" "$work" "$work/disk.img" "$work/disk2.img" "$work/big.deb" || fail "image_jobs_test"
[ "$(sha256sum <"$work/disk.img")" = "$sha1" ] || fail "original image changed"
[ "$(sha256sum <"$work/disk2.img")" = "$sha2" ] || fail "second image changed"
[ ! -e "$work/stopped.qcow2" ] && [ ! -e "$work/stopped.qcow2.partial" ] || fail "stopped job left files"
[ ! -e "$work/never.qcow2" ] || fail "refused job wrote an overlay"
# check_overlay OV: qemu-img check, e2fsck -fn, the big file and dpkg state
check_overlay() {
	local ov=$1
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
}
check_overlay "$work/ok.qcow2"
check_overlay "$work/again.qcow2"

# CLI: queue, run by --job, PROGRESS column
db=${PAYGUARD_STORE:-$work/jobs.db} # image_jobs_test's store too
job=$("$PAYGUARD" image queue --json --db "$db" "$work/disk.img" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["job"])')
"$PAYGUARD" image upgrade --db "$db" --job "$job" --output "$work/cli.qcow2" --deb "$work/big.deb" \
	>/dev/null 2>"$work/cli.err" || { cat "$work/cli.err"; fail "upgrade --job $job"; }
grep -q "upgrade: 100%" "$work/cli.err" || fail "no progress on stderr"
"$PAYGUARD" image jobs --db "$db" >"$work/jobs.txt"
grep -q PROGRESS "$work/jobs.txt" || fail "no PROGRESS column"
grep -E "^ *$job +.* done +100% " "$work/jobs.txt" >/dev/null || { cat "$work/jobs.txt"; fail "job $job not done 100%"; }
"$PAYGUARD" image queue --db "$db" /nonexistent.img 2>"$work/q.err" && fail "queue of an unknown image"
grep -q "no image" "$work/q.err" || fail "queue error message"

# SIGTERM mid-upgrade: the CLI stops cleanly, the job is interrupted
make_big_deb "$work/bigger.deb" 192 none random
"$PAYGUARD" image upgrade --db "$db" --output "$work/term.qcow2" --deb "$work/bigger.deb" \
	"$work/disk.img" >/dev/null 2>"$work/term.err" &
pid=$!
seen=
for _ in $(seq 600); do
	p=$("$PAYGUARD" image jobs --json --db "$db" | /usr/bin/python3 -c '
import json, sys
j = [x for x in json.load(sys.stdin) if x["overlay"] == sys.argv[1]]
print(j[0]["state"], j[0]["progress"] if j else "")' "$work/term.qcow2" 2>/dev/null || true)
	case $p in running\ 0.[1-9]*) seen=$p; break;; done*|failed*) cat "$work/term.err"; break;; esac
	sleep 0.05
done
[ -n "$seen" ] || fail "did not see the upgrade running past 10 % ($p)"
kill -TERM $pid
status=0; wait $pid || status=$?
[ $status -ne 0 ] || fail "SIGTERM: upgrade exited 0"
grep -q "stopped on request" "$work/term.err" || { cat "$work/term.err"; fail "SIGTERM message"; }
state=$("$PAYGUARD" image jobs --json --db "$db" | /usr/bin/python3 -c '
import json, sys
print([x for x in json.load(sys.stdin) if x["overlay"] == sys.argv[1]][0]["state"])' "$work/term.qcow2")
[ "$state" = interrupted ] || fail "SIGTERM: job is $state"
[ ! -e "$work/term.qcow2" ] && [ ! -e "$work/term.qcow2.partial" ] || fail "SIGTERM left an overlay"
[ "$(sha256sum <"$work/disk.img")" = "$sha1" ] || fail "original image changed by SIGTERM"
echo "jobs: stop flag, queued jobs, stale queue, progress, SIGTERM at '$seen' (exit $status): original intact, overlays clean"
