#!/usr/bin/env bash
# Acceptance (bad input): truncated qcow2, L1 table past the end, backing-
# chain loop, corrupt GPT, corrupt ext4 superblock, journal needing
# recovery, .deb with ../ or absolute paths, .deb that is not an ar archive,
# a non-image file, a symlink in the image pointing at a host path. Each
# gives a clear error, a non-zero exit, and leaves nothing behind.
set -euo pipefail
: "${PAYGUARD:?}"
PATH=$PATH:/usr/sbin:/sbin
fail() { echo "FAIL: $*" >&2; exit 1; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
export PAYGUARD_DATA_DIR=$work/data
. "$(dirname "$0")/store.sh"
"$PAYGUARD" image demo --dir "$work/demo" >/dev/null 2>&1 || fail "demo image"
good=$work/demo/demo-disk.img
deb=$work/demo/demo-tool_1.0-2_amd64.deb

# expect_fail WHAT PATTERN CMD...: non-zero exit, PATTERN in the message
expect_fail() {
	local what=$1 pat=$2; shift 2
	if "$@" >"$work/out" 2>"$work/err"; then fail "$what: accepted"; fi
	grep -q -- "$pat" "$work/err" || { cat "$work/err"; fail "$what: message lacks '$pat'"; }
	echo "ok: $what -> $(grep -m1 payguard: "$work/err")"
}
no_images() {
	"$PAYGUARD" image list --json >"$work/list"
	[ "$(tr -d ' \n' <"$work/list")" = "[]" ] || { cat "$work/list"; fail "$1 left an image in the store"; }
}

qemu-img convert -O qcow2 "$good" "$work/good.qcow2"
head -c 50 "$work/good.qcow2" >"$work/trunc-hdr.qcow2"
expect_fail "qcow2 truncated in its header" "truncated qcow2 header" "$PAYGUARD" image scan "$work/trunc-hdr.qcow2"
size=$(stat -c %s "$work/good.qcow2")
head -c $((size / 2)) "$work/good.qcow2" >"$work/trunc.qcow2"
expect_fail "qcow2 truncated in its data" "past the end\|file ends\|truncated" "$PAYGUARD" image scan "$work/trunc.qcow2"
cp "$work/good.qcow2" "$work/l1.qcow2"
printf '\x00\x00\x00\x10\x00\x00\x00\x00' | dd of="$work/l1.qcow2" bs=1 seek=40 conv=notrunc status=none
expect_fail "L1 table past the end" "L1 table at .* past the end of the file" "$PAYGUARD" image scan "$work/l1.qcow2"
qemu-img create -q -f qcow2 -b "$work/good.qcow2" -F qcow2 "$work/a.qcow2"
qemu-img create -q -f qcow2 -b "$work/a.qcow2" -F qcow2 "$work/b.qcow2"
qemu-img rebase -q -u -b "$work/b.qcow2" -F qcow2 "$work/a.qcow2"
expect_fail "backing-chain loop" "backing chain loop" "$PAYGUARD" image scan "$work/b.qcow2"
qemu-img create -q -f qcow2 "$work/self.qcow2" 64M
qemu-img rebase -q -u -b "$work/self.qcow2" -F qcow2 "$work/self.qcow2"
expect_fail "qcow2 that backs itself" "backing chain loop" "$PAYGUARD" image scan "$work/self.qcow2"
no_images "bad qcow2"

truncate -s 40M "$work/gpt.img"
printf 'label: gpt\nstart=2048, size=40000, type=L\n' | sfdisk -q "$work/gpt.img"
"$PAYGUARD" image scan "$work/gpt.img" >/dev/null || fail "valid GPT refused"
new_store
# primary entries: the first byte of entry 1's type GUID (0xaf for Linux);
# byte 20 was in the random partition GUID, already 0xff one time in 256
printf '\xff' | dd of="$work/gpt.img" bs=1 seek=1024 conv=notrunc status=none
printf '\xff' | dd of="$work/gpt.img" bs=1 seek=$((40 * 1048576 - 512 + 40)) conv=notrunc status=none # backup header
expect_fail "corrupt GPT (primary and backup)" "corrupt GPT.*CRC32 mismatch" "$PAYGUARD" image scan "$work/gpt.img"
no_images "corrupt GPT"

cp "$good" "$work/badsb.img"
printf '\x07' | dd of="$work/badsb.img" bs=1 seek=$((1048576 + 1024 + 24)) conv=notrunc status=none
expect_fail "corrupt ext4 superblock" "cannot open the ext2/3/4 filesystem" "$PAYGUARD" image scan "$work/badsb.img"
no_images "corrupt superblock"

printf 'hello\n' | gzip >"$work/notimage.img"
expect_fail "gzip file as an image" "found gzip-compressed data" "$PAYGUARD" image scan "$work/notimage.img"
head -c 4096 /dev/zero >"$work/zeros.img"
expect_fail "blank file as an image" "unrecognised content" "$PAYGUARD" image scan "$work/zeros.img"
no_images "non-images"

# .debs that must be refused before anything is written
/usr/bin/python3 - "$work" <<'PY'
import io, sys, tarfile, time
w = sys.argv[1]
def tar(members):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w:gz") as t:
        for name, data in members:
            ti = tarfile.TarInfo(name); ti.size = len(data); ti.mtime = int(time.time())
            t.addfile(ti, io.BytesIO(data))
    return b.getvalue()
def ar(members):
    out = b"!<arch>\n"
    for name, data in members:
        out += ("%-16s%-12d%-6d%-6d%-8s%-10d`\n" % (name, 0, 0, 0, "100644", len(data))).encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    return out
control = tar([("./control", b"Package: demo-tool\nVersion: 9.9-1\nArchitecture: amd64\nMaintainer: x\nDescription: x\n")])
for fname, path in (("dotdot", "./../../../tmp/pg-escape"), ("absolute", "/etc/pg-escape")):
    data = tar([(path, b"escaped\n")])
    open("%s/%s.deb" % (w, fname), "wb").write(ar([("debian-binary", b"2.0\n"), ("control.tar.gz", control), ("data.tar.gz", data)]))
open(w + "/notar.deb", "wb").write(b"This is not a Debian package\n")
PY
for bad in dotdot:"climbs out with '..'" absolute:"absolute path" notar:"no ar archive signature"; do
	name=${bad%%:*} pat=${bad#*:}
	expect_fail ".deb $name" "$pat" "$PAYGUARD" image upgrade --output "$work/ov-$name.qcow2" --deb "$work/$name.deb" "$good"
	[ ! -e "$work/ov-$name.qcow2" ] && [ ! -e "$work/ov-$name.qcow2.partial" ] || fail ".deb $name left an overlay"
done
[ ! -e /tmp/pg-escape ] && [ ! -e /etc/pg-escape ] || fail "a package path escaped to the host"

# journal needing recovery: refused, no overlay
cp "$good" "$work/dirty.img"
dd if="$work/dirty.img" of="$work/dirty.fs" bs=1M skip=1 status=none
debugfs -w -R "feature needs_recovery" "$work/dirty.fs" >/dev/null 2>&1
dd if="$work/dirty.fs" of="$work/dirty.img" bs=1M seek=1 conv=notrunc status=none
expect_fail "journal needs recovery" "journal needs recovery" "$PAYGUARD" image upgrade --output "$work/ov-dirty.qcow2" --deb "$deb" "$work/dirty.img"
[ ! -e "$work/ov-dirty.qcow2" ] && [ ! -e "$work/ov-dirty.qcow2.partial" ] || fail "dirty journal left an overlay"

# a symlink in the image pointing at a host folder is resolved inside the image
mkdir -p "$work/canary"
cp "$good" "$work/link.img"
dd if="$work/link.img" of="$work/link.fs" bs=1M skip=1 status=none
debugfs -w -R "symlink /opt $work/canary" "$work/link.fs" >/dev/null 2>&1
dd if="$work/link.fs" of="$work/link.img" bs=1M seek=1 conv=notrunc status=none
/usr/bin/python3 - "$work" <<'PY'
import io, sys, tarfile, time
w = sys.argv[1]
def tar(members):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w:gz") as t:
        for name, data in members:
            ti = tarfile.TarInfo(name); ti.size = len(data); ti.mtime = int(time.time())
            t.addfile(ti, io.BytesIO(data))
    return b.getvalue()
def ar(members):
    out = b"!<arch>\n"
    for name, data in members:
        out += ("%-16s%-12d%-6d%-6d%-8s%-10d`\n" % (name, 0, 0, 0, "100644", len(data))).encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    return out
control = tar([("./control", b"Package: optpkg\nVersion: 1.0\nArchitecture: all\nMaintainer: x\nDescription: x\n")])
data = tar([("./opt/x", b"inside\n")])
open(w + "/opt.deb", "wb").write(ar([("debian-binary", b"2.0\n"), ("control.tar.gz", control), ("data.tar.gz", data)]))
PY
"$PAYGUARD" image upgrade --output "$work/ov-link.qcow2" --deb "$work/opt.deb" "$work/link.img" >/dev/null 2>"$work/err" || true
[ -z "$(ls -A "$work/canary")" ] || fail "a symlink in the image led a write to the host"
echo "ok: absolute symlink to a host path stays inside the image ($(grep -m1 -o 'dangling symlink[^)]*' "$work/err" || echo written inside the image))"
"$PAYGUARD" image jobs --json >"$work/jobs"
grep -q '"state": "done"' "$work/jobs" && ! grep -q '"ov-link' "$work/jobs" && fail "unexpected done job"
echo "badinput: ok"
