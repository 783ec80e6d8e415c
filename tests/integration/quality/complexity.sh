#!/usr/bin/env bash
# Functions a reader can hold (issue 16, item 6): pmccabe over src/ fails on
# any function longer than 150 lines or of McCabe complexity (traditional,
# pmccabe's second column) over 30, except the ones complexity-allow.txt
# names with a reason. A NEW offender fails; so does an allowlist line that
# no longer matches an offender (split functions leave the list).
set -euo pipefail
src=${PG_SOURCE_DIR:?}/src
allow=${PG_SOURCE_DIR}/tests/integration/quality/complexity-allow.txt
max_lines=150
max_mccabe=30
command -v pmccabe >/dev/null || { echo "pmccabe missing: run scripts/setup.sh" >&2; exit 1; }
# "FILE FUNCTION" per allowed offender (comments and blank lines dropped)
allowed=$(sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$allow" | sed '/^$/d' | sort -u)
# pmccabe: modified, traditional, statements, first line, lines, "file(n): name"
offenders=$(cd "$src/.." && find src -name '*.c' | sort | xargs pmccabe 2>/dev/null |
	awk -v L=$max_lines -v M=$max_mccabe '$2 > M || $5 > L {
		f = $6; sub(/\([0-9]+\):$/, "", f); print f, $7, $2, $5 }' | sort -u)
[ -n "$offenders" ] || { echo "pmccabe found no function at all" >&2; exit 1; }
fail=0
while read -r file fn mccabe lines; do
	[ -n "$file" ] || continue
	if ! grep -qxF "$file $fn" <<<"$allowed"; then
		echo "NEW offender: $file: $fn: $lines lines, McCabe $mccabe (limits $max_lines, $max_mccabe)"
		fail=1
	fi
done <<<"$offenders"
while read -r file fn; do
	[ -n "$file" ] || continue
	if ! grep -q "^$file $fn " <<<"$offenders"; then
		echo "stale allowlist line: '$file $fn' is within the limits now (or gone): remove it"
		fail=1
	fi
done <<<"$allowed"
# the check itself must see a big function: one generated on the fly
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
{ echo "int big(int x) {"; for i in $(seq 1 40); do echo "if (x == $i) return $i;"; done; echo "return 0; }"; } >"$tmp/big.c"
pmccabe "$tmp/big.c" | awk -v M=$max_mccabe '$2 > M { found = 1 } END { exit !found }' ||
	{ echo "pmccabe did not flag a function of McCabe 41" >&2; exit 1; }
[ $fail -eq 0 ] && echo "complexity: no function over $max_lines lines or McCabe $max_mccabe outside complexity-allow.txt"
exit $fail
