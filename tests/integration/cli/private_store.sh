#!/usr/bin/env bash
# Every verb that opens the store refuses a data directory or store others
# can read (issue 13, item 2), exit code 5, with the chmod to run; nothing is
# created in a refused directory. Once fixed with that chmod, the verb runs.
set -euo pipefail
pg=${PAYGUARD:?}
work=$(mktemp -d /tmp/pg-private.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
umask 022

# verbs that open the default store ($PAYGUARD_DATA_DIR/payguard.db)
verbs=("pos alerts" "pos cells import $work/cells.csv" "image list" "image findings"
	"load import --source csv:$work/trace.csv" "seos list")
printf 'radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal\n' >"$work/cells.csv"
printf 'vm,ts,cpu\n' >"$work/trace.csv"

data=$work/data
mkdir -m 755 "$data"
for v in "${verbs[@]}"; do
	# shellcheck disable=SC2086
	out=$(PAYGUARD_DATA_DIR=$data "$pg" $v 2>&1) && fail "'$v' ran on a 0755 data directory"
	rc=$?
	[ "$rc" = 5 ] || fail "'$v': exit $rc, want 5: $out"
	echo "$out" | grep -qF "permissions 0755 for '$data' are too open; run: chmod 700 '$data'" ||
		fail "'$v' message: $out"
done
[ -z "$(ls -A "$data")" ] || fail "files made in the refused directory: $(ls -A "$data")"
echo "ok: ${#verbs[@]} verbs refuse a 0755 data directory"

chmod 700 "$data"
PAYGUARD_DATA_DIR=$data "$pg" pos alerts >/dev/null || fail "pos alerts after chmod 700"
[ "$(stat -c %a "$data/payguard.db")" = 600 ] || fail "store made $(stat -c %a "$data/payguard.db")"
chmod 640 "$data/payguard.db"
for v in "${verbs[@]}"; do
	# shellcheck disable=SC2086
	out=$(PAYGUARD_DATA_DIR=$data "$pg" $v 2>&1) && fail "'$v' ran on a 0640 store"
	rc=$?
	[ "$rc" = 5 ] || fail "'$v': exit $rc, want 5: $out"
	echo "$out" | grep -qF "permissions 0640 for '$data/payguard.db' are too open; run: chmod 600 '$data/payguard.db'" ||
		fail "'$v' message: $out"
done
echo "ok: the same verbs refuse a 0640 store"

# an explicit --db: its file must be private, its directory not writable by others
mkdir -m 755 "$work/shared"
db=$work/shared/x.db
"$pg" pos alerts --db "$db" >/dev/null || fail "pos alerts --db in a 0755 directory"
[ "$(stat -c %a "$db")" = 600 ] || fail "--db store made $(stat -c %a "$db")"
chmod 644 "$db"
out=$("$pg" pos alerts --db "$db" 2>&1) && fail "pos alerts ran on a 0644 --db store"
echo "$out" | grep -qF "run: chmod 600 '$db'" || fail "--db message: $out"
chmod 600 "$db"
chmod 777 "$work/shared"
out=$("$pg" image list --db "$db" 2>&1) && fail "image list ran on a store in a 0777 directory"
echo "$out" | grep -qF "run: chmod go-w '$work/shared'" || fail "--db dir message: $out"
chmod 755 "$work/shared"
"$pg" image list --db "$db" >/dev/null || fail "image list --db after the chmod"
echo "ok: --db FILE checks"
