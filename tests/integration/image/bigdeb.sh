#!/usr/bin/env bash
# Large packages: one 256 MiB file in an uncompressed (dpkg-deb -Znone), a
# gzip and an xz .deb, each unpacked through a qcow2 overlay. Checks the
# overlay (qemu-img check), the filesystem (e2fsck -fn), the file's bytes
# (debugfs dump + cmp), the original (sha256), and that memory stays
# bounded: the reader streams, so peak RSS (GNU time) stays far below the
# file size instead of twice it.
. "$(dirname "$0")/helpers.sh"
command -v /usr/bin/time >/dev/null || fail "/usr/bin/time missing (run scripts/setup.sh)"
mb=256
# ASan keeps freed blocks in a quarantine (256 MiB by default) that would
# count in the RSS; a small one makes the figure measure payguard's memory.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=8
make_small_root "$work/root"
make_gpt_image "$work/root" "$work/disk.img" 400
sha=$(sha256sum <"$work/disk.img")
db=${PAYGUARD_STORE:-$work/big.db}
"$PAYGUARD" image scan --db "$db" "$work/disk.img" >/dev/null || fail "scan"
for z in none gzip xz; do
	deb=$work/big-$z.deb ov=$work/ov-$z.qcow2
	make_big_deb "$deb" $mb $z text
	/usr/bin/time -f "%e %M" -o "$work/time" "$PAYGUARD" image upgrade --db "$db" --output "$ov" \
		--deb "$deb" "$work/disk.img" >/dev/null 2>"$work/err" || { cat "$work/err"; fail "upgrade ($z)"; }
	read -r secs rss_kib <"$work/time"
	qemu-img check "$ov" >"$work/check" 2>&1 || { cat "$work/check"; fail "qemu-img check ($z)"; }
	extract_fs "$ov" "$work/up.fs" 400
	e2fsck -fn "$work/up.fs" >"$work/fsck" 2>&1 || { cat "$work/fsck"; fail "e2fsck -fn ($z)"; }
	debugfs -R "dump /usr/share/bigdata/blob $work/blob.out" "$work/up.fs" >/dev/null 2>&1
	cmp -s "$work/blob.out" "$deb.blob" || fail "the 256 MiB file differs ($z)"
	# the old reader held the package and the file in memory: > 2 x 256 MiB
	[ "$rss_kib" -lt $((160 * 1024)) ] || fail "peak RSS $((rss_kib / 1024)) MiB for a $mb MiB file ($z)"
	echo "bigdeb: -Z$z $(stat -c %s "$deb") bytes, $mb MiB file: ${secs} s, peak RSS $((rss_kib / 1024)) MiB"
	rm -f "$ov" "$deb" "$deb.blob" "$work/up.fs" "$work/blob.out"
done
[ "$(sha256sum <"$work/disk.img")" = "$sha" ] || fail "original image changed"
