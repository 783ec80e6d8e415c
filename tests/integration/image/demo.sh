#!/usr/bin/env bash
# `payguard image demo` end to end, then the same store through the CLI:
# the advisory finding disappears on the upgraded overlay, which qemu-img
# check and e2fsck find clean; OSV ranges with several intervals match
# exactly by Debian version order.
set -euo pipefail
: "${PAYGUARD:?}"
fail() { echo "FAIL: $*" >&2; exit 1; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
export PAYGUARD_DATA_DIR=$work/data
start=$(date +%s)
"$PAYGUARD" image demo --dir "$work/demo" >"$work/out" 2>"$work/err" || { cat "$work/out" "$work/err"; fail "demo"; }
cat "$work/out"
[ $(( $(date +%s) - start )) -le 20 ] || fail "demo took more than 20 s"
grep -q "demo-tool 1.0-1 (source demo) is affected by DEBIAN-DEMO-2026-0001, fixed in 1.0-2" "$work/out" || fail "finding"
grep -q "0 finding(s) left" "$work/out" || fail "finding not fixed"
grep -q "kernel /boot/vmlinuz-6.1.0-99-amd64 (6.1.0-99-amd64" "$work/out" || fail "kernel"
ov=$work/demo/demo-disk.upgrade.qcow2
qemu-img check "$ov" >/dev/null || fail "qemu-img check"
qemu-img convert -O raw "$ov" "$work/full"
dd if="$work/full" of="$work/fs" bs=1M skip=1 status=none
e2fsck -fn "$work/fs" >/dev/null 2>&1 || fail "e2fsck"
db=$work/demo/payguard.db
if [ -n "${PAYGUARD_STORE:-}" ]; then
	. "$(dirname "$0")/store.sh"
	db=$PAYGUARD_STORE
	demo_store "$work/demo" "$db" yes
fi
"$PAYGUARD" image findings --db "$db" --json 1 >"$work/f1"
"$PAYGUARD" image findings --db "$db" --json 2 >"$work/f2"
grep -q '"fixed": "1.0-2"' "$work/f1" || fail "findings json"
[ "$(tr -d ' \n' <"$work/f2")" = "[]" ] || fail "overlay still has findings"
# multi-interval advisory: affected in [0,1.0-1~) and [1:0,1:2.0) only
cat >"$work/multi.json" <<'EOJ'
[{"id": "DEBIAN-TEST-1", "summary": "two ranges",
  "affected": [{"package": {"ecosystem": "Debian:12", "name": "libdemo"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0-1~"},
                                               {"introduced": "1:0"}, {"fixed": "1:2.0"}]}]}]},
 {"id": "DEBIAN-TEST-2", "summary": "tilde boundary",
  "affected": [{"package": {"ecosystem": "Debian:12", "name": "libdemo"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "1.0-1~"}, {"fixed": "1.0-1+b1"}]}]}]},
 {"id": "OTHER-ECO", "affected": [{"package": {"ecosystem": "Debian:11", "name": "libdemo"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]}]
EOJ
"$PAYGUARD" image advisories import --db "$db" "$work/multi.json" | grep -q "imported 3" || fail "import"
"$PAYGUARD" image findings --db "$db" --json 1 >"$work/f3"
/usr/bin/python3 -c '
import json, sys
f = json.load(open(sys.argv[1]))
got = sorted((x["package"], x["advisory"]) for x in f)
want = [("demo-tool", "DEBIAN-DEMO-2026-0001"), ("libdemo1", "DEBIAN-TEST-2")]
assert got == want, got' "$work/f3" || fail "range matching"
# --fix --repo: picks the .deb that reaches the fixed version
mkdir "$work/repo"; cp "$work/demo/demo-tool_1.0-2_amd64.deb" "$work/repo/"
echo "not a package" >"$work/repo/broken.deb"
"$PAYGUARD" image upgrade --db "$db" --json --fix --repo "$work/repo" --output "$work/fix.qcow2" 1 >"$work/fix.json" 2>/dev/null \
	|| fail "upgrade --fix"
grep -q '"to": "1.0-2"' "$work/fix.json" || fail "--fix picked the wrong package"
qemu-img check "$work/fix.qcow2" >/dev/null || fail "qemu-img check (--fix)"
"$PAYGUARD" image scan --db "$db" --json "$work/fix.qcow2" >"$work/fixscan.json" || fail "scan --fix overlay"
fid=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["id"])' "$work/fixscan.json")
"$PAYGUARD" image findings --db "$db" --json "$fid" >"$work/f4"
grep -q "DEBIAN-DEMO-2026-0001" "$work/f4" && fail "--fix overlay still affected"
mkdir "$work/emptyrepo"
if "$PAYGUARD" image upgrade --db "$db" --fix --repo "$work/emptyrepo" 1 2>"$work/e"; then fail "--fix with nothing to apply"; fi
grep -q "fixes a finding" "$work/e" || fail "--fix message"
# bad advisories are refused whole
echo '{"affected": []}' >"$work/bad.json"
if "$PAYGUARD" image advisories import --db "$db" "$work/bad.json" 2>"$work/e"; then fail "bad OSV accepted"; fi
grep -q 'without an "id"' "$work/e" || fail "bad OSV message"
echo 'not json' >"$work/bad2.json"
if "$PAYGUARD" image advisories import --db "$db" "$work/bad2.json" 2>"$work/e"; then fail "non-JSON accepted"; fi
grep -q "not JSON" "$work/e" || fail "non-JSON message"
echo "demo: ok"
