#!/usr/bin/env bash
# The GP card in pcscd + Debian's vpcd (started by this test): opensc-tool
# selects the ISD and reads the CPLC and card recognition data, then a
# python3-pyscard script runs the payment flow (SELECT PPSE, SELECT AID, GPO,
# READ RECORD, GENERATE AC) and the PIN flow (VERIFY, key generation, SIGN
# checked with python3-cryptography). The card is restarted in between and
# must keep its ATC and PIN try counter. Fails, never skips, if a peer is missing.
helper=${1:?path of pg_gpcard_vpcd}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../se/common.sh"

start_gpcard() {
	"$helper" tcp:127.0.0.1:35963 "$1" "$work/card.nvm" >"$work/card.log" 2>&1 &
	sim_pids+=($!)
	for _ in $(seq 1 100); do
		if /usr/bin/python3 - "$READER" <<'PY' 2>/dev/null; then return 0; fi
import sys
from smartcard.System import readers
r = [x for x in readers() if str(x) == sys.argv[1]]
r[0].createConnection().connect()
PY
		sleep 0.1
	done
	cat "$work/card.log" >&2
	fail "pcscd never saw the GP card"
}

start_pcscd
start_gpcard 0A0B0C0D

idx=$(opensc-tool -l | awk -v r="$READER" 'index($0, r) {print $1; exit}')
[ -n "$idx" ] || fail "opensc-tool does not list '$READER'"
out=$(opensc-tool -r "$idx" -s 00A4040008A00000015100000000 -s 80CA9F7F00 -s 80CA006600 2>&1) ||
	fail "opensc-tool: $out"
echo "$out"
grep -q "9F 7F 2A" <<<"$out" || fail "opensc-tool: CPLC missing"
grep -q "66 31 73 2F 06 07 2A 86 48 86 FC 6B 01" <<<"$out" || fail "opensc-tool: card recognition data"

/usr/bin/python3 "$here/payment_pin.py" "$READER" first || fail "pyscard payment + PIN flow"

# Power cycle: stop the card, start it again on the same persistent memory.
kill "${sim_pids[-1]}"; wait "${sim_pids[-1]}" 2>/dev/null || true
start_gpcard 0A0B0C0D
/usr/bin/python3 "$here/payment_pin.py" "$READER" second || fail "pyscard flow after restart"
echo "ok: GP card in pcscd+vpcd: opensc-tool, pyscard payment and PIN flows, state kept across restart"
