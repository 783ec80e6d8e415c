#!/usr/bin/env bash
# Helpers shared by the image integration tests that need no debootstrap
# root: peer tools check, fail, GPT packing and partition extraction.
set -euo pipefail
: "${PAYGUARD:?}" "${PG_SOURCE_DIR:?}" "${PG_BUILD_DIR:?}"
for t in qemu-img mkfs.ext4 sfdisk e2fsck debugfs dpkg-query dpkg-deb; do
	command -v "$t" >/dev/null || PATH=$PATH:/usr/sbin:/sbin
	command -v "$t" >/dev/null || { echo "FAIL: $t missing (run scripts/setup.sh)"; exit 1; }
done
fail() { echo "FAIL: $*" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/pg-image-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
export PAYGUARD_DATA_DIR=$work/data

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

# make_small_root DIR: a Debian 12-like root with a dpkg database of two
# packages, base-files and bigdata 1.0 (one small file), in seconds.
make_small_root() {
	local r=$1
	mkdir -p "$r/etc" "$r/usr/lib" "$r/usr/share/bigdata" "$r/var/lib/dpkg/info"
	printf 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n' \
		>"$r/usr/lib/os-release"
	ln -sf ../usr/lib/os-release "$r/etc/os-release"
	printf 'bigdata 1.0\n' >"$r/usr/share/bigdata/blob"
	cat >"$r/var/lib/dpkg/status" <<EOS
Package: base-files
Status: install ok installed
Priority: required
Architecture: amd64
Version: 12.4+deb12u5
Maintainer: test
Description: Debian base system miscellaneous files

Package: bigdata
Status: install ok installed
Priority: optional
Architecture: all
Version: 1.0
Maintainer: test
Description: a package whose new version carries one big file

EOS
	printf '/.\n/usr\n/usr/share\n/usr/share/bigdata\n/usr/share/bigdata/blob\n' \
		>"$r/var/lib/dpkg/info/bigdata.list"
	(cd "$r" && md5sum usr/share/bigdata/blob) >"$r/var/lib/dpkg/info/bigdata.md5sums"
}

# make_big_deb OUT.deb MB COMPRESSOR(none|gzip|xz|zstd) [random|text]:
# bigdata 2.0 with usr/share/bigdata/blob of MB MiB (random bytes, or
# counter lines that compress well) and a small README.
make_big_deb() {
	local out=$1 mb=$2 z=$3 kind=${4:-random} st
	st=$(mktemp -d "$work/deb.XXXXXX")
	mkdir -p "$st/DEBIAN" "$st/usr/share/bigdata" "$st/usr/share/doc/bigdata"
	printf 'Package: bigdata\nVersion: 2.0\nArchitecture: all\nMaintainer: test\nPriority: optional\nDescription: a package whose new version carries one big file\n' \
		>"$st/DEBIAN/control"
	if [ "$kind" = random ]; then
		head -c $((mb << 20)) /dev/urandom >"$st/usr/share/bigdata/blob"
	else
		/usr/bin/python3 -c '
import sys
n = int(sys.argv[1]) << 20
line = b"%016x payguard big package test line, compressible\n"
with open(sys.argv[2], "wb") as f:
    buf = bytearray(); i = 0
    while n > 0:
        while len(buf) < (1 << 20):
            buf += line % i; i += 1
        chunk = bytes(buf[:min(n, 1 << 20)]); f.write(chunk); n -= len(chunk); buf = buf[len(chunk):]' \
			"$mb" "$st/usr/share/bigdata/blob"
	fi
	printf 'bigdata 2.0\n' >"$st/usr/share/doc/bigdata/README"
	local lvl=()
	[ "$z" = xz ] && lvl=(-z1)
	dpkg-deb --root-owner-group -Z"$z" "${lvl[@]}" --build "$st" "$out" >/dev/null
	cp "$st/usr/share/bigdata/blob" "$out.blob"
	rm -rf "$st"
}
