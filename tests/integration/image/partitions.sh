#!/usr/bin/env bash
# MBR with an extended partition: the root filesystem in logical partition 5
# is found and inventoried; a swap partition and an empty primary are named;
# a FAT partition is reported as not supported.
set -euo pipefail
: "${PAYGUARD:?}"
PATH=$PATH:/usr/sbin:/sbin
fail() { echo "FAIL: $*" >&2; exit 1; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
export PAYGUARD_DATA_DIR=$work/data
"$PAYGUARD" image demo --dir "$work/demo" >/dev/null 2>&1 || fail "demo image"
dd if="$work/demo/demo-disk.img" of="$work/root.fs" bs=1M skip=1 status=none
truncate -s 100M "$work/mbr.img"
sfdisk -q "$work/mbr.img" <<'EOS'
label: dos
start=2048, size=8M, type=c
start=18432, size=80M, type=5
start=20480, size=34M, type=83
start=92160, size=8M, type=82
EOS
dd if="$work/root.fs" of="$work/mbr.img" bs=512 seek=20480 conv=notrunc,sparse status=none
dd if=/dev/zero of="$work/swap" bs=1M count=8 status=none && mkswap -q "$work/swap" >/dev/null
dd if="$work/swap" of="$work/mbr.img" bs=512 seek=92160 conv=notrunc status=none
if command -v mkfs.vfat >/dev/null; then
	mkfs.vfat -C "$work/fat" 8192 >/dev/null && dd if="$work/fat" of="$work/mbr.img" bs=512 seek=2048 conv=notrunc status=none
fi
"$PAYGUARD" image scan "$work/mbr.img" >/dev/null || fail "scan"
"$PAYGUARD" image show --json 1 >"$work/show"
/usr/bin/python3 - "$work/show" <<'PY' || fail "partitions"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["ptable"] == "mbr", d["ptable"]
p = {x["idx"]: x for x in d["partitions"]}
assert sorted(p) == [1, 2, 5, 6], sorted(p)
assert p[2]["fs"] == "extended" and p[2]["type"] == "0x05"
assert p[5]["logical"] == 1 and p[5]["fs"] == "ext4" and p[5]["is_root"] == 1 and p[5]["start"] == 20480 * 512
assert p[6]["logical"] == 1 and p[6]["fs"] == "swap" and p[6]["supported"] == 0
if p[1]["fs"] is not None:
    assert p[1]["fs"] == "vfat" and p[1]["supported"] == 0, p[1]
assert len(d["packages"]) == 3 and d["os_version_id"] == "12"
assert d["kernels"][0]["path"] == "/boot/vmlinuz-6.1.0-99-amd64"
PY
echo "partitions: MBR + EBR chain, root in a logical partition, swap/FAT named"
