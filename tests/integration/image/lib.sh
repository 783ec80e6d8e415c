#!/usr/bin/env bash
# Shared helpers of the image integration tests: the cached debootstrap
# root and the GPT raw + qcow2 images built from it.
set -euo pipefail
command -v debootstrap >/dev/null || PATH=$PATH:/usr/sbin:/sbin
command -v debootstrap >/dev/null || { echo "FAIL: debootstrap missing (run scripts/setup.sh)"; exit 1; }
. "$(dirname "${BASH_SOURCE[0]}")/helpers.sh"
ROOT=$(bash "$PG_SOURCE_DIR/scripts/image-rootfs.sh" "$PG_BUILD_DIR/image-cache")

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
