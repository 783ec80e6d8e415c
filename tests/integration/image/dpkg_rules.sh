#!/usr/bin/env bash
# Issue 13 items 10 and 12: the offline upgrade writes what dpkg itself
# writes. One root, made by dpkg --root installing version 1 of a few
# packages (built here with dpkg-deb), with two conffiles edited locally;
# then the same .debs applied twice: by `dpkg --root --force-confold -i` on
# a copy and by `payguard image upgrade` on an ext4 image of it. Compared:
#  - conffiles (dpkg's rule): edited locally and unchanged by the package ->
#    kept silently, nothing beside it; edited and changed -> kept, new one
#    in .dpkg-dist; not edited -> the new one; every name and content equal;
#  - Multi-Arch: same (a fresh install, an upgrade, a package that becomes
#    Multi-Arch: same): the info file names (<name>:<arch>.list, .md5sums,
#    .conffiles, .shlibs, ...) and their contents (.md5sums: the package's
#    member as it is, or computed over every file when it has none);
#  - the status entries as dpkg-query reads them.
set -euo pipefail
. "$(dirname "$0")/helpers.sh"
arch=$(dpkg --print-architecture)

# mkpkg NAME VERSION MULTIARCH(-|same) [CONFFILE=CONTENT]... : a .deb with
# one library-like file, its conffiles, a shlibs file and an md5sums
# member that leaves conffiles out (as dh_md5sums does); with NOMD5=1 no
# md5sums member (dpkg then computes one, conffiles included)
mkpkg() {
	local name=$1 ver=$2 ma=$3 st; shift 3
	st=$(mktemp -d "$work/st.XXXXXX")
	mkdir -p "$st/DEBIAN" "$st/usr/lib/pgtest/$name"
	{
		printf 'Package: %s\nVersion: %s\nArchitecture: %s\n' "$name" "$ver" "$arch"
		[ "$ma" = - ] || printf 'Multi-Arch: %s\n' "$ma"
		printf 'Maintainer: test <test@example.org>\nPriority: optional\nSection: libs\n'
		printf 'Description: payguard dpkg-rules test package\n'
	} >"$st/DEBIAN/control"
	printf '%s %s\n' "$name" "$ver" >"$st/usr/lib/pgtest/$name/data"
	printf 'lib%s 1 %s (>= %s)\n' "$name" "$name" "$ver" >"$st/DEBIAN/shlibs"
	: >"$st/DEBIAN/conffiles.tmp"
	for cf in "$@"; do
		mkdir -p "$st$(dirname "${cf%%=*}")"
		printf '%s\n' "${cf#*=}" >"$st${cf%%=*}"
		echo "${cf%%=*}" >>"$st/DEBIAN/conffiles.tmp"
	done
	if [ -s "$st/DEBIAN/conffiles.tmp" ]; then mv "$st/DEBIAN/conffiles.tmp" "$st/DEBIAN/conffiles"
	else rm "$st/DEBIAN/conffiles.tmp"; fi
	[ -n "${NOMD5:-}" ] || (cd "$st" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort |
		grep -vxF -f <(sed 's|^/||' DEBIAN/conffiles 2>/dev/null || true) | xargs -r md5sum) >"$st/DEBIAN/md5sums"
	dpkg-deb --root-owner-group --build "$st" "$work/debs/${name}_${ver}_$arch.deb" >/dev/null
	rm -rf "$st"
}
mkdir -p "$work/debs" "$work/v1"
# version 1 of cfgpkg: four conffiles, a.conf and b.conf to be edited
mkpkg cfgpkg 1.0 - /etc/pgtest/a.conf=a-1 /etc/pgtest/b.conf=b-1 /etc/pgtest/c.conf=c-1 /etc/pgtest/d.conf=d-1
mkpkg libpgold1 1.0 same /etc/pgtest/old.conf=old-1
mkpkg libpgmig1 1.0 -
mv "$work"/debs/*.deb "$work/v1/"
# version 2: a.conf and c.conf unchanged, b.conf and d.conf changed
mkpkg cfgpkg 2.0 - /etc/pgtest/a.conf=a-1 /etc/pgtest/b.conf=b-2 /etc/pgtest/c.conf=c-1 /etc/pgtest/d.conf=d-2
mkpkg libpgold1 2.0 same /etc/pgtest/old.conf=old-2
mkpkg libpgmig1 2.0 same
NOMD5=1 mkpkg libpgnew1 1.0 same /etc/pgtest/new.conf=new-1

# the root: a Debian-like tree whose dpkg database dpkg itself wrote
make_small_root "$work/root"
r=$work/root
mkdir -p "$r/var/lib/dpkg/updates" "$r/var/lib/dpkg/triggers"
touch "$r/var/lib/dpkg/available"
echo 1 >"$r/var/lib/dpkg/info/format"
dpkg --root="$r" --force-architecture -i "$work"/v1/*.deb >"$work/dpkg1.log" 2>&1 \
	|| { cat "$work/dpkg1.log"; fail "dpkg -i version 1"; }
[ -e "$r/var/lib/dpkg/info/libpgold1:$arch.list" ] || fail "dpkg did not write libpgold1:$arch.list"
printf 'a-local\n' >"$r/etc/pgtest/a.conf"
printf 'b-local\n' >"$r/etc/pgtest/b.conf"

# dpkg's answer, on a copy
cp -a "$r" "$work/want"
dpkg --root="$work/want" --force-confold --force-architecture -i "$work"/debs/*.deb >"$work/dpkg2.log" 2>&1 \
	|| { cat "$work/dpkg2.log"; fail "dpkg -i version 2"; }
# ours, offline on an image of the same root
make_gpt_image "$r" "$work/disk.img" 64
args=(); for d in "$work"/debs/*.deb; do args+=(--deb "$d"); done
"$PAYGUARD" image upgrade --output "$work/ov.qcow2" "${args[@]}" "$work/disk.img" >/dev/null 2>"$work/up.log" \
	|| { cat "$work/up.log"; fail "payguard image upgrade"; }
extract_fs "$work/ov.qcow2" "$work/up.fs" 64
mkdir "$work/got"
debugfs -R "rdump /etc /var $work/got" "$work/up.fs" >/dev/null 2>&1
rm -f "$work/up.fs"
mkdir -p "$work/got/var/lib/dpkg/updates"

# conffiles: the same names and contents under /etc/pgtest
listing() { (cd "$1/etc/pgtest" && for f in $(ls -A | sort); do printf '%s: %s\n' "$f" "$(cat "$f")"; done); }
listing "$work/want" >"$work/conf.want"
listing "$work/got" >"$work/conf.got"
diff -u "$work/conf.want" "$work/conf.got" || fail "conffiles differ from dpkg's (--- dpkg, +++ payguard)"
grep -qx 'a.conf: a-local' "$work/conf.got" && ! grep -q '^a.conf.dpkg' "$work/conf.got" \
	|| fail "a.conf: edited, unchanged by the package: must be kept with nothing beside it"
grep -qx 'b.conf.dpkg-dist: b-2' "$work/conf.got" || fail "b.conf: no .dpkg-dist"

# info files of the packages: the same names and contents
info() {
	(cd "$1/var/lib/dpkg/info" && for f in $(ls | grep -E '^(cfgpkg|libpg)' | sort); do
		printf '== %s\n' "$f"; sort "$f"; done)
}
info "$work/want" >"$work/info.want"
info "$work/got" >"$work/info.got"
diff -u <(grep '^==' "$work/info.want") <(grep '^==' "$work/info.got") \
	|| fail "info file names differ from dpkg's (--- dpkg, +++ payguard)"
diff -u "$work/info.want" "$work/info.got" || fail "info file contents differ from dpkg's"
grep -qx "== libpgnew1:$arch.list" "$work/info.got" || fail "fresh Multi-Arch: same install not <name>:<arch>.list"

# the status entries
q() {
	dpkg-query --admindir="$1/var/lib/dpkg" -W \
		-f='${Package} ${Architecture} ${Multi-Arch} ${Version} ${Status}\n${Conffiles}\n' \
		cfgpkg libpgold1 libpgmig1 libpgnew1
}
q "$work/want" >"$work/q.want"
q "$work/got" >"$work/q.got"
diff -u "$work/q.want" "$work/q.got" || fail "dpkg-query differs"
echo "dpkg rules: conffiles, Multi-Arch info names and status equal to dpkg --force-confold"
