#!/usr/bin/env bash
# VSE scale benchmark: release build, 200 VSEs on this machine, APDUs to all.
# Usage: bench/vse/run.sh [COUNT] [APDUS_PER_VSE]
set -euo pipefail
cd "$(dirname "$0")/../.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build build -j2 --target payguard vse_bench >&2
ulimit -n 4096
exec build/bench/vse/vse_bench "$PWD/build/src/payguard" "${1:-200}" "${2:-50}"
