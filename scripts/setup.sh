#!/usr/bin/env bash
# Installs every Debian package the build, the tests, the benchmarks and the
# demo need, on a fresh Debian 12 machine (run as root). The lists live in
# scripts/packages/*.txt, one file per area, so each area keeps its own.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pkgs=$(cat "$here"/packages/*.txt | sed -e 's/#.*//' | tr -s ' \t' '\n' | sed '/^$/d' | sort -u)
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $pkgs
# The dashboard's browser test (tests/browser, issue 9): playwright-core at
# the version pinned in package-lock.json; it drives the Debian chromium
# installed above, so no browser is downloaded.
if command -v npm >/dev/null; then
	(cd "$here/../tests/browser" && npm ci --no-audit --no-fund)
else
	echo "setup.sh: npm not found; the serve_browser test needs it (tests/browser)" >&2
	exit 1
fi
