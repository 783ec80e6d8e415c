# The store of the image tests on either engine (issue 14: each runs twice,
# NAME on SQLite and NAME@postgres, where with_pg_store.sh sets PAYGUARD_STORE).
#
# new_store: the next verbs start on an empty store: the data directory is
# removed (its payguard.db with it) and, on the PostgreSQL pass,
# PAYGUARD_STORE moves to a new database (tests/fixtures/storeq.py fresh).
new_store() {
	rm -rf "$work/data"
	if [ -n "${PAYGUARD_STORE:-}" ]; then
		PAYGUARD_STORE=$(/usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/../../fixtures/storeq.py" \
			fresh store "$PAYGUARD_STORE") || fail "a new PostgreSQL store"
		export PAYGUARD_STORE
	fi
}

# `payguard image demo` keeps its own
# SQLite store in its folder; on the PostgreSQL pass (with_pg_store.sh sets
# PAYGUARD_STORE) demo_store DEMO_DIR STORE yes|no puts the same two images
# (1: the demo disk, 2: its upgraded overlay) and, with yes, the demo's
# advisory into STORE, so the checks that follow run on PostgreSQL.
demo_store() {
	local demo=$1 db=$2 adv=$3
	"$PAYGUARD" image scan --db "$db" "$demo/demo-disk.img" >/dev/null || fail "scan the demo disk into $db"
	"$PAYGUARD" image scan --db "$db" --backing-dir "$demo" "$demo/demo-disk.upgrade.qcow2" >/dev/null ||
		fail "scan the demo overlay into $db"
	if [ "$adv" = yes ]; then
		"$PAYGUARD" image advisories import --db "$db" "$demo/DEBIAN-DEMO-2026-0001.json" >/dev/null ||
			fail "import the demo advisory into $db"
	fi
}
