#!/usr/bin/env bash
# Acceptance: new versions of real packages (rebuilt with dpkg-deb --build:
# hostname plain, ncurses-base with conffiles, mawk with maintainer scripts)
# applied offline. The original stays byte-identical; qemu-img check finds
# the overlay clean; e2fsck -fn finds the filesystem clean; debugfs rdump +
# dpkg --verify pass; dpkg-query shows the new versions and states; a
# locally changed conffile is kept with the new one beside it; commit and
# rollback work.
. "$(dirname "$0")/lib.sh"
here=$(dirname "$0")
mkdir -p "$work/debs"
for p in hostname mawk; do /usr/bin/python3 "$here/mkdeb.py" "$ROOT" $p "$work/debs" >/dev/null; done
/usr/bin/python3 "$here/mkdeb.py" "$ROOT" ncurses-base "$work/debs" --change-conffile /etc/terminfo/README >/dev/null
debs=("$work"/debs/*.deb)
[ ${#debs[@]} -eq 3 ] || fail "expected 3 debs"

mkfs.ext4 -q -F -L root -d "$ROOT" "$work/disk.fs" 600M
# the admin changed a conffile: it must survive the upgrade
printf 'local change\n' >"$work/readme"
debugfs -w -R "rm /etc/terminfo/README" "$work/disk.fs" >/dev/null 2>&1
debugfs -w -R "write $work/readme /etc/terminfo/README" "$work/disk.fs" >/dev/null 2>&1
pack_gpt "$work/disk.fs" "$work/disk.img" 600
qemu-img convert -O qcow2 "$work/disk.img" "$work/disk.qcow2"
sha_raw=$(sha256sum <"$work/disk.img"); sha_q=$(sha256sum <"$work/disk.qcow2")

for fmt in img qcow2; do
	img=$work/disk.$fmt ov=$work/up-$fmt.qcow2
	args=(); for d in "${debs[@]}"; do args+=(--deb "$d"); done
	"$PAYGUARD" image upgrade --json --output "$ov" "${args[@]}" "$img" >"$work/res-$fmt.json" \
		|| fail "upgrade of $fmt"
	qemu-img check "$ov" >"$work/check" 2>&1 || { cat "$work/check"; fail "qemu-img check ($fmt)"; }
	grep -q "No errors were found" "$work/check" || fail "qemu-img check output ($fmt)"
	qemu-img info --output=json "$ov" | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["format"] == "qcow2" and d["backing-filename"] == sys.argv[1], d' "$img" || fail "backing file"
	extract_fs "$ov" "$work/up.fs" 600
	e2fsck -fn "$work/up.fs" >"$work/fsck" 2>&1 || { cat "$work/fsck"; fail "e2fsck -fn ($fmt)"; }
	rm -rf "$work/dump"; mkdir "$work/dump"
	debugfs -R "rdump / $work/dump" "$work/up.fs" >/dev/null 2>&1
	rm -f "$work/up.fs"
	for p in hostname mawk ncurses-base; do
		dpkg --root="$work/dump" --verify $p >"$work/verify" 2>&1 || true
		if [ $p = ncurses-base ]; then
			# only the locally changed conffile differs, as dpkg reports it
			[ "$(cat "$work/verify")" = "??5?????? c /etc/terminfo/README" ] \
				|| { cat "$work/verify"; fail "dpkg --verify $p ($fmt)"; }
		else
			[ ! -s "$work/verify" ] || { cat "$work/verify"; fail "dpkg --verify $p ($fmt)"; }
		fi
	done
	dpkg --root="$work/dump" --verify >"$work/verify-all" 2>&1 || true
	[ "$(grep -vc 'etc/terminfo/README' "$work/verify-all")" = 0 ] \
		|| { cat "$work/verify-all"; fail "dpkg --verify (all packages)"; }
	dpkg-query --admindir="$work/dump/var/lib/dpkg" -W -f='${Package} ${Version} ${Status}\n' \
		hostname mawk ncurses-base >"$work/q"
	cat >"$work/q.want" <<EOQ
hostname 3.23+nmu1+pg1 install ok installed
mawk 1.3.4.20200120-3.1+pg1 install ok unpacked
ncurses-base 6.4-4+pg1 install ok installed
EOQ
	diff -u "$work/q.want" "$work/q" || fail "dpkg-query states ($fmt)"
	[ "$(cat "$work/dump/etc/terminfo/README")" = "local change" ] || fail "local conffile lost"
	grep -q "^# new in 6.4-4+pg1" "$work/dump/etc/terminfo/README.dpkg-dist" || fail "no .dpkg-dist"
	[ -e "$work/dump/usr/share/doc/hostname/payguard-upgraded" ] || fail "new file missing"
	[ ! -e "$work/dump/usr/share/doc/hostname/copyright" ] || fail "dropped file still there"
	[ -L "$work/dump/etc/systemd/system/multi-user.target.wants/payguard-firstboot.service" ] \
		|| fail "first-boot unit not enabled"
	grep -q "ExecStart=/usr/bin/dpkg --configure -a" "$work/dump/etc/systemd/system/payguard-firstboot.service" \
		|| fail "first-boot unit"
	# the rest of the root is untouched: every other package verifies
	dpkg_tsv "$work/dump/var/lib/dpkg" | grep -v -e '^hostname' -e '^mawk' -e '^ncurses-base' >"$work/rest"
	dpkg_tsv "$ROOT/var/lib/dpkg" | grep -v -e '^hostname' -e '^mawk' -e '^ncurses-base' >"$work/rest.want"
	diff -q "$work/rest.want" "$work/rest" >/dev/null || fail "other packages changed"
done
[ "$(sha256sum <"$work/disk.img")" = "$sha_raw" ] || fail "original raw image changed"
[ "$(sha256sum <"$work/disk.qcow2")" = "$sha_q" ] || fail "original qcow2 image changed"

# jobs, commit into a standalone image, rollback
"$PAYGUARD" image jobs --json >"$work/jobs.json"
/usr/bin/python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
assert [x["state"] for x in j] == ["done", "done"], j
assert "unpacked" in j[0]["log"], j[0]["log"]' "$work/jobs.json" || fail "jobs"
"$PAYGUARD" image commit --output "$work/merged.img" 1 || fail "commit"
qemu-img info "$work/merged.img" >"$work/minfo"
grep -q "file format: raw" "$work/minfo" || fail "merged format"
grep -q "backing file" "$work/minfo" && fail "merged image still has a backing file"
extract_fs "$work/merged.img" "$work/m.fs" 600
e2fsck -fn "$work/m.fs" >/dev/null 2>&1 || fail "e2fsck on merged image"
"$PAYGUARD" image scan "$work/merged.img" >/dev/null || fail "scan merged"
"$PAYGUARD" image show --json "$work/merged.img" >"$work/merged.json" || fail "show merged"
grep -q '"6.4-4+pg1"' "$work/merged.json" || fail "merged inventory"
"$PAYGUARD" image rollback 2 || fail "rollback"
[ ! -e "$work/up-qcow2.qcow2" ] || fail "rollback left the overlay"
"$PAYGUARD" image jobs --json >"$work/jobs2.json" || fail "jobs"
grep -q '"rolledback"' "$work/jobs2.json" || fail "rollback state"
[ "$(sha256sum <"$work/disk.qcow2")" = "$sha_q" ] || fail "original qcow2 changed by rollback"
echo "upgrade: 3 packages on raw and qcow2 originals; qemu-img check, e2fsck -fn, dpkg --verify clean"
