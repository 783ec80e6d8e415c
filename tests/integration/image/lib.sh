#!/usr/bin/env bash
# Shared helpers of the image integration tests: the cached debootstrap
# root and the GPT raw + qcow2 images built from it.
set -euo pipefail
: "${PAYGUARD:?}" "${PG_SOURCE_DIR:?}" "${PG_BUILD_DIR:?}"
for t in debootstrap qemu-img mkfs.ext4 sfdisk e2fsck debugfs dpkg-query dpkg-deb; do
	command -v "$t" >/dev/null || PATH=$PATH:/usr/sbin:/sbin
	command -v "$t" >/dev/null || { echo "FAIL: $t missing (run scripts/setup.sh)"; exit 1; }
done
fail() { echo "FAIL: $*" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/pg-image-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
export PAYGUARD_DATA_DIR=$work/data
ROOT=$(bash "$PG_SOURCE_DIR/scripts/image-rootfs.sh" "$PG_BUILD_DIR/image-cache")

# make_gpt_image ROOTDIR OUT.img [MB]: ext4 made with mkfs.ext4 -d inside
# one GPT partition starting at 1 MiB.
make_gpt_image() {
	local root=$1 out=$2 mb=${3:-600}
	mkfs.ext4 -q -F -L root -d "$root" "$out.fs" "${mb}M"
	pack_gpt "$out.fs" "$out" "$mb"
}
# pack_gpt FS.img OUT.img MB: puts a filesystem image into a GPT disk.
pack_gpt() {
	local fs=$1 out=$2 mb=$3
	truncate -s $((mb + 100))M "$out"
	printf 'label: gpt\nstart=2048, size=%d, type=L, name=root\n' $((mb * 2048)) | sfdisk -q "$out"
	dd if="$fs" of="$out" bs=1M seek=1 conv=sparse,notrunc status=none
	rm -f "$fs"
}
# extract_fs DISK(any format) OUT.fs MB: the partition at 1 MiB as a file.
extract_fs() {
	qemu-img convert -O raw "$1" "$2.full"
	dd if="$2.full" of="$2" bs=1M skip=1 count="$3" conv=sparse status=none
	rm -f "$2.full"
}

# inventory_tsv ID: the stored packages as dpkg-query prints them below.
inventory_tsv() {
	"$PAYGUARD" image show --json "$1" | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
for p in d["packages"]:
    print("\t".join([p["name"], p["version"], p["arch"], p["source"], p["source_version"], p["status"]]))' | sort
}
dpkg_tsv() {
	dpkg-query --admindir="$1" -W \
		-f='${Package}\t${Version}\t${Architecture}\t${source:Package}\t${source:Version}\t${Status}\n' | sort
}
