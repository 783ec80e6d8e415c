#!/usr/bin/env bash
# Builds (once) a Debian 12 minbase root folder with debootstrap and its
# default mirror, cached under the build directory so repeated test runs do
# not download again: scripts/image-rootfs.sh CACHE_DIR -> prints the root.
set -euo pipefail
cache=${1:?cache dir}
root=$cache/bookworm-minbase
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ ! -f "$root.complete" ]; then
	rm -rf "$root" "$root.tmp" "$root.complete"
	command -v debootstrap >/dev/null || { echo "debootstrap missing: run scripts/setup.sh" >&2; exit 1; }
	debootstrap --variant=minbase bookworm "$root.tmp" >"$cache/debootstrap.log" 2>&1 || {
		tail -20 "$cache/debootstrap.log" >&2; exit 1; }
	rm -rf "$root.tmp/var/cache/apt/archives/"*.deb
	mv "$root.tmp" "$root"
	touch "$root.complete"
fi
echo "$root"
