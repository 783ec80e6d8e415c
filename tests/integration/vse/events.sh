#!/usr/bin/env bash
# VSE events (issue 15): payguard.vse.created / crashed / restarted /
# destroyed in the store's outbox, written in the transaction of the
# registry change. A VSE SIGKILLed while it should run is a crash, and the
# hypervisor's restart of it a restart; stop/start and the hypervisor's own
# restart are neither. With an argument (the PostgreSQL fixture's URL file)
# the registry and outbox are in a database of that server, else in the
# data directory's SQLite store.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
if [ $# -ge 1 ]; then
	. "$here/../../fixtures/pg_db.sh"
	pg_test_db vse_evtest
	store=$PGT_URL
else
	store=$PAYGUARD_DATA_DIR/payguard.db
fi
start_hv_db() {
	"$pg" vse serve --db "$store" --node "${1:-}" >>"$work/hv.log" 2>&1 &
	hv_pid=$!
	for _ in $(seq 1 100); do
		"$pg" vse list >/dev/null 2>&1 && return 0
		kill -0 "$hv_pid" 2>/dev/null || fail "hypervisor exited"
		sleep 0.1
	done
	fail "hypervisor never answered"
}
# events: "type subject" lines of the VSE area's events in the outbox
events() { /usr/bin/python3 "$here/../events/outbox.py" "$store" payguard.vse. | cut -d' ' -f1,2; }
# data N KEY: field KEY of the data of the N-th (1-based) VSE event
data() {
	/usr/bin/python3 "$here/../events/outbox.py" "$store" payguard.vse. | sed -n "${1}p" |
		cut -d' ' -f3- | /usr/bin/python3 -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print("" if v is None else v)' "$2"
}
want() { # want "EXPECTED LINES" WHAT
	local got
	got=$(events)
	[ "$got" = "$1" ] || fail "$2: outbox has
$got
want
$1"
}

start_hv_db node-e
"$pg" vse create --name ev1 --master $MASTER --link t1 >/dev/null || fail "create"
want "payguard.vse.created ev1" "create"
[ "$(data 1 name)" = ev1 ] && [ "$(data 1 node)" = node-e ] && [ "$(data 1 link)" = t1 ] &&
	[ "$(data 1 restarts)" = 0 ] && [ -n "$(data 1 id)" ] || fail "created data: $(data 1 name) $(data 1 node) $(data 1 link)"
# no key material in the event
/usr/bin/python3 "$here/../events/outbox.py" "$store" | grep -qi "$MASTER" && fail "an event holds the master key"

# stop and start are asked for: no events
"$pg" vse stop ev1 >/dev/null && "$pg" vse start ev1 >/dev/null || fail "stop/start"
want "payguard.vse.created ev1" "stop/start"

# SIGKILL: crashed, then restarted by the hypervisor
pid=$(field ev1 pid)
[ -n "$pid" ] || fail "no pid"
kill -9 "$pid"
wait_restarted ev1 "$pid"
for _ in $(seq 1 50); do [ "$(events | wc -l)" -ge 3 ] && break; sleep 0.1; done
want "payguard.vse.created ev1
payguard.vse.crashed ev1
payguard.vse.restarted ev1" "crash"
[ "$(data 2 pid)" = "$pid" ] && [ "$(data 2 last_exit)" = "signal 9 (Killed)" ] && [ "$(data 2 restarts)" = 1 ] ||
	fail "crashed data: pid $(data 2 pid) exit $(data 2 last_exit) restarts $(data 2 restarts)"
[ "$(data 3 pid)" = "$(field ev1 pid)" ] && [ "$(data 3 restarts)" = 1 ] ||
	fail "restarted data: pid $(data 3 pid) (now $(field ev1 pid)) restarts $(data 3 restarts)"

# a restarted hypervisor resumes its VSEs: not a crash of them
stop_hv
start_hv_db node-e
[ "$(field ev1 state)" = running ] || fail "not resumed"
want "payguard.vse.created ev1
payguard.vse.crashed ev1
payguard.vse.restarted ev1" "hypervisor restart"

"$pg" vse destroy ev1 >/dev/null || fail "destroy"
want "payguard.vse.created ev1
payguard.vse.crashed ev1
payguard.vse.restarted ev1
payguard.vse.destroyed ev1" "destroy"
[ "$(data 4 name)" = ev1 ] || fail "destroyed data"
# a refused create (name taken by nothing, bad request) writes no event
"$pg" vse create --name ../bad --master $MASTER >/dev/null 2>&1 && fail "bad name accepted"
[ "$(events | wc -l)" = 4 ] || fail "a refused create emitted an event"
echo "ok: VSE events created, crashed, restarted, destroyed (store $store)"
