#!/usr/bin/env bash
# Optimised build of the payguard binary into build/ (used by the demo and
# the benchmarks).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build build -j"$(nproc)" >&2
