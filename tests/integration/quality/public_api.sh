#!/usr/bin/env bash
# include/payguard/ is the whole public API (issue 16, item 7): every external
# symbol the project's static libraries define is either public -- `pg_`,
# declared in include/payguard/*.h -- or internal -- `pgi_` (docs/ARCHITECTURE.md
# "Names"). Fails on an external `pg_` symbol no public header declares (make it
# static, or rename it pgi_) and on an external symbol with neither prefix
# (gp_*, load_*, shdlc_* ...: it could collide with any other library's name).
# Usage: public_api.sh LIB.a...   (PG_SOURCE_DIR: the source tree)
set -euo pipefail
inc=${PG_SOURCE_DIR:?}/include/payguard
[ $# -gt 0 ] || { echo "usage: $0 LIB.a..." >&2; exit 2; }
command -v nm >/dev/null || { echo "nm missing (binutils)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Names the public headers declare: identifiers outside comments, not a
# struct/enum/union tag (a tag shares its name with a function only by choice).
for h in "$inc"/*.h; do
	cpp -fpreprocessed -dD -P "$h"
done | grep -oE '\b((struct|enum|union)[[:space:]]+)?pg_[A-Za-z0-9_]+' |
	grep -vE '^(struct|enum|union)' | sort -u >"$tmp/public"
[ -s "$tmp/public" ] || { echo "no pg_ name found in $inc" >&2; exit 1; }

# check LIB... -> prints offenders, returns 1 when there is one
check() {
	local lib name bad=0
	for lib in "$@"; do
		[ -f "$lib" ] || { echo "$lib: no such library" >&2; return 1; }
		# defined, external (global or weak); names starting with `_` belong to
		# the toolchain (ASan's __odr_asan.*, ...)
		nm -g --defined-only "$lib" | awk 'NF == 3 && $2 ~ /^[A-Z]$/ && $3 !~ /^_/ { print $3 }' |
			sort -u >"$tmp/defs"
		while read -r name; do
			case $name in
			pgi_*) ;;
			pg_*)
				if ! grep -qxF "$name" "$tmp/public"; then
					echo "$(basename "$lib"): $name is external but not declared in include/payguard/ (static, or rename it pgi_${name#pg_})"
					bad=1
				fi
				;;
			*)
				echo "$(basename "$lib"): $name is external without a project prefix (static, or rename it pgi_$name)"
				bad=1
				;;
			esac
		done <"$tmp/defs"
	done
	return $bad
}

# The check itself must catch both kinds: a library made on the fly.
cat >"$tmp/probe.c" <<'EOF'
int pg_buf_init_probe_undeclared(void) { return 1; }
int gp_probe_unprefixed(void) { return 2; }
int pgi_probe_internal(void) { return 3; }
static int pg_probe_static(void) { return 4; }
int pg_buf_reset(void) { return pg_probe_static(); }
EOF
cc -c -o "$tmp/probe.o" "$tmp/probe.c" && ar rc "$tmp/libprobe.a" "$tmp/probe.o"
if out=$(check "$tmp/libprobe.a"); then
	echo "the check passed a library with an undeclared pg_ and an unprefixed symbol" >&2
	exit 1
fi
want="libprobe.a: pg_buf_init_probe_undeclared is external but not declared in include/payguard/ (static, or rename it pgi_buf_init_probe_undeclared)
libprobe.a: gp_probe_unprefixed is external without a project prefix (static, or rename it pgi_gp_probe_unprefixed)"
[ "$(sort <<<"$out")" = "$(sort <<<"$want")" ] || {
	printf 'the check on the probe library said:\n%s\nexpected:\n%s\n' "$out" "$want" >&2
	exit 1
}

if check "$@"; then
	echo "public API: every external symbol of $# libraries is declared in include/payguard/ or carries pgi_"
else
	echo "FAIL: external symbols outside the public API without the internal prefix pgi_ (docs/ARCHITECTURE.md \"Names\")" >&2
	exit 1
fi
