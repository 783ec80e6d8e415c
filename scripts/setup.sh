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
# Another apt (unattended-upgrades on a fresh machine, a second set-up) may
# hold the package locks: wait for it rather than fail. apt-get waits for
# the dpkg lock itself (DPkg::Lock::Timeout), but apt 2.6 does not wait for
# the lists lock `apt-get update` takes, so a busy lock is also retried here,
# for the same time at most.
lock_wait=${PG_APT_LOCK_TIMEOUT:-600}
retry_every=${PG_APT_RETRY_SECONDS:-5}
apt_get() {
	local start=$SECONDS log rc
	log=$(mktemp)
	while :; do
		rc=0
		$SUDO apt-get -o DPkg::Lock::Timeout="$lock_wait" "$@" 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
		if [ "$rc" -eq 0 ]; then
			rm -f "$log"
			return 0
		fi
		if ! grep -q 'Could not get lock' "$log" || [ $((SECONDS - start)) -ge "$lock_wait" ]; then
			rm -f "$log"
			return "$rc"
		fi
		echo "setup.sh: another apt holds a lock; trying again in ${retry_every}s" >&2
		sleep "$retry_every"
	done
}
apt_get update -q
# shellcheck disable=SC2086
apt_get install -y -q --no-install-recommends $pkgs
# The dashboard's browser test (tests/browser, issue 9): playwright-core at
# the version pinned in package-lock.json; it drives the Debian chromium
# installed above, so no browser is downloaded.
if command -v npm >/dev/null; then
	(cd "$here/../tests/browser" && npm ci --no-audit --no-fund)
else
	echo "setup.sh: npm not found; the serve_browser test needs it (tests/browser)" >&2
	exit 1
fi
