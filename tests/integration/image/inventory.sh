#!/usr/bin/env bash
# Acceptance: a Debian 12 minbase root (debootstrap) packed into ext4 in a
# GPT raw image and a qcow2 copy; each inventory matches dpkg-query on the
# root folder package by package; partition, OS and format are right.
. "$(dirname "$0")/lib.sh"
make_gpt_image "$ROOT" "$work/disk.img"
qemu-img convert -O qcow2 "$work/disk.img" "$work/disk.qcow2"
# a compressed qcow2 and a two-level backing chain read the same bytes
qemu-img convert -c -O qcow2 "$work/disk.img" "$work/disk-c.qcow2"
qemu-img create -q -f qcow2 -b "$work/disk-c.qcow2" -F qcow2 "$work/top.qcow2"
# qcow2 version 2 (compat=0.10) with small clusters
qemu-img convert -O qcow2 -o compat=0.10,cluster_size=4096 "$work/disk.img" "$work/disk-v2.qcow2"
cp --sparse=always "$work/disk.img" "$work/copy.img"
"$PAYGUARD" image scan "$work/disk.img" "$work/disk.qcow2" "$work/disk-c.qcow2" "$work/top.qcow2" \
	"$work/disk-v2.qcow2" || fail "scan"
dpkg_tsv "$ROOT/var/lib/dpkg" >"$work/want"
[ "$(wc -l <"$work/want")" -gt 50 ] || fail "dpkg-query listed too few packages"
for id in 1 2 3 4 5; do
	inventory_tsv $id >"$work/got$id"
	diff -u "$work/want" "$work/got$id" || fail "inventory of image $id differs from dpkg-query"
done
"$PAYGUARD" image show --json 2 >"$work/show2.json"
/usr/bin/python3 - "$work" <<'PY' || fail "show fields"
import json, sys, hashlib
w = sys.argv[1]
d = json.load(open(w + "/show2.json"))
assert d["format"] == "qcow2" and d["format_version"] == 3, d["format"]
assert d["ptable"] == "gpt"
assert d["os_id"] == "debian" and d["os_version_id"] == "12", d["os_id"]
p = d["partitions"]
assert len(p) == 1 and p[0]["fs"] == "ext4" and p[0]["start"] == 1048576 and p[0]["is_root"] == 1, p
assert d["virtual_size"] == (700 << 20), d["virtual_size"]
h = hashlib.sha256(open(w + "/disk.qcow2", "rb").read()).hexdigest()
assert d["sha256"] == h, (d["sha256"], h)
PY
"$PAYGUARD" image show --json 4 | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
assert len(d["chain"]) == 1 and d["chain"][0]["format"] == "qcow2", d["chain"]' || fail "chain"
"$PAYGUARD" image list >"$work/list" || fail "list"
grep -q "disk.qcow2" "$work/list" || fail "list"
"$PAYGUARD" image show --json 5 | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["format"] == "qcow2" and d["format_version"] == 2, d["format_version"]' || fail "qcow2 v2"
echo "inventory: $(wc -l <"$work/want") packages match dpkg-query on raw, qcow2 v3, compressed qcow2, a backing chain and qcow2 v2"
