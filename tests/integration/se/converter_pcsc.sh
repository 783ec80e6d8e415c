#!/usr/bin/env bash
# The converter with PC/SC interfaces: two simulated SEs plugged into pcscd
# through vpcd's two reader slots (ports 35963 and 35964), joined by
# `payguard se converter`; APDUs issued on each side reach the other SE
# with their logical channel mapped; then `payguard se demo --pcsc yes`
# runs every link type in the driver table plus PC/SC through the converter.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

start_pcscd
start_card 0xAAAA0001 35963
start_card 0xBBBB0002 35964

SEL=00A404000AF070617967756172640100
cat >"$work/script" <<EOS
open vp0 vp1
send 1 A $SEL
send 1 A 8010000004A1A2A3A400
send 1 B 80CA9F7F00
send 1 A 0070000001
send 1 A 01A4040000
send 1 A 81CA9F7F00
send 1 A 00708001
close 1
send 1 A $SEL
EOS
set +e
"$pg" se converter --iface "vp0=pcsc:Virtual PCD 00 00" --iface "vp1=pcsc:Virtual PCD 00 01" \
	--script "$work/script" >"$work/out" 2>&1
rc=$?
set -e
cat "$work/out"
# The last line sends on a closed channel: the run stops there with an error.
[ $rc -ne 0 ] || fail "a command on a closed channel must fail the script"
grep -q "error line 10: channel 1 is closed" "$work/out" || fail "closed-channel error"
grep -q "open     ch 1   vp0 <-> vp1" "$work/out" || fail "channel open not in transcript"
# vp0's basic channel maps to a channel the converter opened on vp1 (CLA 01).
grep -q "sent as 01 A4 04 00 0A F0" "$work/out" || fail "SELECT not mapped onto channel 1"
grep -q "A1 A2 A3 A4 90 00" "$work/out" || fail "ECHO through PC/SC missing"
# vp1 (side B) read vp0's CPLC: serial AAAA0001 at offset 12 of the value.
grep -A3 "vp1 -> vp0" "$work/out" | grep -q "9F 7F 2A .*AA AA 00 01" || fail "CPLC of vp0 missing"
# MANAGE CHANNEL through the channel: side A's channel 1 is vp1's channel 2; opened
# from a channel with the test applet it inherits it (7816-4), so select the ISD first.
grep -q "sent as 82 CA 9F 7F 00" "$work/out" || fail "second logical channel not mapped"
grep -q "9F 7F 2A .*BB BB 00 02" "$work/out" || fail "CPLC of vp1 missing"
grep -q "close    ch 1" "$work/out" || fail "close not in transcript"

# The demo with PC/SC required: every card+host link type plus pcsc via vpcd.
kill "${sim_pids[0]}" "${sim_pids[1]}" 2>/dev/null || true
wait "${sim_pids[0]}" "${sim_pids[1]}" 2>/dev/null || true
sim_pids=()
sleep 1 # vpcd notices the cards' departure
"$pg" se demo --pcsc yes >"$work/demo" 2>&1 || { cat "$work/demo"; fail "se demo --pcsc yes"; }
cat "$work/demo"
grep -q "attach   pcsc" "$work/demo" || fail "demo did not attach the PC/SC interface"
grep -Eq "^  pcsc +pcsc +[1-9][0-9]* APDUs" "$work/demo" || fail "no APDUs over PC/SC in the demo"
echo "ok: converter over PC/SC readers, and the demo with PC/SC"
