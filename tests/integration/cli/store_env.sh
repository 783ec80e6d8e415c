#!/usr/bin/env bash
# PAYGUARD_STORE (docs/cli.md): the store of every verb run without --db.
# On the SQLite pass it names a file outside the data directory; on the
# PostgreSQL pass (cli_store_env@postgres) it is with_pg_store.sh's fresh
# database. pos, image and load verbs must write there and not create the
# data directory's payguard.db; --db still wins; an empty value is the
# default store; a store that cannot be reached is a clear error.
set -euo pipefail
pg=${PAYGUARD:?}
storeq="/usr/bin/python3 ${PG_SOURCE_DIR:?}/tests/fixtures/storeq.py"
work=$(mktemp -d /tmp/pg-store-env.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export PAYGUARD_DATA_DIR=$work/data
store=${PAYGUARD_STORE:-sqlite:$work/env.db}
export PAYGUARD_STORE=$store
echo "store: $store"

cat >"$work/cells.csv" <<'CSV'
radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal
LTE,262,1,1001,11001,101,13.4045,52.5205,500,40,1,1459692000,1700000000,-85
LTE,262,1,1001,11002,102,13.4100,52.5230,800,25,1,1459692000,1700000000,
CSV
printf 'vm,timestamp_ms,cpu_pct,mem_pct,disk_read_kbps,disk_write_kbps,net_rx_kbps,net_tx_kbps\nvm-a,0,10,1,0,0,0,0\nvm-a,60000,20,1,0,0,0,0\nvm-b,0,30,1,0,0,0,0\n' >"$work/trace.csv"

"$pg" pos cells import "$work/cells.csv" --json | grep -q '"imported": 2' || fail "cells import"
"$pg" load import --source "csv:$work/trace.csv" --json >"$work/imp.json" || fail "load import"
"$pg" image list --json >"$work/images.json" || fail "image list"
[ "$(cat "$work/images.json")" = "[]" ] || fail "image list on a new store: $(cat "$work/images.json")"
"$pg" pos alerts >/dev/null || fail "pos alerts"
[ -e "$work/data/payguard.db" ] && fail "a verb opened the data directory's payguard.db, not PAYGUARD_STORE"
[ "$($storeq query "$store" "SELECT COUNT(*) FROM pos_cells")" = 2 ] || fail "cells not in PAYGUARD_STORE"
[ "$($storeq query "$store" "SELECT COUNT(*) FROM load_samples")" = 3 ] || fail "samples not in PAYGUARD_STORE"
[ "$($storeq query "$store" "SELECT COUNT(*) FROM pg_schema WHERE area = 'image'")" = 1 ] ||
	fail "image schema not in PAYGUARD_STORE"
echo "ok: pos, load and image verbs use PAYGUARD_STORE"

# --db wins over the variable
"$pg" pos cells import "$work/cells.csv" --db "$work/other.db" >/dev/null || fail "import --db"
[ "$($storeq query "$work/other.db" "SELECT COUNT(*) FROM pos_cells")" = 2 ] || fail "--db store empty"
[ -e "$work/data/payguard.db" ] && fail "--db touched the default store"
echo "ok: --db wins over PAYGUARD_STORE"

# empty: the data directory's payguard.db, as without the variable
PAYGUARD_STORE= "$pg" pos cells import "$work/cells.csv" >/dev/null || fail "import, empty PAYGUARD_STORE"
[ "$($storeq query "$work/data/payguard.db" "SELECT COUNT(*) FROM pos_cells")" = 2 ] ||
	fail "empty PAYGUARD_STORE did not use the default store"
echo "ok: an empty PAYGUARD_STORE is the default store"

# unreachable server: a message naming the problem, exit 1, no crash
set +e
PAYGUARD_STORE='postgresql:///x?host=/nonexistent&connect_timeout=2' "$pg" pos alerts >"$work/o" 2>"$work/e"
rc=$?
set -e
[ $rc -eq 1 ] || fail "unreachable store: exit $rc ($(cat "$work/e"))"
grep -qi "nonexistent" "$work/e" || fail "unreachable store message: $(cat "$work/e")"
echo "ok: unreachable PAYGUARD_STORE: $(head -n1 "$work/e")"
echo PASS
