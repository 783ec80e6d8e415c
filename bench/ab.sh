#!/usr/bin/env bash
# Same-run comparison of one benchmark program between an older commit and
# the working tree ("no slower than before", issue 16): both are built in
# Release, then run in turns (base, head, base, head, ...) so both see the
# same load on a shared machine. Prints every round, then the median of each
# number per output line, base beside head, and head/base.
#   bench/ab.sh [--rounds N] [--target T]... BASE_REV -- COMMAND [ARGS...]
# COMMAND runs from the tree's root with $B set to that tree's build folder,
# for example:
#   bench/ab.sh --target bench_nfcswitch HEAD~3 -- '$B/bench/nfcswitch/bench_nfcswitch'
# Exit codes: 0 done, 1 a build or a run failed, 2 usage.
set -euo pipefail
usage() { sed -n '2,/^# Exit/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
rounds=3 targets=()
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) rounds=${2:?}; shift 2 ;;
	--target) targets+=("${2:?}"); shift 2 ;;
	-h | --help) usage ;;
	--) shift; break ;;
	*) [ -z "${base:-}" ] || usage; base=$1; shift ;;
	esac
done
[ -n "${base:-}" ] && [ $# -gt 0 ] || usage
case $rounds in '' | *[!0-9]* | 0) echo "--rounds takes a whole number above 0" >&2; exit 2 ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
rev=$(git -C "$root" rev-parse --verify "$base^{commit}") || { echo "no commit '$base'" >&2; exit 2; }
work=$(mktemp -d /tmp/pg-ab.XXXXXX)
cleanup() {
	git -C "$root" worktree remove --force "$work/base" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
git -C "$root" worktree add -q --detach "$work/base" "$rev"
build() { # tree, build folder
	cmake -S "$1" -B "$2" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
	nice cmake --build "$2" -j2 --target payguard "${targets[@]}" >/dev/null
}
echo "building base ${rev:0:12} and head (working tree) ..." >&2
build "$work/base" "$work/base/build-ab" || { echo "base build failed" >&2; exit 1; }
build "$root" "$root/build-ab" || { echo "head build failed" >&2; exit 1; }
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq 1 "$rounds"); do
	for side in base head; do
		if [ $side = base ]; then tree=$work/base; else tree=$root; fi
		echo "== round $i: $side" >&2
		(cd "$tree" && B=$tree/build-ab bash -c "$*") >"$work/$side.$i" ||
			{ cat "$work/$side.$i" >&2; echo "$side round $i failed" >&2; exit 1; }
		sed "s/^/$side $i: /" "$work/$side.$i"
	done
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
# Lines are matched by their text with the numbers taken out; each number's
# median over the rounds is printed as base -> head (head/base).
/usr/bin/python3 - "$work" "$rounds" <<'PY'
import re, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
# a number standing alone ("t1", "i2c" and "x86" are names, not figures),
# or a ratio written "1.52x"
num = re.compile(r'(?<![A-Za-z_\d.])(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?=x(?![A-Za-z_\d])|[^A-Za-z_\d.]|\.(?!\d)|$)')
def runs(side):
    out = {}
    for i in range(1, rounds + 1):
        for line in open(f"{work}/{side}.{i}"):
            key = re.sub(r"\s+", " ", num.sub("#", line.strip()))
            vals = [float(v) for v in num.findall(line)]
            if vals:
                out.setdefault(key, []).append(vals)
    return out
base, head = runs("base"), runs("head")
print("median of %d rounds: base -> head (head/base)" % rounds)
for key, bv in base.items():
    hv = head.get(key)
    if not hv or len({len(v) for v in bv + hv}) != 1:
        continue
    cells = []
    for j in range(len(bv[0])):
        b = statistics.median(v[j] for v in bv)
        h = statistics.median(v[j] for v in hv)
        cells.append("%g -> %g (%s)" % (b, h, "%.2f" % (h / b) if b else "-"))
    print("%s\n    %s" % (key.strip(), "; ".join(cells)))
PY
