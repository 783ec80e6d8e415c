#!/usr/bin/env bash
# `image watch DIR`: images already in the folder are scanned first, then a
# new image copied in (atomic rename, as pools do) and a changed one are
# picked up through inotify; a file that is not an image is refused.
set -euo pipefail
: "${PAYGUARD:?}"
fail() { echo "FAIL: $*" >&2; exit 1; }
work=$(mktemp -d); trap 'kill $wpid 2>/dev/null || true; rm -rf "$work"' EXIT
export PAYGUARD_DATA_DIR=$work/data
"$PAYGUARD" image demo --dir "$work/demo" >/dev/null 2>&1 || fail "demo image"
mkdir "$work/pool"
cp "$work/demo/demo-disk.img" "$work/pool/first.img"
"$PAYGUARD" image watch --max-events 3 "$work/pool" >"$work/out" 2>"$work/err" &
wpid=$!
for _ in $(seq 1 100); do grep -q "first.img: scanned" "$work/err" && break; sleep 0.1; done
grep -q "first.img: scanned" "$work/err" || fail "existing image not scanned"
qemu-img convert -O qcow2 "$work/demo/demo-disk.img" "$work/pool/.second.tmp"
mv "$work/pool/.second.tmp" "$work/pool/second.qcow2"
echo "not an image" >"$work/pool/notes.txt"
cp "$work/demo/demo-disk.img" "$work/pool/first.img"
for _ in $(seq 1 150); do kill -0 $wpid 2>/dev/null || break; sleep 0.1; done
kill -0 $wpid 2>/dev/null && fail "watch did not see 3 events"
wait $wpid || fail "watch exit status"
grep -q "second.qcow2: scanned" "$work/out" || { cat "$work/out" "$work/err"; fail "new image not scanned"; }
grep -q "notes.txt: refused: .*not a raw or qcow2 image" "$work/err" || fail "non-image not refused"
"$PAYGUARD" image list --json >"$work/list"
/usr/bin/python3 -c '
import json, sys
l = json.load(open(sys.argv[1]))
names = sorted(x["path"].rsplit("/", 1)[1] for x in l)
assert names == ["first.img", "second.qcow2"], names
assert all(x["packages"] == 3 for x in l), l' "$work/list" || fail "store contents"
echo "watch: ok"
