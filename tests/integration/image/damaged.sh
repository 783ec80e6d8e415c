#!/usr/bin/env bash
# Issue 13 item 12: a Linux partition (GPT Linux filesystem type, MBR 0x83)
# whose ext4 superblock magic is zeroed is not "nothing here". Alone on a
# GPT or MBR disk: `image scan` refuses it with exit 3 (as the same damage on
# a disk without a partition table is) and stores nothing; `image upgrade`
# refuses it with exit 3 too. Beside a readable root: scanned, the partition
# shown with fs "unreadable" and a warning. A never-formatted (all-zero)
# Linux partition is still just empty. An image with no root at all is
# refused by `image upgrade` with exit 3 (was 1).
set -euo pipefail
. "$(dirname "$0")/helpers.sh"
"$PAYGUARD" image demo --dir "$work/demo" >/dev/null 2>&1 || fail "demo image"
deb=$work/demo/demo-tool_1.0-2_amd64.deb
dd if="$work/demo/demo-disk.img" of="$work/root.fs" bs=1M skip=1 status=none
mb=$(( $(stat -c %s "$work/root.fs") >> 20 ))
cp "$work/root.fs" "$work/bad.fs"
printf '\0\0' | dd of="$work/bad.fs" bs=1 seek=$((1024 + 56)) conv=notrunc status=none   # s_magic
e2fsck -fn "$work/bad.fs" >/dev/null 2>&1 && fail "e2fsck still reads the damaged copy"

# gpt_disk OUT FS... : one Linux filesystem partition per FS, 1 MiB apart
gpt_disk() {
	local out=$1 start=2048 spec='label: gpt\n'; shift
	for fs in "$@"; do spec+="start=$start, size=$((mb * 2048)), type=L\n"; start=$((start + mb * 2048 + 2048)); done
	truncate -s $(( (start / 2048 + 2) ))M "$out"
	printf "$spec" | sfdisk -q "$out"
	start=2048
	for fs in "$@"; do
		[ "$fs" = blank ] || dd if="$fs" of="$out" bs=512 seek=$start conv=notrunc,sparse status=none
		start=$((start + mb * 2048 + 2048))
	done
}
refused() {
	local what=$1 pat=$2 rc=0; shift 2
	"$@" >"$work/out" 2>"$work/err" || rc=$?
	[ $rc = 3 ] || { cat "$work/err" "$work/out"; fail "$what: exit $rc, want 3"; }
	grep -q -- "$pat" "$work/err" || { cat "$work/err"; fail "$what: message lacks '$pat'"; }
	echo "ok: $what -> $(grep -m1 payguard: "$work/err")"
}
stored() { "$PAYGUARD" image list --json | /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

cp "$work/bad.fs" "$work/whole.img"
refused "damaged superblock, no partition table" "unrecognised content" "$PAYGUARD" image scan "$work/whole.img"
gpt_disk "$work/gpt.img" "$work/bad.fs"
refused "damaged superblock in a GPT partition" "partition 1 is a Linux partition (type 0FC63DAF-8483-4772-8E79-3D69D8477DE4) but holds no readable filesystem" \
	"$PAYGUARD" image scan "$work/gpt.img"
truncate -s $((mb + 4))M "$work/mbr.img"
printf 'label: dos\nstart=2048, type=83\n' | sfdisk -q "$work/mbr.img"
dd if="$work/bad.fs" of="$work/mbr.img" bs=1M seek=1 conv=notrunc,sparse status=none
refused "damaged superblock in an MBR 0x83 partition" "partition 1 is a Linux partition (type 0x83)" \
	"$PAYGUARD" image scan "$work/mbr.img"
[ "$(stored)" = 0 ] || fail "a refused image was stored"
refused "upgrade of the damaged GPT image" "no readable filesystem" \
	"$PAYGUARD" image upgrade --output "$work/ov.qcow2" --deb "$deb" "$work/gpt.img"
[ ! -e "$work/ov.qcow2" ] && [ ! -e "$work/ov.qcow2.partial" ] || fail "refused upgrade left an overlay"

# beside a readable root: scanned, the damaged one named
gpt_disk "$work/two.img" "$work/root.fs" "$work/bad.fs"
"$PAYGUARD" image scan "$work/two.img" >/dev/null 2>"$work/err" || { cat "$work/err"; fail "root + damaged partition refused"; }
grep -q "partition 2 is a Linux partition with no readable filesystem" "$work/err" || { cat "$work/err"; fail "no warning"; }
"$PAYGUARD" image show --json "$work/two.img" | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
p = {x["idx"]: x for x in d["partitions"]}
assert p[1]["fs"] == "ext4" and p[1]["is_root"] == 1, p[1]
assert p[2]["fs"] == "unreadable" and p[2]["supported"] == 0, p[2]
assert len(d["packages"]) == 3, d["packages"]' || fail "show of root + damaged partition"

# a never-formatted Linux partition is empty, not damaged; an image with no
# root is refused by upgrade as rejected input (exit 3)
gpt_disk "$work/empty.img" blank
"$PAYGUARD" image scan "$work/empty.img" >/dev/null 2>"$work/err" || { cat "$work/err"; fail "blank partition refused"; }
refused "upgrade of an image with no root" "no ext2/3/4 root filesystem" \
	"$PAYGUARD" image upgrade --output "$work/ov2.qcow2" --deb "$deb" "$work/empty.img"
echo "damaged: GPT/MBR Linux partitions with a damaged superblock refused (exit 3), named beside a root"
