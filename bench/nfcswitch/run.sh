#!/usr/bin/env bash
# NFC switch benchmark (release build): routing decision with 100,000 AIDs and
# the per-APDU latency through the switch beside the same APDU sent directly.
#   bash bench/nfcswitch/run.sh [N_AIDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/build.sh >&2
cmake --build build --target bench_nfcswitch >&2
nice build/bench/nfcswitch/bench_nfcswitch --aids "${1:-100000}"
