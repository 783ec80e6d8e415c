#!/usr/bin/env bash
# Runs libFuzzer harnesses for real: scripts/fuzz.sh SECONDS NAME [NAME...]
# (NAME as in fuzz/corpus/NAME; "all" for every harness). Builds with clang
# into build-fuzz/, starts from the seed corpus, keeps new inputs in
# build-fuzz/corpus/NAME and prints the exec count of each run.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:?seconds}; shift
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DPG_FUZZ=ON -DBUILD_TESTING=OFF >/dev/null
names=("$@")
if [ "${names[0]:-all}" = all ]; then
	names=(); for d in fuzz/corpus/*/; do names+=("$(basename "$d")"); done
fi
cmake --build build-fuzz -j"$(nproc)" --target "${names[@]/#/fuzz_}" >&2
for n in "${names[@]}"; do
	mkdir -p "build-fuzz/corpus/$n" fuzz/findings
	log=build-fuzz/fuzz_$n.log
	"build-fuzz/fuzz/fuzz_$n" -max_total_time="$secs" -artifact_prefix=fuzz/findings/"$n"- \
		-print_final_stats=1 "build-fuzz/corpus/$n" "fuzz/corpus/$n" >"$log" 2>&1 || {
		echo "$n: FINDING (see $log)"; tail -30 "$log"; exit 1; }
	execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
	echo "$n: ${secs}s, ${execs} execs, no finding"
done
