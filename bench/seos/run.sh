#!/usr/bin/env bash
# Builds (release) and runs the SE OS connection-establishment benchmark:
# cache miss vs cache hit through the same link, medians, ratio.
set -euo pipefail
cd "$(dirname "$0")/../.."
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
nice cmake --build build-bench -j2 --target bench_seos_connect >/dev/null
nice build-bench/bench/seos/bench_seos_connect "${@:-200}"
