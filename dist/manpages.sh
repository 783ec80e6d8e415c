#!/bin/sh
# Man pages from the --help text: payguard(1) from `payguard --help`, and
# payguard-AREA(1) for each area from `payguard AREA --help` plus every
# verb's `payguard AREA VERB --help` (a COMMANDS section). help2man writes
# them; it is given the version, so it never runs `--version` on an area.
# usage: manpages.sh PAYGUARD OUTDIR VERSION "AREA..."   (HELP2MAN= to override)
set -eu
pg=$1 out=$2 ver=$3 areas=$4
h2m=${HELP2MAN:-help2man}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# roff-safe preformatted text: backslashes, and lines starting with . or '
roff() { sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"; }

listed=$("$pg" --help | awk '/^Areas:/{a=1;next} a && /^  [a-z]/{print $1}')
[ "$(echo $listed)" = "$(echo $areas)" ] || {
	echo "manpages.sh: areas are '$(echo $listed)', the build lists '$areas'" >&2
	exit 1
}
{
	echo "[SEE ALSO]"
	sep=""
	for a in $areas; do
		printf '%s.BR payguard-%s (1)' "$sep" "$a"
		sep=",
"
	done
	echo
	echo ".PP"
	echo "The documentation in docs/ of the source tree; the Debian package's systemd unit"
	echo ".BR payguard.service ."
} >"$tmp/main.h2m"
"$h2m" --no-info --no-discard-stderr --version-string="$ver" --include="$tmp/main.h2m" \
	--name="one code base for secure elements, VM images, load estimation and POS monitoring" \
	--output="$out/payguard.1" "$pg"

for a in $areas; do
	desc=$("$pg" --help | awk -v a="$a" '$1 == a && /^  /{$1=""; sub(/^ +/, ""); print; exit}')
	w="$tmp/payguard-$a"
	printf '#!/bin/sh\nexec "%s" %s "$@"\n' "$pg" "$a" >"$w"
	chmod +x "$w"
	{
		echo "[COMMANDS]"
		for v in $("$pg" "$a" --help | awk '/^Verbs:/{x=1;next} x && /^  [a-z]/{print $1}'); do
			echo ".SS \"payguard $a $v\""
			echo ".nf"
			"$pg" "$a" "$v" --help 2>&1 | roff
			echo ".fi"
		done
		echo "[SEE ALSO]"
		echo ".BR payguard (1)"
	} >"$tmp/$a.h2m"
	"$h2m" --no-info --no-discard-stderr --version-string="$ver" --include="$tmp/$a.h2m" \
		--name="$desc" --output="$out/payguard-$a.1" "$w"
done
