#!/usr/bin/env bash
# Issue 13 item 8: a VSE exposed through pcscd + vsmartcard's vpcd never exits
# for what its reader sends (APDUs over 65,535 bytes, malformed ones), and
# its reader shows the card again after every restart (50 SIGKILLs).
# python3-pyscard drives pcscd (vpcd_robust.py). Starts its own pcscd
# (RESOURCE_LOCK pcscd; run by hand under `flock /tmp/pcscd.lock`); fails,
# never skips, when a peer is missing.
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
command -v pcscd >/dev/null || fail "pcscd is not installed (scripts/setup.sh installs it)"
/usr/bin/python3 -c 'import smartcard' 2>/dev/null || fail "python3-pyscard is not installed"
. "$src/scripts/se-pcscd.sh"
pcscd_check
pcscd -f >"$work/pcscd.log" 2>&1 &
pcscd_pid=$!
pcscd_ready "$pcscd_pid"
start_hv

"$pg" vse create --name robust --master $MASTER --link vpcd --slot 0 >/dev/null ||
	fail "create on vpcd slot 0"
/usr/bin/python3 "$src/tests/integration/vse/vpcd_robust.py" "$pg" robust "Virtual PCD 00 00" bad ||
	fail "oversized or malformed APDUs through pcscd"
/usr/bin/python3 "$src/tests/integration/vse/vpcd_robust.py" "$pg" robust "Virtual PCD 00 00" \
	restarts 50 || fail "card not back in its reader after a restart"
"$pg" vse destroy robust >/dev/null
echo "vse vpcd robustness: ok"
