#!/usr/bin/env bash
# Issue 13 item 3: a qcow2 backing file is read only from the image's own
# folder (no '..', no symlink out, absolute names only when they land
# there) or from a --backing-dir folder. Images made with qemu-img whose
# backing file is /etc/shadow, ../x and a symlink out are refused with
# exit 3 and a clear message, store nothing, and are refused by `image
# upgrade` too; legitimate backing files (relative, absolute in the same
# folder, chains, a symlink inside the folder, an allowed --backing-dir)
# still scan, and an upgrade overlay kept in the data dir still commits.
set -euo pipefail
. "$(dirname "$0")/helpers.sh"
. "$(dirname "$0")/store.sh"
"$PAYGUARD" image demo --dir "$work/demo" >/dev/null 2>&1 || fail "demo image"
deb=$work/demo/demo-tool_1.0-2_amd64.deb
mkdir -p "$work/watch" "$work/outside"
cp "$work/demo/demo-disk.img" "$work/outside/disk.img"
cp "$work/demo/demo-disk.img" "$work/watch/base.img"
cd "$work/watch"

# refused: exit 3, PATTERN in the message, nothing stored
refused() {
	local what=$1 pat=$2 rc=0; shift 2
	"$@" >"$work/out" 2>"$work/err" || rc=$?
	[ $rc = 3 ] || { cat "$work/err"; fail "$what: exit $rc, want 3"; }
	grep -q -- "$pat" "$work/err" || { cat "$work/err"; fail "$what: message lacks '$pat'"; }
	echo "ok: $what -> $(grep -m1 payguard: "$work/err")"
}
stored() { "$PAYGUARD" image list --json | /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

# legitimate: relative name, absolute name in the same folder, a chain, a symlink inside
qemu-img create -q -f qcow2 -b base.img -F raw rel.qcow2
qemu-img create -q -f qcow2 -b "$work/watch/base.img" -F raw abs.qcow2
qemu-img create -q -f qcow2 -b rel.qcow2 -F qcow2 chain2.qcow2
qemu-img create -q -f qcow2 -b chain2.qcow2 -F qcow2 chain3.qcow2
ln -s base.img alias.img
qemu-img create -q -f qcow2 -b alias.img -F raw alias.qcow2
for f in rel abs chain3 alias; do
	"$PAYGUARD" image scan --json "$f.qcow2" >"$work/s.json" 2>"$work/err" || { cat "$work/err"; fail "legit $f refused"; }
	grep -q '"packages": 3' "$work/s.json" || { cat "$work/s.json"; fail "legit $f: inventory"; }
done
"$PAYGUARD" image show --json chain3.qcow2 | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
names = [c["path"].rsplit("/", 1)[-1] for c in d["chain"]]
assert names == ["chain2.qcow2", "rel.qcow2", "base.img"], names' \
	|| fail "chain of chain3"
new_store

# hostile: /etc/shadow (any readable host file read as a raw disk), ../x, a symlink out
qemu-img create -q -f qcow2 -u -b /etc/shadow -F raw shadow.qcow2 64M
qemu-img create -q -f qcow2 -b ../outside/disk.img -F raw dotdot.qcow2
ln -s ../outside/disk.img out.img
qemu-img create -q -f qcow2 -u -b out.img -F raw symout.qcow2 64M
qemu-img create -q -f qcow2 -u -b "$work/outside/disk.img" -F raw absout.qcow2 64M
qemu-img create -q -f qcow2 -b dotdot.qcow2 -F qcow2 deep.qcow2 2>/dev/null || \
	qemu-img create -q -f qcow2 -u -b dotdot.qcow2 -F qcow2 deep.qcow2 64M
refused "backing file /etc/shadow" "backing file of '.*/shadow.qcow2': backing file '/etc/shadow' is '/etc/shadow', outside the image's folder" \
	"$PAYGUARD" image scan shadow.qcow2
refused "backing file ../outside/disk.img" "climbs out with '..'" "$PAYGUARD" image scan dotdot.qcow2
refused "backing file a symlink out of the folder" "is '$work/outside/disk.img', outside the image's folder" \
	"$PAYGUARD" image scan symout.qcow2
refused "absolute backing file in another folder" "outside the image's folder" "$PAYGUARD" image scan absout.qcow2
refused "escape two levels down a chain" "climbs out with '..'" "$PAYGUARD" image scan deep.qcow2
refused "upgrade of an image whose backing file escapes" "outside the image's folder" \
	"$PAYGUARD" image upgrade --output "$work/ov.qcow2" --deb "$deb" "$work/watch/symout.qcow2"
[ ! -e "$work/ov.qcow2" ] && [ ! -e "$work/ov.qcow2.partial" ] || fail "refused upgrade left an overlay"
[ "$(stored)" = 0 ] || fail "a refused image was stored"

# the folder as the watcher sees it: each hostile image is a refused row
"$PAYGUARD" image scan --json "$work/watch" >"$work/dir.json" 2>/dev/null || fail "scan of the folder"
/usr/bin/python3 - "$work/dir.json" <<'PY' || fail "folder scan rows"
import json, sys
rows = {r["path"].rsplit("/", 1)[-1]: r for r in json.load(open(sys.argv[1]))}
for bad in ("shadow.qcow2", "dotdot.qcow2", "symout.qcow2", "absout.qcow2", "deep.qcow2"):
    assert "refused" in rows[bad].get("error", ""), (bad, rows[bad])
for good in ("rel.qcow2", "abs.qcow2", "chain3.qcow2", "alias.qcow2", "base.img"):
    assert not rows[good].get("error"), (good, rows[good])
PY

# an operator-named folder is allowed, however the name reaches it
"$PAYGUARD" image scan --backing-dir "$work/outside" dotdot.qcow2 symout.qcow2 absout.qcow2 >/dev/null 2>"$work/err" \
	|| { cat "$work/err"; fail "--backing-dir did not allow the folder"; }
refused "--backing-dir does not open other folders" "outside the image's folder" \
	"$PAYGUARD" image scan --backing-dir "$work/outside" shadow.qcow2
rc=0; "$PAYGUARD" image scan --backing-dir "$work/nosuch" rel.qcow2 >/dev/null 2>"$work/err" || rc=$?
[ $rc != 0 ] && grep -q "backing folder" "$work/err" || fail "--backing-dir of a missing folder accepted"

# an overlay under the data dir names the original in another folder: still commits
"$PAYGUARD" image upgrade --json --deb "$deb" "$work/watch/rel.qcow2" >"$work/up.json" 2>/dev/null || fail "upgrade rel.qcow2"
job=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["job"])' "$work/up.json")
"$PAYGUARD" image commit --output "$work/merged.img" "$job" >/dev/null || fail "commit of a data-dir overlay"
qemu-img info "$work/merged.img" | grep -q "file format: raw" || fail "merged image"
echo "backing: /etc/shadow, ../x, symlink out refused (exit 3); same-folder, chains, --backing-dir accepted"
