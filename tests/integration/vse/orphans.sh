#!/usr/bin/env bash
# Issue 13 item 6: no VSE outlives its hypervisor, and no VSE ever runs
# twice. The hypervisor (`payguard vse serve`, the daemon's vse worker) is
# SIGKILLed 20 times while a host runs payment transactions (each one
# advances the card's persistent ATC) against one VSE and SELECTs against
# another; a new hypervisor is started each time. Afterwards each VSE has
# exactly one process, the ATC never went backwards (no acknowledged write
# lost, no torn image), an applet instance installed before is still there,
# and SCP03 still opens. On the old code the VSEs survived (their uid change
# cleared the parent-death signal) and each restart added a second copy on
# the same persistent memory.
. "$(dirname "$0")/common.sh"
start_hv

sfx=$(basename "$work" | tr -dc 'a-z0-9' | tail -c 6)
A=orph-a-$sfx
B=orph-b-$sfx
"$pg" vse create --name $A --master $MASTER --link t1 --applet ppse --applet payment --applet pin \
	>/dev/null || fail "create $A"
"$pg" vse create --name $B --master $MASTER --link t0 >/dev/null || fail "create $B"
[ "$(sw $A --scp03 --master $MASTER "$(install_pin 0009)")" = 9000 ] || fail "INSTALL on $A"

SEL_PAY=00A4040007F050475041590100
GPO=80A80000128310$(printf '0%.0s' $(seq 1 32))00
GENAC=80AE80001D$(printf '0%.0s' $(seq 1 58))00
# atc: one payment transaction on A; prints the ATC of its cryptogram (or nothing)
atc() {
	"$pg" vse apdu $A $SEL_PAY $GPO $GENAC 2>/dev/null | tail -1 |
		grep -o '9F3602[0-9A-F]\{4\}' | cut -c7-10 || true
}

# procs NAME [pids]: how many processes run this VSE's image (or their pids)
procs() {
	/usr/bin/python3 - "$@" <<'PY'
import os, sys
name, n, pids = sys.argv[1], 0, []
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        a = open("/proc/%s/cmdline" % p, "rb").read().split(b"\0")
    except OSError:
        continue
    a = [x.decode(errors="replace") for x in a]
    if (len(a) >= 2 and os.path.basename(a[0]) == "payguard-vse" and a[1] == name) or \
            (len(a) >= 4 and a[1:4] == ["vse", "run-one", name]):
        n += 1
        pids.append(p)
print(" ".join(pids) if sys.argv[2:] == ["pids"] else n)
PY
}
# On failure nothing of this test may stay behind: the traffic and any VSE copy.
traffic=""
end_test() {
	touch "$work/stop"
	[ -z "$traffic" ] || kill "$traffic" 2>/dev/null || true
	stop_hv
	for p in $(procs $A pids) $(procs $B pids); do kill -9 "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap end_test EXIT

# both_running: until both VSEs run under the current hypervisor
both_running() {
	for _ in $(seq 1 150); do
		if [ "$(field $A state)" = running ] && [ "$(field $B state)" = running ]; then
			return 0
		fi
		sleep 0.1
	done
	fail "VSEs not running under the new hypervisor"
}

# Traffic: payment transactions on A, SELECTs on B, until told to stop.
: >"$work/atc.log"
(
	while [ ! -e "$work/stop" ]; do
		a=$(atc)
		[ -n "$a" ] && echo $((16#$a)) >>"$work/atc.log"
		"$pg" vse apdu $B $SEL_ISD >/dev/null 2>&1 || true
	done
) &
traffic=$!

for i in $(seq 1 20); do
	sleep 0.$((RANDOM % 4 + 2))
	kill -9 "$hv_pid"
	wait "$hv_pid" 2>/dev/null || true
	hv_pid=""
	start_hv
	both_running
	[ "$(procs $A)" = 1 ] && [ "$(procs $B)" = 1 ] ||
		fail "after SIGKILL $i: $(procs $A) processes of $A, $(procs $B) of $B (want 1 each)"
done
sleep 1
touch "$work/stop"
wait $traffic
traffic=""

n=$(wc -l <"$work/atc.log")
[ "$n" -ge 5 ] || fail "only $n transactions went through during the storm"
max=$(sort -n "$work/atc.log" | tail -1)
a=$(atc)
[ -n "$a" ] || fail "no transaction after the storm"
[ $((16#$a)) -gt "$max" ] || fail "ATC went back: $((16#$a)) after $max (persistent memory torn)"
[ "$(sw $A "$(select_pin 0009)")" = 9000 ] || fail "the PIN instance was lost"
[ "$(sw $A --scp03 --master $MASTER 80CA9F7F00)" = 9000 ] || fail "SCP03 after the storm"
r=$(sw $B $SEL_ISD)
# T=0: case 4 answers 61xx (GET RESPONSE follows)
[[ $r == 9000 || $r == 61?? ]] || fail "SELECT on $B after the storm: $r"
[ "$(procs $A)" = 1 ] && [ "$(procs $B)" = 1 ] || fail "not one process per VSE at the end"
stop_hv
[ "$(procs $A)" = 0 ] || fail "VSEs left after a clean hypervisor stop"
echo "vse orphans: ok ($n transactions, ATC $((16#$a)), 20 hypervisor SIGKILLs)"
