#!/usr/bin/env bash
# The simulated SE against the real PC/SC stack: this test starts pcscd and
# Debian's vpcd reader itself, plugs `payguard se sim --link vpcd` into it,
# then opensc-tool, a python3-pyscard script and payguard's own PC/SC host
# driver exchange APDUs with it; pcscd's APDU log must show the traffic.
# Fails (never skips) when pcscd, vpcd, opensc-tool or pyscard are missing.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

start_pcscd
start_card 0x11223344

# 1. opensc-tool (OpenSC's PC/SC client): SELECT, ECHO, CPLC from the ISD.
idx=$(opensc-tool -l | awk -v r="$READER" 'index($0, r) {print $1; exit}')
[ -n "$idx" ] || fail "opensc-tool does not list '$READER'"
out=$(opensc-tool -r "$idx" -s 00A404000AF070617967756172640100 \
	-s 8010000004CAFEF00D00 -s 00A4040008A00000015100000000 -s 80CA9F7F00 2>&1) ||
	fail "opensc-tool: $out"
echo "$out"
grep -q "CA FE F0 0D" <<<"$out" || fail "opensc-tool: ECHO data missing"
grep -q "9F 7F 2A" <<<"$out" || fail "opensc-tool: CPLC missing"
grep -q "SW: 9F 7F 2A .* 11 22 33 44 " "$work/pcscd.log" || fail "opensc-tool: CPLC serial missing"
[ "$(grep -c 'SW1=0x90, SW2=0x00' <<<"$out")" -eq 4 ] || fail "opensc-tool: not all 9000"

# 2. python3-pyscard.
/usr/bin/python3 "$here/pyscard_session.py" "$READER" 11223344 || fail "pyscard session"

# 3. payguard's own PC/SC host driver (libpcsclite), by name and by index.
"$pg" se transmit --link pcsc --addr "$READER" --json \
	00A404000AF070617967756172640100 80100000000000 8010000000FFFD 8012000008 \
	>"$work/transmit.json" || fail "payguard se transmit over pcsc"
/usr/bin/python3 - "$work/transmit.json" <<'PY' || fail "payguard pcsc host: wrong answers"
import json, sys
d = json.load(open(sys.argv[1]))
ex = d["exchanges"]
assert d["atr"].startswith("3b8a8001"), d["atr"]
assert [e["sw"] for e in ex] == [0x9000, 0x6700, 0x9000, 0x9000], [e["sw"] for e in ex]
# Case 2 extended, Ne = 65533: the longest answer vpcd's 2-byte length carries.
r = bytes.fromhex(ex[2]["rapdu"])
assert len(r) == 65535 and r[:4] == bytes([0, 1, 2, 3]), len(r)
print("payguard pcsc host: 4 exchanges ok, longest R-APDU %d bytes" % len(r))
PY
out=$("$pg" se transmit --link pcsc --addr 0 00A404000AF070617967756172640100 8012000008) ||
	fail "reader by index"
grep -q "\[9000: normal processing\]" <<<"$out" || fail "reader by index: $out"
set +e
msg=$("$pg" se transmit --link pcsc --addr "No Such Reader" 8012000008 2>&1); rc=$?
set -e
[ $rc -eq 4 ] || fail "unknown reader must exit 4, got $rc: $msg"
grep -q "no PC/SC reader 'No Such Reader'" <<<"$msg" || fail "unknown reader message: $msg"
# An empty slot: vpcd's second reader has no card.
set +e
msg=$("$pg" se transmit --link pcsc --addr "Virtual PCD 00 01" 8012000008 2>&1); rc=$?
set -e
[ $rc -ne 0 ] || fail "empty reader must fail"
grep -q "PC/SC 0x" <<<"$msg" || fail "PC/SC error must carry the original code: $msg"
echo "empty slot: $msg"

# 4. pcscd itself carried the traffic (its -a log shows the APDUs).
grep -q "APDU: 80 10 00 00 04 CA FE F0 0D" "$work/pcscd.log" || fail "pcscd log lacks the ECHO"
grep -q "SW: CA FE F0 0D 90 00" "$work/pcscd.log" || fail "pcscd log lacks the answer"
echo "ok: opensc-tool, pyscard and payguard's PC/SC driver talked to the simulated SE via pcscd+vpcd"
