#!/usr/bin/env bash
# Every area and every verb answers --help with exit 0 and a usage line;
# unknown areas, verbs and options exit 2 with a message on stderr.
set -euo pipefail
pg=${PAYGUARD:?}
fail() { echo "FAIL: $*"; exit 1; }

"$pg" --help | grep -q '^usage: payguard' || fail "payguard --help"
areas=$("$pg" --help | awk '/^Areas:/{a=1;next} a && /^  [a-z]/{print $1}')
[ -n "$areas" ] || fail "no areas listed"
verbs=0
for a in $areas; do
	"$pg" "$a" --help | grep -q "^usage: payguard $a" || fail "$a --help"
	for v in $("$pg" "$a" --help | awk '/^Verbs:/{x=1;next} x && /^  [a-z]/{print $1}'); do
		out=$("$pg" "$a" "$v" --help) || fail "$a $v --help exit $?"
		grep -q "^usage: payguard $a $v" <<<"$out" || fail "$a $v --help: no usage line"
		# the usage line is printed once (issue 13: `load *`, `image scan` said it twice)
		[ "$(grep -o 'usage:' <<<"$out" | wc -l)" = 1 ] || fail "$a $v --help: 'usage:' more than once"
		verbs=$((verbs + 1))
	done
done
[ "$verbs" -gt 0 ] || fail "no verbs found"
set +e
"$pg" nosuch >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown area must exit 2"
"$pg" --bogus >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown option must exit 2"
msg=$("$pg" demo nosuch 2>&1); rc=$?
[ $rc -eq 2 ] || fail "unknown verb must exit 2"
grep -q "unknown verb 'nosuch'" <<<"$msg" || fail "unknown verb message"
# option tables (src/cli/opts.c): a value out of range is exit 2 with the range
msg=$("$pg" pos check --alert-n 0 x 2>&1); rc=$?
[ $rc -eq 2 ] || fail "pos check --alert-n 0 must exit 2 (got $rc)"
grep -q "alert-n '0' must be 1..32" <<<"$msg" || fail "range message: $msg"
"$pg" load kmeans --tol inf --data x --k 2 >/dev/null 2>&1; [ $? -eq 2 ] || fail "--tol inf must exit 2"
# the generated --help lists the table's options, with the operands
"$pg" image upgrade --help | grep -q '^  --deb FILE.deb .*(repeatable)' || fail "image upgrade --help: --deb"
"$pg" pos check --help | grep -q '^usage: payguard pos check \[options\] FILE$' || fail "pos check usage line"
# the worker table (src/serve/workers.c): an unknown name is a usage error listing the names
msg=$("$pg" serve worker --name nosuch --data /nonexistent 2>&1); rc=$?
[ $rc -eq 2 ] || fail "serve worker --name nosuch must exit 2 (got $rc)"
grep -q "pos-traffic" <<<"$msg" || fail "unknown worker message lists the workers: $msg"
echo "checked --help on $verbs verbs"
