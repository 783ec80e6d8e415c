#!/usr/bin/env bash
# The whole test suite: configures the sanitizer build (ASan + UBSan,
# warnings as errors), builds everything, and runs every CTest test: unit
# tests, integration tests against real peers, and each fuzz corpus replay.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${PG_TEST_BUILD_DIR:-build-test}
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=1:detect_leaks=1:print_stacktrace=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DPG_SANITIZE=ON -DPG_WERROR=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure -j"$(nproc)" "$@"
