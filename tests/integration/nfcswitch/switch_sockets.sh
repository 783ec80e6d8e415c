#!/usr/bin/env bash
# The NFC switch with its SEs as separate processes on SWP, T=1 and SPI over
# UNIX sockets: the routing table (registry from GET STATUS, the configured
# payment application of the SE without PPSE), then the switch serving its
# SWP slave port and `payguard nfcswitch simulate` playing the reader through
# the simulated NFC controller (card RF gate A): full transactions on every
# SE, unrouted APDUs with their exact status words.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
start_ses

# 1. The routing table, as JSON and as a table.
"$pg" nfcswitch routes --config "$work/switch.conf" --json >"$work/routes.json" ||
	fail "routes --json"
/usr/bin/python3 - "$work/routes.json" <<'PY' || fail "routing table"
import json, sys
d = json.load(open(sys.argv[1]))
ses = {s["name"]: s for s in d["ses"]}
assert [ses[n]["link"] for n in ("uicc", "ese", "sd")] == ["swp", "t1", "spi"], ses
assert all(s["registry"] == "get-status" and s["state"] == "up" for s in ses.values()), ses
apps = {a["aid"]: a for a in d["apps"]}
exp = {"A0000000041010": ("uicc", True, 2), "A0000000031010": ("ese", True, 1),
       "A0000000651010": ("sd", True, 3), "F0504754524E5301": ("uicc", False, 2),
       "F0504754524E5302": ("ese", False, 1)}
for aid, (se, pay, prio) in exp.items():
    a = apps[aid]
    assert (a["se"], a["payment"], a["priority"], a["route"]) == (se, pay, prio, "active"), a
assert len(apps) == 5, apps
print("routing table: 3 SEs, 5 applications, as expected")
PY
"$pg" nfcswitch routes --config "$work/switch.conf" | tee "$work/routes.txt"
grep -q "A0000000041010 *uicc *2 *07 *payment *MASTERCARD *active" "$work/routes.txt" ||
	fail "table row for MASTERCARD"

# 2. The switch on its slave port; the simulated controller and reader.
"$pg" nfcswitch serve --config "$work/switch.conf" --listen "unix:$work/switch.sock" --once \
	>"$work/switch.log" 2>&1 &
pids+=($!)
wait_socket "$work/switch.sock"
"$pg" nfcswitch simulate --connect "unix:$work/switch.sock" --script "$here/transactions.txt" \
	--json >"$work/sim.json" || fail "simulate: unexpected status words"
/usr/bin/python3 - "$work/sim.json" <<'PY' || fail "transcript"
import json, sys
d = json.load(open(sys.argv[1]))
t = d["transcript"]
assert d["failures"] == 0 and all(x["ok"] for x in t)
# The combined PPSE: VISA (1), MASTERCARD (2), JCB (3), in that order; no transit.
ppse = bytes.fromhex(t[0]["rapdu"])
order = [ppse.find(bytes.fromhex(a)) for a in ("A0000000031010", "A0000000041010", "A0000000651010")]
assert all(o > 0 for o in order) and order == sorted(order), order
assert ppse.find(bytes.fromhex("F0504754524E53")) < 0
assert bytes.fromhex("870101") in ppse and bytes.fromhex("870102") in ppse and bytes.fromhex("870103") in ppse
# Each SELECT AID was answered by the SE holding the applet (its FCI label).
def sel(aid):
    return next(bytes.fromhex(x["rapdu"]) for x in t if x["capdu"].startswith("00A40400") and aid in x["capdu"])
assert b"MASTERCARD" in sel("A0000000041010")
assert b"VISA" in sel("A0000000031010")
assert b"JCB" in sel("A0000000651010")
assert b"METRO" in sel("F0504754524E5301") and b"RAIL" in sel("F0504754524E5302")
# The debit on RAIL: 5000 - 1000.
deb = next(bytes.fromhex(x["rapdu"]) for x in t if x["capdu"].startswith("8054"))
assert deb == bytes.fromhex("00000FA09000"), deb.hex()
print("transcript: %d exchanges, every status word as expected" % len(t))
PY

# 3. Bad configuration: input rejected (exit 3) with the line named.
printf 'se a link=swp addr=unix:/x\napp a A0 payment\n' >"$work/bad.conf"
set +e
msg=$("$pg" nfcswitch routes --config "$work/bad.conf" 2>&1); rc=$?
set -e
[ $rc -eq 3 ] || fail "bad config must exit 3, got $rc: $msg"
grep -q "line 2" <<<"$msg" || fail "bad config message: $msg"
# 4. A simulated SE with a bad card profile: usage error (exit 2) naming the fault.
set +e
msg=$("$pg" nfcswitch sim --link swp --listen "unix:$work/bad.sock" --once \
	--app "payment:A0000000041010:VISA,DEBIT" 2>&1); rc=$?
set -e
[ $rc -eq 2 ] || fail "bad --app must exit 2, got $rc: $msg"
grep -q "without ','" <<<"$msg" || fail "bad --app message: $msg"
[ ! -S "$work/bad.sock" ] || fail "bad --app must not listen"
echo "nfcswitch sockets: ok"
