#!/usr/bin/env bash
# The main job on embedded defaults: builds payguard and runs the demo with
# a throw-away data directory (SQLite; nothing to configure).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
export PAYGUARD_DATA_DIR=${PAYGUARD_DATA_DIR:-$PWD/build/demo-data}
exec build/src/payguard demo run "$@"
