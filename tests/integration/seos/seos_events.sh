#!/usr/bin/env bash
# SE events (issue 15): `seos serve` writes payguard.se.authenticated when an
# attached SE passes SCP03 mutual authentication and payguard.se.rejected
# (with the reason) when it fails or cannot be reached, in the transaction
# of its SE list row. Test SEs on T=1 UNIX sockets (`seos sim`), no pcscd;
# the store is a SQLite file, or with an argument (the PostgreSQL fixture's
# URL file) a database of that server. No key material in any event; a
# detach emits none.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../se/common.sh"
if [ $# -ge 1 ]; then
	. "$here/../../fixtures/pg_db.sh"
	pg_test_db seos_evtest
	store=$PGT_URL
else
	store=$work/store.db
fi

MK=404142434445464748494A4B4C4D4E4F
BADK=505152535455565758595A5B5C5D5E5F
sock=$work/seos.sock
watch=$work/endpoints
dk=$work/device.key
log=$work/seos.log
mkdir -p "$watch"
printf 'master 30 %s\n' "$MK" >"$work/keys"
chmod 600 "$work/keys"
serve_pid=""
stop_serve() {
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

sim() { # sim NAME SERIAL MASTER
	"$pg" seos sim --link t1 --listen "unix:$work/$1.sock" --master "$3" --serial "$2" \
		>"$work/sim-$1.log" 2>&1 &
	sim_pids+=($!)
	for _ in $(seq 1 100); do [ -S "$work/$1.sock" ] && return 0; sleep 0.05; done
	fail "test SE $1 did not start"
}
endpoint() { # endpoint NAME [SOCKET]
	printf 'link=t1\naddr=unix:%s/%s.sock\nkind=sim\n' "$work" "${2:-$1}" >"$watch/.$1.tmp"
	mv "$watch/.$1.tmp" "$watch/$1.se"
}
ob() { /usr/bin/python3 "$here/../events/outbox.py" "$store" payguard.se.; }
events() { ob | cut -d' ' -f1,2; }
wait_events() { # wait_events N
	for _ in $(seq 1 100); do [ "$(events | wc -l)" -ge "$1" ] && return 0; sleep 0.1; done
	cat "$log" >&2
	fail "the outbox never had $1 SE events: $(events)"
}
# data N KEY: field KEY of the N-th SE event's data
data() {
	ob | sed -n "${1}p" | cut -d' ' -f3- | /usr/bin/python3 -c '
import json, sys
v = json.load(sys.stdin).get(sys.argv[1])
print("" if v is None else v)' "$2"
}

sim se-ok 31 "$MK"
sim se-bad 32 "$BADK"
"$pg" --log-level info seos serve --socket "$sock" --watch "$watch" --keys "$work/keys" \
	--db "$store" --device-key "$dk" >"$log" 2>&1 &
serve_pid=$!
for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { cat "$log"; fail "seos serve did not start"; }

endpoint se-ok
wait_events 1
[ "$(events)" = "payguard.se.authenticated se-ok" ] || fail "attach: $(events)"
[ "$(data 1 name)" = se-ok ] && [ "$(data 1 link)" = t1 ] && [ "$(data 1 version)" = 1 ] &&
	[ "$(data 1 apps)" = 3 ] && [ "$(data 1 cache)" = False ] && [ -n "$(data 1 id)" ] &&
	[ "$(data 1 addr)" = "unix:$work/se-ok.sock" ] || fail "authenticated data: $(ob)"

endpoint se-bad
wait_events 2
[ "$(events | sed -n 2p)" = "payguard.se.rejected se-bad" ] || fail "wrong keys: $(events)"
case "$(data 2 reason)" in "authentication failed"*) ;; *) fail "rejected reason: $(data 2 reason)" ;; esac
[ -z "$(data 2 version)" ] || fail "a rejected SE's event has a configuration version"

# unreachable: an endpoint whose socket nobody serves
endpoint se-gone nosuch
wait_events 3
[ "$(events | sed -n 3p)" = "payguard.se.rejected se-gone" ] || fail "unreachable: $(events)"
case "$(data 3 reason)" in *unreachable*) ;; *) fail "unreachable reason: $(data 3 reason)" ;; esac

# a re-attach is a new authentication (from the cache); a detach emits nothing
endpoint se-ok
wait_events 4
[ "$(events | sed -n 4p)" = "payguard.se.authenticated se-ok" ] && [ "$(data 4 cache)" = True ] ||
	fail "re-attach: $(events) cache $(data 4 cache)"
rm "$watch/se-ok.se"
for _ in $(seq 1 50); do grep -q "SE 'se-ok' detached" "$log" && break; sleep 0.1; done
grep -q "SE 'se-ok' detached" "$log" || fail "no detach"
sleep 0.3
[ "$(events | wc -l)" = 4 ] || fail "a detach emitted an event: $(events)"
# no key (either master, hex any case) in any event
ob | grep -qi -e "$MK" -e "$BADK" && fail "an event holds key material"
stop_serve || fail "seos serve did not stop cleanly"
echo "ok: SE events authenticated / rejected (store $store)"
