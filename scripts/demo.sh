#!/usr/bin/env bash
# The main job on embedded defaults: builds payguard and runs every area's
# demo with a throw-away data directory (SQLite; nothing to configure).
# When no pcscd is running it starts one with the vpcd reader for the run,
# so the SE part also shows PC/SC through the real stack, and stops it after.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
export PAYGUARD_DATA_DIR=${PAYGUARD_DATA_DIR:-$PWD/build/demo-data}
mkdir -p "$PAYGUARD_DATA_DIR"
pcscd_pid=""
if [ "$(id -u)" -eq 0 ] && command -v pcscd >/dev/null && ! pgrep -x pcscd >/dev/null; then
	pcscd_pid=$(bash scripts/se-pcscd.sh start "$PAYGUARD_DATA_DIR/pcscd.log") || pcscd_pid=""
fi
stop_pcscd() { [ -z "$pcscd_pid" ] || bash scripts/se-pcscd.sh stop "$pcscd_pid"; }
trap stop_pcscd EXIT
build/src/payguard demo run "$@"
