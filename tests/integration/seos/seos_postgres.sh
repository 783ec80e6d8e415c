#!/usr/bin/env bash
# The SE OS on PostgreSQL (issue 14): `seos serve --db postgresql://...`
# attaches a test SE (T=1 on a UNIX socket), authenticates it and stores its
# configuration in the fixture's server, in a database of its own; `seos
# list --db postgresql://...` shows it. The record is MACed bytea; a detach,
# a cache hit on re-attach, a version bump and a tampered record (changed
# with psql) behave as on SQLite (seos_serve). No pcscd is needed.
set -euo pipefail
. "$(dirname "$0")/../se/common.sh"
. "$(dirname "$0")/../../fixtures/pg_db.sh"
pg_test_db seos_pgtest

MK=404142434445464748494A4B4C4D4E4F
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
		# no fail here: in the EXIT trap it would skip cleanup (and leave the test SE running)
		[ $st = 0 ] || { tail -30 "$log" >&2; echo "seos serve exited with $st" >&2; return 1; }
		! grep -q "Sanitizer" "$log" || { grep -A20 Sanitizer "$log" >&2; return 1; }
	fi
}
trap 'stop_serve || true; cleanup' EXIT

sim() { # sim NAME SERIAL [extra args]
	"$pg" seos sim --link t1 --listen "unix:$work/$1.sock" --master "$MK" --serial "$2" "${@:3}" \
		>"$work/sim-$1.log" 2>&1 &
	sim_pids+=($!)
	simpid=$!
	for _ in $(seq 1 100); do [ -S "$work/$1.sock" ] && return 0; sleep 0.05; done
	fail "test SE $1 did not start"
}
endpoint() {
	printf 'link=t1\naddr=unix:%s/%s.sock\nkind=sim\n' "$work" "$1" >"$watch/.$1.tmp"
	mv "$watch/.$1.tmp" "$watch/$1.se"
}
count_log() { grep -c -- "$1" "$log" || true; }
wait_log() { # wait_log PATTERN N
	for _ in $(seq 1 100); do [ "$(count_log "$1")" -ge "$2" ] && return 0; sleep 0.1; done
	cat "$log" >&2
	fail "log never had $2 x '$1'"
}
# listed NAME: "state version apps" of NAME in `seos list --db URL --json`
listed() {
	"$pg" seos list --db "$PGT_URL" --device-key "$dk" --json | /usr/bin/python3 -c '
import json, sys
for e in json.load(sys.stdin):
    if e["name"] == sys.argv[1]: print(e["state"], e["version"], e["apps"], e["id"] != "")' "$1"
}

sim se-pg 21
"$pg" --log-level info seos serve --socket "$sock" --watch "$watch" --keys "$work/keys" \
	--db "$PGT_URL" --device-key "$dk" >"$log" 2>&1 &
serve_pid=$!
for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { cat "$log"; fail "seos serve did not start on PostgreSQL"; }

endpoint se-pg
wait_log "SE 'se-pg' .* configuration v1 from the SE" 1
[ "$(listed se-pg)" = "authenticated 1 3 True" ] || fail "seos list on PostgreSQL: '$(listed se-pg)'"
# stored in PostgreSQL: one list row, one MACed cache record (bytea, 32-byte MAC)
[ "$(pgt_sql "SELECT name, link, state FROM seos_se")" = "se-pg|t1|1" ] || fail "seos_se: $(pgt_sql 'SELECT * FROM seos_se')"
[ "$(pgt_sql "SELECT version, octet_length(mac), octet_length(config) > 8 FROM seos_cache")" = "1|32|t" ] ||
	fail "seos_cache: $(pgt_sql 'SELECT id, version FROM seos_cache')"
[ "$(pgt_sql "SELECT data_type FROM information_schema.columns WHERE table_name='seos_cache' AND column_name='config'")" = bytea ] ||
	fail "cache record is not bytea"
[ "$(pgt_sql "SELECT version FROM pg_schema WHERE area='seos'")" = 1 ] || fail "seos schema version"
echo "ok: attached, authenticated, configuration stored in PostgreSQL"

# re-attach: a cache hit
endpoint se-pg
wait_log "SE 'se-pg' .* configuration v1 from the cache" 1
# detach: the list says so
rm "$watch/se-pg.se"
for _ in $(seq 1 100); do [ "$(listed se-pg | cut -d' ' -f1)" = detached ] && break; sleep 0.1; done
[ "$(listed se-pg | cut -d' ' -f1)" = detached ] || fail "not detached in the list: $(listed se-pg)"
# a version bump: a fresh read, stored over the old record
kill "$simpid"
wait "$simpid" 2>/dev/null || true
rm -f "$work/se-pg.sock"
sim se-pg 21 --version 2
endpoint se-pg
wait_log "SE 'se-pg' .* configuration v2 from the SE" 1
[ "$(pgt_sql "SELECT version FROM seos_cache")" = 2 ] || fail "record not replaced"
# one byte of the stored record flipped: the MAC catches it, the SE is read again
pgt_sql "UPDATE seos_cache SET config = overlay(config placing '\\xee'::bytea from 11 for 1)" >/dev/null
endpoint se-pg
wait_log "fails its MAC" 1
wait_log "SE 'se-pg' .* configuration v2 from the SE" 2
endpoint se-pg
wait_log "SE 'se-pg' .* configuration v2 from the cache" 1
[ "$(listed se-pg)" = "authenticated 2 3 True" ] || fail "list at the end: '$(listed se-pg)'"
stop_serve || fail "seos serve did not stop cleanly"
# the list is read from PostgreSQL with no daemon running
[ "$(listed se-pg)" = "authenticated 2 3 True" ] || fail "list after the daemon stopped"
echo "ok: SE OS on PostgreSQL"
