#!/usr/bin/env bash
# SE OS integration test (issue 7), against real peers: `payguard seos serve`
# with four SEs of different link types attached while it runs (T=1 card,
# SWP UICC, SPI eSE as test SEs on UNIX sockets via endpoint files, and a
# real VSE -- `payguard vse serve` + `vse create --link vpcd` with the GP
# card's ARA-M, test and PPSE applets -- through pcscd + vpcd, found by PC/SC
# reader events and authenticated with the same master diversified by its
# CIN), plus one with wrong keys.
# Checks: SE list and readers, SCP03 rejection with its reason, cache miss ->
# hit -> version bump -> tampered record, ARA-M refusal and APDU filter, 32
# concurrent clients x 1000 APDUs with no cross-delivery, detach mid-session.
set -euo pipefail
clients=${1:?seos_clients helper}
. "$(dirname "$0")/../se/common.sh"

MK=404142434445464748494A4B4C4D4E4F
ECHO=A0000000041010
sock=$work/seos.sock
watch=$work/endpoints
db=$work/pg.db
dk=$work/device.key
log=$work/seos.log
mkdir -p "$watch"
printf 'master 30 %s\nmaster-cin 30 %s 50475653\n' "$MK" "$MK" >"$work/keys"
# the key store holds SCP03 keys in clear: one others can read is refused (issue 13)
chmod 644 "$work/keys"
if out=$("$pg" seos serve --socket "$work/refused.sock" --keys "$work/keys" 2>&1); then
	fail "seos serve ran with a 0644 key store"
fi
echo "$out" | grep -qF "permissions 0644 for '$work/keys' are too open; run: chmod 600 '$work/keys'" ||
	fail "key store message: $out"
chmod 600 "$work/keys"
serve_pid=""
stop_serve() { # stops the daemon; it must exit 0 with no sanitizer report
	local st=0
	if [ -n "$serve_pid" ]; then
		kill "$serve_pid" 2>/dev/null || true
		wait "$serve_pid" 2>/dev/null || st=$?
		serve_pid=""
		[ $st = 0 ] || { tail -30 "$log" >&2; echo "seos serve exited with $st" >&2; return 1; }
		! grep -q "Sanitizer" "$log" || { grep -A20 Sanitizer "$log" >&2; return 1; }
	fi
}
trap 'stop_serve || true; cleanup' EXIT

sim() { # sim NAME LINK SERIAL [extra args]
	local name=$1 link=$2 serial=$3; shift 3
	"$pg" seos sim --link "$link" --listen "unix:$work/$name.sock" --master "${SIM_MK:-$MK}" \
		--serial "$serial" "$@" >"$work/sim-$name.log" 2>&1 &
	sim_pids+=($!)
	eval "simpid_${name//-/_}=$!"
	for _ in $(seq 1 100); do [ -S "$work/$name.sock" ] && return 0; sleep 0.05; done
	fail "test SE $name did not start"
}
endpoint() { # endpoint NAME LINK  (atomic: written aside, renamed in)
	printf 'link=%s\naddr=unix:%s/%s.sock\nkind=sim\n' "$2" "$work" "$1" >"$watch/.$1.tmp"
	mv "$watch/.$1.tmp" "$watch/$1.se"
}
state_of() { "$pg" seos readers --socket "$sock" --json | /usr/bin/python3 -c '
import json, sys
for r in json.load(sys.stdin):
    if r["name"] == sys.argv[1]: print(r["state"])' "$1"; }
wait_state() { # wait_state NAME STATE
	for _ in $(seq 1 100); do [ "$(state_of "$1" 2>/dev/null)" = "$2" ] && return 0; sleep 0.1; done
	cat "$log" >&2; fail "$1 never became $2 (now: $(state_of "$1" 2>/dev/null || true))"
}
count_log() { grep -c -- "$1" "$log" || true; }
wait_log() { # wait_log PATTERN N
	for _ in $(seq 1 100); do [ "$(count_log "$1")" -ge "$2" ] && return 0; sleep 0.1; done
	cat "$log" >&2; fail "log never had $2 x '$1'"
}

# ARA-M rules for ese-spi: the echo application only for the client "wallet"
# (identity = uid + executable + declared name), with an APDU filter that
# allows INS 01 only; every other application for everyone.
exe=$(readlink -f "$pg")
wallet_sha1=$(printf 'uid=%s exe=%s app=wallet' "$(id -u)" "$exe" | sha1sum | cut -c1-40)
rules=$(/usr/bin/python3 - "$wallet_sha1" "$ECHO" <<'PY'
import sys
def tlv(t, v):
    tb = t.to_bytes(2 if t > 0xFF else 1, 'big')
    return tb + (bytes([len(v)]) if len(v) < 0x80 else bytes([0x81, len(v)])) + v
h, aid = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2])
r1 = tlv(0xE2, tlv(0xE1, tlv(0x4F, aid) + tlv(0xC1, h)) + tlv(0xE3, tlv(0xD0, bytes.fromhex('80010000FFFF0000'))))
r2 = tlv(0xE2, tlv(0xE1, tlv(0x4F, b'') + tlv(0xC1, b'')) + tlv(0xE3, tlv(0xD0, b'\x01')))
print(tlv(0xFF40, r1 + r2).hex())
PY
)

# --- the SEs' peers: three test SEs on sockets, one behind pcscd + vpcd, one with wrong keys ---
sim ese-t1 t1 11 # not 1: the first VSE's CPLC serial is 1 too
sim uicc-swp swp 2
sim ese-spi spi 3 --rules "$rules"
SIM_MK=000102030405060708090A0B0C0D0E0F sim bad-keys t1 5
# SEOS_IT_NO_PCSC=1 is for debugging while another pcscd holds the machine's
# socket: the run then ends in FAIL (incomplete), never in PASS.
nopcsc=${SEOS_IT_NO_PCSC:-0}
if [ "$nopcsc" != 1 ]; then
	start_pcscd
	# The VSE hypervisor, with its own data directory; the VSE dials vpcd slot 0.
	export PAYGUARD_DATA_DIR=$work/vse-data
	"$pg" vse serve --announce "$watch" >"$work/hv.log" 2>&1 &
	sim_pids+=($!)
	for _ in $(seq 1 100); do "$pg" vse list >/dev/null 2>&1 && break; sleep 0.1; done
	"$pg" vse list >/dev/null || { cat "$work/hv.log" >&2; fail "vse serve did not start"; }
	"$pg" vse create --name seos-vse --master "$MK" --link vpcd --slot 0 \
		--applet aram --applet test --applet ppse >"$work/vse-create.log" 2>&1 ||
		{ cat "$work/vse-create.log" "$work/hv.log" >&2; fail "vse create"; }
fi

# --- the daemon; SEs attach while it runs ---
"$pg" --log-level info seos serve --socket "$sock" --watch "$watch" --keys "$work/keys" \
	--pcsc --db "$db" --device-key "$dk" >"$log" 2>&1 &
serve_pid=$!
for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { cat "$log"; fail "seos serve did not start"; }
[ "$(stat -c %a "$dk")" = 600 ] || fail "device key mode is $(stat -c %a "$dk"), not 600"

endpoint ese-t1 t1
endpoint uicc-swp swp
endpoint ese-spi spi
endpoint bad-keys t1
endpoint nobody t1 # no SE listens there: unreachable
VSE="pcsc:$READER"
[ "$nopcsc" = 1 ] && VSE=uicc-swp
if [ "$nopcsc" != 1 ]; then
	# A second VSE exposed on a T=1 socket: the hypervisor announces it in
	# the watched directory (vse serve --announce), seos attaches it by name.
	"$pg" vse create --name vse-t1 --master "$MK" --link t1 --applet aram --applet test \
		>>"$work/vse-create.log" 2>&1 || { cat "$work/vse-create.log" "$work/hv.log" >&2; fail "vse create vse-t1"; }
	grep -q '^kind=vse$' "$watch/vse-t1.se" || fail "no announcement of vse-t1: $(cat "$watch/vse-t1.se" 2>&1)"
	grep -q '^link=t1$' "$watch/vse-t1.se" || fail "announcement of vse-t1: wrong link"
	wait_state vse-t1 authenticated
fi
for se in ese-t1 uicc-swp ese-spi "$VSE"; do wait_state "$se" authenticated; done
wait_state bad-keys rejected
wait_state nobody rejected
echo "four SEs authenticated (t1, swp, spi, VSE via pcsc/vpcd); bad-keys rejected"
if [ "$nopcsc" != 1 ]; then
	# It is the VSE (CIN "PGVS" || id, its ATR), authenticated with CIN-diversified keys.
	grep -q "SE 'pcsc:$READER' (pcsc, id .*) authenticated" "$log" || { cat "$log"; fail "no VSE authentication in the log"; }
	"$pg" vse show seos-vse --json | /usr/bin/python3 -c '
import json, sys
v = json.load(sys.stdin)
assert v["state"] == "running", v' || fail "the VSE is not running under the hypervisor"
fi

# --- wrong keys: reason in the log and in the SE list; unreachable for clients ---
grep -q "SE 'bad-keys' .* rejected: authentication failed" "$log" || { cat "$log"; fail "no rejection reason in the log"; }
"$pg" seos list --db "$db" --device-key "$dk" --json >"$work/list.json"
/usr/bin/python3 - "$work/list.json" "$nopcsc" <<'PY' || fail "SE list does not match"
import json, sys
rows = {r["name"]: r for r in json.load(open(sys.argv[1]))}
names = ["ese-t1", "uicc-swp", "ese-spi"] + (["pcsc:Virtual PCD 00 00"] if "pcsc:Virtual PCD 00 00" in rows else [])
assert len(names) == 4 or sys.argv[2] == "1", "the pcsc SE is missing"
for n in names:
    assert rows[n]["state"] == "authenticated" and rows[n]["apps"] == 3, rows[n]
assert {rows[n]["link"] for n in rows} >= {"t1", "swp", "spi"}
if sys.argv[2] != "1":
    v = rows["vse-t1"]  # the announced socket VSE: ARA-M + test applet
    assert v["state"] == "authenticated" and v["apps"] == 2 and v["link"] == "t1", v
b = rows["bad-keys"]
assert b["state"] == "rejected" and "authentication failed" in b["reason"], b
print("SE list:", ", ".join(f'{n}={r["state"]}' for n, r in sorted(rows.items())))
print("bad-keys reason:", b["reason"])
u = rows["nobody"]
assert u["state"] == "rejected" and "unreachable" in u["reason"], u
print("nobody reason:", u["reason"])
PY
if out=$("$pg" seos transmit --socket "$sock" --reader bad-keys --aid "$ECHO" 80010000020102 2>&1); then
	fail "a rejected SE answered a client"
fi
echo "$out" | grep -q "rejected" || fail "rejected SE: unclear error: $out"

# --- reachable through the client API ---
for se in ese-t1 uicc-swp; do
	r=$("$pg" seos transmit --socket "$sock" --reader "$se" --aid "$ECHO" 8001000003A1B2C300)
	[ "$r" = A1B2C39000 ] || fail "$se echo: '$r'"
done
if [ "$nopcsc" != 1 ]; then
	# The VSE's catalogue test applet (F0 "payguard" 01, ECHO = INS 10) through
	# seos's client API; the VSE's ARA-M has no stored rules: default ALWAYS.
	for se in "$VSE" vse-t1; do
		r=$("$pg" seos transmit --socket "$sock" --app anyone --reader "$se" --aid F0706179677561726401 8010000003A1B2C300)
		[ "$r" = A1B2C39000 ] || fail "$se echo: '$r'"
	done
fi
echo "client API: echo through t1, swp, the VSE on pcsc and the VSE on a t1 socket"

# --- access control (ARA-M rules of ese-spi) ---
r=$("$pg" seos transmit --socket "$sock" --app wallet --reader ese-spi --aid "$ECHO" 8001000002CAFE00)
[ "$r" = CAFE9000 ] || fail "wallet on ese-spi: '$r'"
set +e
out=$("$pg" seos transmit --socket "$sock" --app intruder --reader ese-spi --aid "$ECHO" 8001000002CAFE00 2>&1); rc=$?
set -e
[ $rc = 5 ] && echo "$out" | grep -q "access denied" || fail "intruder not refused on open-channel (rc $rc): $out"
echo "refused client: $out"
set +e
out=$("$pg" seos transmit --socket "$sock" --app wallet --reader ese-spi --aid "$ECHO" 8002000002CAFE00 2>&1); rc=$?
set -e
[ $rc = 5 ] && echo "$out" | grep -q "blocked by the access rule's filters" || fail "APDU filter did not block INS 02 (rc $rc): $out"
echo "filtered APDU: $out"

# --- cache: miss on first attach, hit on re-attach, version bump, tampered record ---
[ "$(count_log "SE 'ese-t1' .* from the SE, 11 APDUs")" = 1 ] || { cat "$log"; fail "first attach of ese-t1 was not a miss"; }
endpoint ese-t1 t1
wait_log "SE 'ese-t1' .* from the cache, 6 APDUs" 1
echo "ese-t1: miss 11 APDUs, then hit 6 APDUs (GET DATA CIN first: the key store has a master-cin entry)"
kill "$simpid_ese_t1"; wait "$simpid_ese_t1" 2>/dev/null || true
rm -f "$work/ese-t1.sock"
sim ese-t1 t1 11 --version 2
endpoint ese-t1 t1
wait_log "SE 'ese-t1' .* configuration v2 from the SE, 11 APDUs" 1
echo "ese-t1: version 2 -> fresh read"
sqlite3 "$db" "UPDATE seos_cache SET config = substr(config,1,12) || x'EE' || substr(config,14) WHERE id = (SELECT id FROM seos_se WHERE name='ese-t1')"
endpoint ese-t1 t1
wait_log "fails its MAC" 1
wait_log "SE 'ese-t1' .* configuration v2 from the SE, 11 APDUs" 2
endpoint ese-t1 t1
wait_log "SE 'ese-t1' .* configuration v2 from the cache, 6 APDUs" 1
echo "ese-t1: tampered record detected and refreshed, then a hit again"
wait_state ese-t1 authenticated

# --- 32 concurrent clients x 1000 APDUs, responses to the right client only ---
loadse=(ese-t1 uicc-swp)
"$clients" load "$sock" "$ECHO" 32 1000 "${loadse[@]}" || { tail -20 "$log"; fail "concurrent clients"; }

# --- detach mid-session: only that SE's sessions end ---
"$clients" detach "$sock" "$ECHO" ese-t1 uicc-swp "$watch/ese-t1.se" || { tail -20 "$log"; fail "detach"; }
[ "$(state_of ese-t1)" = detached ] || fail "ese-t1 not detached in readers"
"$pg" seos list --db "$db" --device-key "$dk" | grep -E "^ese-t1 .*detached" >/dev/null || fail "ese-t1 not detached in the SE list"
[ "$(state_of uicc-swp)" = authenticated ] || fail "uicc-swp affected by the detach"

# --- PC/SC card removal: the vpcd card goes away, reader event detaches it ---
if [ "$nopcsc" = 1 ]; then stop_serve || fail "daemon shutdown"; fail "incomplete: PC/SC parts skipped (SEOS_IT_NO_PCSC)"; fi
"$pg" vse stop vse-t1 >/dev/null || fail "vse stop vse-t1"
[ ! -e "$watch/vse-t1.se" ] || fail "announcement of the stopped vse-t1 not removed"
wait_state vse-t1 detached
echo "socket VSE stopped -> announcement removed -> detached"
"$pg" vse stop seos-vse >/dev/null || fail "vse stop"
wait_state "$VSE" detached
echo "VSE stopped by the hypervisor -> card gone from its reader -> detached"
# Started again: same CIN, same keys, same configuration version (GET DATA
# DF50 of the VSE's ISD, kept in its persistent memory) -> a cache hit.
[ "$(count_log "SE 'pcsc:$READER' .* from the SE, 11 APDUs")" = 1 ] || { cat "$log"; fail "first attach of the VSE was not one full read"; }
"$pg" vse start seos-vse >/dev/null || fail "vse start"
wait_log "SE 'pcsc:$READER' .* from the cache, 6 APDUs" 1
wait_state "$VSE" authenticated
r=$("$pg" seos transmit --socket "$sock" --app anyone --reader "$VSE" --aid F0706179677561726401 8010000002BEEF00)
[ "$r" = BEEF9000 ] || fail "VSE echo after restart: '$r'"
echo "VSE restarted -> re-attached from the cache (DF50 unchanged), reachable"
"$pg" vse stop seos-vse >/dev/null || fail "vse stop"
wait_state "$VSE" detached
stop_serve || fail "daemon shutdown"
echo "PASS"
