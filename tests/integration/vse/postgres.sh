#!/usr/bin/env bash
# The VSE registry on PostgreSQL (issue 14): two hypervisors (`vse serve
# --db postgresql://... --node NAME`, each with its own data directory and
# kek) share one registry in a database of the fixture's server. Each runs
# only its own node's VSEs and lists the other's with their node; it refuses
# to start, stop or destroy a VSE of another node, and a name is unique
# across nodes. Keys stay wrapped (a pg_dump holds none of them), VSEs come
# back after a restart, SCP03 works with the keys read back from PostgreSQL.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
. "$here/../../fixtures/pg_db.sh"
pg_test_db vse_pgtest
ENC=2B7E151628AED2A6ABF7158809CF4F3C
MAC=F0E1D2C3B4A5968778695A4B3C2D1E0F
DEK=00FF11EE22DD33CC44BB55AA66997788
MKEY=C0C1C2C3C4C5C6C7C8C9CACBCCCDCECF
dataA=$PAYGUARD_DATA_DIR
dataB=$work/dataB
hvb_pid=""

# A: the hypervisor of common.sh, on PostgreSQL as node-a
start_a() {
	"$pg" vse serve --db "$PGT_URL" --node node-a >>"$work/hv.log" 2>&1 &
	hv_pid=$!
	for _ in $(seq 1 100); do
		"$pg" vse list >/dev/null 2>&1 && return 0
		kill -0 "$hv_pid" 2>/dev/null || fail "hypervisor A exited"
		sleep 0.1
	done
	fail "hypervisor A never answered"
}
# B: a second hypervisor, its own data directory (socket, kek, pmem), node-b
b() { PAYGUARD_DATA_DIR=$dataB "$pg" "$@"; }
start_b() {
	PAYGUARD_DATA_DIR=$dataB "$pg" vse serve --db "$PGT_URL" --node node-b >>"$work/hvb.log" 2>&1 &
	hvb_pid=$!
	for _ in $(seq 1 100); do
		b vse list >/dev/null 2>&1 && return 0
		kill -0 "$hvb_pid" 2>/dev/null || { cat "$work/hvb.log" >&2; fail "hypervisor B exited"; }
		sleep 0.1
	done
	fail "hypervisor B never answered"
}
stop_b() {
	[ -n "$hvb_pid" ] && { kill "$hvb_pid" 2>/dev/null || true; wait "$hvb_pid" 2>/dev/null || true; }
	hvb_pid=""
}
trap 'stop_b; cleanup' EXIT

# lget FROM FIELD...: from `vse list --json` (FROM: a or b), "name:field1:field2..." lines
lget() {
	local who=$1
	shift
	if [ "$who" = b ]; then b vse list --json; else "$pg" vse list --json; fi |
		/usr/bin/python3 -c '
import json, sys
for v in sorted(json.load(sys.stdin), key=lambda v: v["name"]):
    print(":".join([v["name"]] + ["" if v.get(f) is None else str(v.get(f)) for f in sys.argv[1:]]))' "$@"
}

start_a
"$pg" vse create --name pa-exp --keys "$ENC:$MAC:$DEK" --link t1 >/dev/null || fail "create pa-exp"
"$pg" vse create --name pa-div --master "$MKEY" --link t1 >/dev/null || fail "create pa-div"
[ "$(lget a node state)" = "$(printf 'pa-div:node-a:running\npa-exp:node-a:running')" ] ||
	fail "A's list: $(lget a node state)"
[ "$(sw pa-exp --scp03 --keys "$ENC:$MAC:$DEK" $SEL_ISD)" = 9000 ] || fail "SCP03 pa-exp"
[ "$(sw pa-div --scp03 --master "$MKEY" $SEL_ISD)" = 9000 ] || fail "SCP03 pa-div"

# the rows are in PostgreSQL, with their node; 64-bit ids; schema v2
[ "$(pgt_sql "SELECT name, node, state FROM vse_instance ORDER BY name")" = \
	"$(printf 'pa-div|node-a|running\npa-exp|node-a|running')" ] || fail "rows: $(pgt_sql 'SELECT * FROM vse_instance')"
[ "$(pgt_sql "SELECT data_type FROM information_schema.columns WHERE table_name='vse_instance' AND column_name='id'")" = bigint ] ||
	fail "id is not bigint"
[ "$(pgt_sql "SELECT version FROM pg_schema WHERE area='vse'")" = 2 ] || fail "vse schema version"
pgt_sql "SELECT config FROM vse_instance WHERE name='pa-div'" | grep -q '"master_kw":"' || fail "master not wrapped"
# keys at rest: a dump of the whole database holds none of them
pg_dump -h "$PGT_HOST" -U "$PGT_USER" -d "$PGT_DB" >"$work/dump.sql" || fail "pg_dump"
grep -q vse_instance "$work/dump.sql" || fail "dump has no vse_instance"
/usr/bin/python3 - "$work/dump.sql" "$ENC" "$MAC" "$DEK" "$MKEY" <<'PY' || fail "keys in the PostgreSQL dump"
import sys
blob = open(sys.argv[1], "rb").read()
bad = [k for k in sys.argv[2:] for n in (k.encode(), k.lower().encode(), bytes.fromhex(k)) if n in blob]
sys.exit("keys found: %s" % bad if bad else 0)
PY
echo "ok: A's VSEs stored in PostgreSQL, keys wrapped"

# B lists A's VSEs with their node, runs none of them, and may not touch them
start_b
[ "$(lget b node state pid)" = "$(printf 'pa-div:node-a:running:\npa-exp:node-a:running:')" ] ||
	fail "B's list: $(lget b node state pid)"
b vse show pa-exp --json | grep -q '"node": *"node-a"' || fail "B's show of pa-exp"
b vse show pa-exp --json | grep -q "$ENC" && fail "B's show has a key"
for verb in stop start destroy; do
	out=$(b vse $verb pa-exp 2>&1) && fail "B could $verb A's VSE"
	echo "$out" | grep -q "runs on node 'node-a'" || fail "B's $verb message: $out"
done
out=$(b vse create --name pa-exp --master "$MKEY" --link t1 2>&1) && fail "B created a second pa-exp"
echo "$out" | grep -q "exists" || fail "duplicate name message: $out"
[ "$(sw pa-exp --scp03 --keys "$ENC:$MAC:$DEK" $SEL_ISD)" = 9000 ] || fail "pa-exp hurt by B"
b vse create --name pb-one --master "$MKEY" --link t1 >/dev/null || fail "create pb-one on B"
[ "$(PAYGUARD_DATA_DIR=$dataB sw pb-one --scp03 --master "$MKEY" $SEL_ISD)" = 9000 ] || fail "SCP03 pb-one"
[ "$(lget a node)" = "$(printf 'pa-div:node-a\npa-exp:node-a\npb-one:node-b')" ] || fail "A's list with B's VSE: $(lget a node)"
"$pg" vse list | grep -E '^pb-one .*node-b' >/dev/null || fail "table has no NODE column: $("$pg" vse list)"
echo "ok: two nodes share the registry, each runs its own"

# A restarted brings back its own VSEs only; keys read back from PostgreSQL work
stop_hv
start_a
for _ in $(seq 1 100); do
	[ "$(lget a state)" = "$(printf 'pa-div:running\npa-exp:running\npb-one:running')" ] &&
		[ -n "$(field pa-exp pid)" ] && break
	sleep 0.1
done
[ -n "$(field pa-exp pid)" ] || fail "pa-exp not resumed"
[ -z "$(field pb-one pid)" ] || fail "A started B's VSE"
[ "$(sw pa-exp --scp03 --keys "$ENC:$MAC:$DEK" $SEL_ISD)" = 9000 ] || fail "SCP03 after restart"
[ "$(sw pa-div --scp03 --master "$MKEY" $SEL_ISD)" = 9000 ] || fail "SCP03 pa-div after restart"
grep -q "wrapped the keys" "$work/hvb.log" && fail "B rewrote rows"

# stop and destroy on the owner reach the registry every node reads
"$pg" vse stop pa-div >/dev/null || fail "stop pa-div"
[ "$(pgt_sql "SELECT state FROM vse_instance WHERE name='pa-div'")" = stopped ] || fail "stop not stored"
[ "$(lget b state)" = "$(printf 'pa-div:stopped\npa-exp:running\npb-one:running')" ] || fail "B's view: $(lget b state)"
"$pg" vse destroy pa-div >/dev/null || fail "destroy pa-div"
[ "$(pgt_sql "SELECT count(*) FROM vse_instance WHERE name='pa-div'")" = 0 ] || fail "row left after destroy"
[ "$(lget b node)" = "$(printf 'pa-exp:node-a\npb-one:node-b')" ] || fail "B still lists pa-div"
b vse destroy pb-one >/dev/null || fail "destroy pb-one"
[ "$(lget a node)" = "pa-exp:node-a" ] || fail "A's list at the end: $(lget a node)"

# a bad node name is refused with a message
out=$("$pg" vse serve --db "$PGT_URL" --node 'no/slash' 2>&1) && fail "a node name with / was taken"
echo "$out" | grep -q "node name" || fail "node name message: $out"
stop_b
echo "ok: VSE registry on PostgreSQL"
