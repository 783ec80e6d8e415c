#!/usr/bin/env bash
# Builds the Debian package from the tree: copies the tracked files (the work
# tree's content) to OUTDIR/payguard-VERSION and runs dpkg-buildpackage there,
# so the .deb lands in OUTDIR (default: build-deb/) and the tree stays clean.
# usage: scripts/package.sh [OUTDIR]   then: apt-get install ./OUTDIR/payguard_*.deb
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$src/build-deb}" && cd "${1:-$src/build-deb}" && pwd)
ver=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
tree=$out/payguard-$ver
rm -rf "$tree"
mkdir -p "$tree"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	# tracked files that exist (a deletion not yet committed is skipped)
	(cd "$src" && git ls-files -z | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' |
		tar --null -T - -cf -) | tar -xf - -C "$tree"
else
	tar -C "$src" --exclude='./build*' --exclude=./.git --exclude='*/node_modules' -cf - . | tar -xf - -C "$tree"
fi
cd "$tree"
DEB_BUILD_OPTIONS="nocheck parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" dpkg-buildpackage -us -uc -b
ls "$out"/payguard_"$ver"_*.deb
