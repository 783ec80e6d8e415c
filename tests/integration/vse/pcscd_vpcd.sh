#!/usr/bin/env bash
# A VSE exposed through PC/SC (seed 6 + issue 3's PC/SC acceptance): the test
# starts pcscd with Debian's vsmartcard-vpcd itself (se-pcsc's helper
# scripts/se-pcscd.sh; RESOURCE_LOCK pcscd), creates VSEs with
# `payguard vse create --link vpcd`, and checks that pcsc_scan sees their
# ATRs, that opensc-tool selects the ISD and reads the CPLC (with the VSE's
# serial), that python3-pyscard runs the payment and PIN flows (vse-card's
# script), that payguard installs an applet over SCP03 through pcscd, and
# that a VSE killed from outside comes back in its reader with its persistent
# memory (the applet, the ATC, the PIN try counter). Fails (never skips) when
# a peer is missing.
. "$(dirname "$0")/common.sh"
src=${PG_SOURCE_DIR:?}
pcscd_pid=""
stop_pcscd() {
	if [ -n "$pcscd_pid" ]; then
		kill "$pcscd_pid" 2>/dev/null || true
		wait "$pcscd_pid" 2>/dev/null || true
		pcscd_pid=""
	fi
}
trap 'stop_hv; stop_pcscd; rm -rf "$work"' EXIT
for t in pcscd opensc-tool pcsc_scan; do
	command -v $t >/dev/null || fail "$t is not installed (scripts/setup.sh installs it)"
done
. "$src/scripts/se-pcscd.sh"
pcscd_check
pcscd -f -a >"$work/pcscd.log" 2>&1 &
pcscd_pid=$!
pcscd_ready "$pcscd_pid"
start_hv

ATR_PREFIX="3B 8C 80 01 80 5A 50 47 56 53 45"
reader_idx() { opensc-tool -l 2>/dev/null | awk -v r="Virtual PCD 00 0$1" 'index($0, r) {print $1; exit}'; }
# wait_card SLOT: until opensc-tool reads an ATR in that reader
wait_card() {
	for _ in $(seq 1 100); do
		idx=$(reader_idx "$1")
		if [ -n "$idx" ] && opensc-tool -r "$idx" -a 2>/dev/null | grep -qi "3b:8c:80:01:80:5a\|3B 8C 80 01 80 5A"; then
			return 0
		fi
		sleep 0.1
	done
	fail "no card in 'Virtual PCD 00 0$1'"
}

"$pg" vse create --name p0 --master $MASTER --link vpcd --slot 0 --applet ppse --applet payment \
	--applet pin >/dev/null ||
	fail "create on vpcd slot 0"
"$pg" vse create --name p1 --master $MASTER --link vpcd --slot 1 >/dev/null ||
	fail "create on vpcd slot 1"
"$pg" vse create --name p0 --master $MASTER --link vpcd --slot 1 >/dev/null 2>&1 &&
	fail "a second VSE took slot 1"
wait_card 0
wait_card 1

# pcsc_scan sees both ATRs
timeout 20 pcsc_scan -n -t 3 >"$work/scan.txt" 2>&1 || true
[ "$(grep -c "ATR: $ATR_PREFIX" "$work/scan.txt")" -ge 2 ] || {
	cat "$work/scan.txt" >&2
	fail "pcsc_scan did not show both VSE ATRs"
}

# opensc-tool: SELECT ISD, GET DATA CPLC (IC serial = the VSE id), SELECT PPSE
idx=$(reader_idx 0)
out=$(opensc-tool -r "$idx" -s 00A4040008A00000015100000000 -s 80CA9F7F00 \
	-s 00A404000E325041592E5359532E444446303100 2>&1) || fail "opensc-tool: $out"
echo "$out"
[ "$(grep -c 'SW1=0x90, SW2=0x00' <<<"$out")" -eq 3 ] || fail "opensc-tool: not all 9000"
# python3-pyscard (vse-card's terminal script): the payment flow (SELECT PPSE,
# SELECT AID, GPO, READ RECORD, GENERATE AC) and the PIN flow on the VSE
/usr/bin/python3 "$src/tests/integration/vse-card/payment_pin.py" "Virtual PCD 00 00" first ||
	fail "pyscard payment + PIN flow on the VSE"
# payguard's PC/SC host opens SCP03 through pcscd and installs an applet
[ "$(sw p0 --scp03 --master $MASTER "$(install_pin 0007)")" = 9000 ] || fail "INSTALL over PC/SC"
# an authenticated SCP03 session at every security level through pcscd: GET
# STATUS (applications) must give the same data whatever protects it
plain=""
for level in 01 03 11 13 33; do
	r=$(resp p0 --scp03 --master $MASTER --level $level 80F24002024F00) ||
		fail "SCP03 level $level over PC/SC"
	[ "${r: -4}" = 9000 ] || fail "GET STATUS at level $level: $r"
	[ -n "$plain" ] || plain=$r
	[ "$r" = "$plain" ] || fail "level $level unwrapped to other data: $r vs $plain"
done
# a wrong master key is refused over PC/SC too
"$pg" vse apdu p0 --scp03 --master FFEEDDCCBBAA99887766554433221100 --level 33 80CA9F7F00 \
	>/dev/null 2>&1 && fail "wrong keys opened a session"
grep -q "9F 7F 2A" <<<"$out" || fail "opensc-tool: no CPLC"
grep -q "SW: 9F 7F 2A .* 00 00 00 01 " "$work/pcscd.log" || fail "CPLC without the VSE's serial"

# a VSE killed from outside is back in its reader, memory intact, p1 undisturbed
pid0=$(field p0 pid)
pid1=$(field p1 pid)
kill -9 "$pid0"
wait_restarted p0 "$pid0"
wait_card 0
# pcscd notices the removal and the re-insertion by polling: retry until it settles
for _ in $(seq 1 50); do
	out=$(opensc-tool -r "$(reader_idx 0)" -s "$(select_pin 0007)" 2>&1) && break
	sleep 0.2
done
grep -q "SW1=0x90, SW2=0x00" <<<"$out" || fail "persistent memory lost over a restart: $out"
# ... and the ATC and PIN try counter persisted across the crash
/usr/bin/python3 "$src/tests/integration/vse-card/payment_pin.py" "Virtual PCD 00 00" second ||
	fail "pyscard flow after the restart"
[ "$(field p1 pid)" = "$pid1" ] || fail "p1 was disturbed"

"$pg" vse destroy p0 >/dev/null
"$pg" vse destroy p1 >/dev/null
echo "vse pcscd/vpcd: ok"
