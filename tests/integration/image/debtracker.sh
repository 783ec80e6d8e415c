#!/usr/bin/env bash
# Debian Security Tracker JSON (issue 17 item 6): an excerpt in the feed's
# published shape ({package: {CVE: {description, scope, releases: {codename:
# {status, repositories, fixed_version, urgency}}}}}) imported beside OSV gives
# the findings the same advisories written as OSV give: resolved -> fixed in
# that version, "0" -> never affected, open -> no fix, undetermined and
# releases other than the image's -> nothing. Bad feeds are refused whole
# with the package, CVE and release named.
set -euo pipefail
: "${PAYGUARD:?}"
here=$(cd "$(dirname "$0")" && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
export PAYGUARD_DATA_DIR=$work/data
"$PAYGUARD" image demo --dir "$work/demo" >"$work/out" 2>&1 || { cat "$work/out"; fail "demo"; }
db=$work/demo/payguard.db osv=$work/osv.db
storeq="/usr/bin/python3 $here/../../fixtures/storeq.py"
if [ -n "${PAYGUARD_STORE:-}" ]; then
	# the PostgreSQL pass: the demo's images, without its advisory, in two stores
	. "$here/store.sh"
	db=$PAYGUARD_STORE osv=$($storeq fresh osv "$osv")
	demo_store "$work/demo" "$db" no
	demo_store "$work/demo" "$osv" no
else
	# a clean store with the demo image only (drop the demo's own advisory)
	/usr/bin/python3 -c '
import sqlite3, sys
c = sqlite3.connect(sys.argv[1]); c.execute("PRAGMA foreign_keys=ON")
c.execute("DELETE FROM advisory"); c.commit()' "$db"
	cp "$db" "$osv"
fi

# auto-detected as the tracker's format
"$PAYGUARD" image advisories import --db "$db" "$here/debian-tracker.json" >"$work/o" || fail "import"
grep -q "imported 8 advisories" "$work/o" || { cat "$work/o"; fail "advisory count (one per CVE id)"; }
"$PAYGUARD" image findings --db "$db" --json 1 >"$work/f"
/usr/bin/python3 - "$work/f" <<'EOP' || fail "tracker findings"
import json, sys
f = json.load(open(sys.argv[1]))
got = sorted((x["package"], x["advisory"], x["fixed"]) for x in f)
want = [("demo-tool", "CVE-2026-10001", "1.0-2"),
        ("libdemo1", "CVE-2026-10002", None),
        ("libdemo1", "CVE-2026-10006", "1.0-1+deb12u1")]
assert got == want, got
s = {x["advisory"]: x["summary"] for x in f}
assert s["CVE-2026-10001"] == "demo-tool: remote crash when parsing a request", s
EOP
# the upgraded overlay (demo-tool 1.0-2) no longer has the fixed one
"$PAYGUARD" image findings --db "$db" --json 2 | grep -q "CVE-2026-10001" && fail "overlay still affected"

# the same advisories written as OSV give the same findings
cat >"$work/same.json" <<'EOJ'
[{"id": "CVE-2026-10001", "summary": "demo-tool: remote crash when parsing a request",
  "affected": [{"package": {"ecosystem": "Debian:12", "name": "demo"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0-2"}]}]},
               {"package": {"ecosystem": "Debian:13", "name": "demo"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0-3"}]}]}]},
 {"id": "CVE-2026-10002", "summary": "libdemo: no fix yet",
  "affected": [{"package": {"ecosystem": "Debian:12", "name": "libdemo"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]},
 {"id": "CVE-2026-10005", "summary": "libdemo: only bullseye",
  "affected": [{"package": {"ecosystem": "Debian:11", "name": "libdemo"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]},
 {"id": "CVE-2026-10006", "summary": "shared by demo and libdemo",
  "affected": [{"package": {"ecosystem": "Debian:12", "name": "demo"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0-1"}]}]},
               {"package": {"ecosystem": "Debian:12", "name": "libdemo"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0-1+deb12u1"}]}]}]},
 {"id": "CVE-2026-10007", "summary": "base-files: fixed before the image's version",
  "affected": [{"package": {"ecosystem": "Debian:12", "name": "base-files"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "12.4+deb12u4"}]}]}]}]
EOJ
"$PAYGUARD" image advisories import --db "$osv" "$work/same.json" >/dev/null || fail "osv import"
"$PAYGUARD" image findings --db "$osv" --json 1 >"$work/fo"
/usr/bin/python3 - "$work/f" "$work/fo" <<'EOP' || fail "tracker and OSV findings differ"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
key = lambda x: (x["package"], x["advisory"], x["fixed"], x["version"])
assert sorted(map(key, a)) == sorted(map(key, b)), (a, b)
EOP
# the stored ranges: one per (package, release with a number) that needs one
/usr/bin/python3 - "$db" "$here/../../fixtures" <<'EOP' || fail "stored ranges"
import sys
sys.path.insert(0, sys.argv[2])
import storeq
r = sorted(storeq.rows(sys.argv[1], "SELECT advisory_id, ecosystem, package, introduced, fixed FROM advisory_range"),
           key=lambda t: tuple(str(x) for x in t))
want = sorted([("CVE-2026-10001", "Debian:12", "demo", "0", "1.0-2"),
               ("CVE-2026-10001", "Debian:13", "demo", "0", "1.0-3"),
               ("CVE-2026-10002", "Debian:12", "libdemo", "0", None),
               ("CVE-2026-10005", "Debian:11", "libdemo", "0", None),
               ("CVE-2026-10006", "Debian:12", "demo", "0", "1.0-1"),
               ("CVE-2026-10006", "Debian:12", "libdemo", "0", "1.0-1+deb12u1"),
               ("CVE-2026-10007", "Debian:12", "base-files", "0", "12.4+deb12u4")],
              key=lambda t: tuple(str(x) for x in t))
assert r == want, r
EOP

# --format: explicit tracker works, osv on a tracker file is refused, bogus rejected
"$PAYGUARD" image advisories import --db "$db" --format debian-tracker "$here/debian-tracker.json" | grep -q "imported 8" \
	|| fail "--format debian-tracker"
if "$PAYGUARD" image advisories import --db "$db" --format osv "$here/debian-tracker.json" 2>"$work/e"; then fail "--format osv took the tracker"; fi
if "$PAYGUARD" image advisories import --db "$db" --format yaml "$here/debian-tracker.json" 2>/dev/null; then fail "--format yaml"; fi
# bad feeds: refused whole, with package, CVE and release named; nothing stored
bad() { # json, expected message
	printf '%s' "$1" >"$work/bad.json"
	if "$PAYGUARD" image advisories import --db "$db" --format debian-tracker "$work/bad.json" 2>"$work/e"; then
		fail "accepted: $1"
	fi
	grep -qF "$2" "$work/e" || { cat "$work/e"; fail "message for $1"; }
}
bad '{"zz": {"CVE-1": {"releases": {"bookworm": {"status": "fixed"}}}}}' "zz CVE-1 bookworm: unknown status 'fixed'"
bad '{"zz": {"CVE-1": {"releases": {"bookworm": {"status": "resolved"}}}}}' 'zz CVE-1 bookworm: resolved without a "fixed_version"'
bad '{"zz": {"CVE-1": {"releases": {"bookworm": {"status": "resolved", "fixed_version": "a b"}}}}}' "bad fixed_version 'a b'"
bad '{"zz": ["CVE-1"]}' "package 'zz': not an object of CVEs"
bad '{"zz": {"CVE-1": {"releases": []}}}' '"releases" is not an object'
bad '[1, 2]' 'not the tracker'"'"'s shape'
bad '{"zz": {"CVE-1": ' 'not JSON'
[ "$($storeq query "$db" "SELECT COUNT(*) FROM advisory WHERE id = 'CVE-1'")" = 0 ] || fail "a bad feed left rows"
[ "$($storeq query "$db" "SELECT COUNT(*) FROM advisory")" = 8 ] || fail "a bad feed left rows"
echo "debtracker: ok"
