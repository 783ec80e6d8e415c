#!/usr/bin/env bash
# `payguard se sim --link TYPE --listen ADDR` for every driver in the table
# that has both roles: a simulated SE served on a UNIX socket by one process,
# `payguard se transmit` from another over the same link type; SELECT, ECHO
# (short and the longest the link allows), CPLC and the counter each time,
# then INITIALIZE UPDATE: the simulated SE is the GlobalPlatform card with its
# SCP03 ISD (issue 16: one card runtime), not a bare runtime.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

links=$("$pg" se links --json | /usr/bin/python3 -c '
import json, sys
print(" ".join(l["name"] for l in json.load(sys.stdin) if l["host"] and l["card"]))')
[ -n "$links" ] || fail "no link driver with both a host and a card role in the table"
n=0
for l in $links; do
	sock="$work/$l.sock"
	"$pg" se sim --link "$l" --listen "unix:$sock" --serial 0x0000C0DE --once \
		>"$work/sim-$l.log" 2>&1 &
	sim_pids+=($!)
	out=$("$pg" se transmit --link "$l" --addr "unix:$sock" --json \
		00A404000AF070617967756172640100 8010000010000102030405060708090A0B0C0D0E0F00 \
		00A4040000 80CA9F7F00 00700001 01A404000AF070617967756172640100 8112000008 \
		8050000008010203040506070800) ||
		{ cat "$work/sim-$l.log" >&2; fail "$l: se transmit"; }
	/usr/bin/python3 - "$l" "$out" <<'PY' || fail "$l: wrong answers"
import json, sys
link, d = sys.argv[1], json.loads(sys.argv[2])
sw = [e["sw"] for e in d["exchanges"]]
assert sw == [0x9000] * 8, (link, sw)
r = [bytes.fromhex(e["rapdu"]) for e in d["exchanges"]]
assert r[1][:16] == bytes(range(16)), link
assert r[3][:3] == b"\x9f\x7f\x2a" and r[3][15:19] == b"\x00\x00\xc0\xde", link
assert r[4] == b"\x90\x00", link  # case 1 open: T=0 carries it, no data
assert int.from_bytes(r[6][:8], "big") == 7, (link, r[6].hex())
# key diversification data (10), key version, SCP03 (i 70), card challenge, cryptogram, counter
assert len(r[7]) == 32 + 2 and r[7][11:13] == b"\x03\x70", (link, r[7].hex())
print("%s: ATR %s, 8 exchanges ok" % (link, d["atr"]))
PY
	wait "${sim_pids[-1]}" || fail "$l: sim exited with an error"
	n=$((n + 1))
done
echo "ok: $n link types served by se sim --listen: $links"
