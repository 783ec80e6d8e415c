#!/usr/bin/env bash
# Acceptance: Debian version ordering agrees with `dpkg --compare-versions`
# on 12,000 generated pairs (seeded) with epochs, tildes, revisions, letters,
# leading zeros and near-equal pairs.
set -euo pipefail
: "${PAYGUARD:?}"
command -v dpkg >/dev/null || { echo "FAIL: dpkg missing"; exit 1; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
/usr/bin/python3 - "$work/pairs" <<'PY'
import random, sys
rnd = random.Random(20261125)
alnum = "0123456789abcz"
def part(allow_hyphen):
    n = rnd.randint(1, 6)
    s = rnd.choice("0123456789")
    for _ in range(n):
        c = rnd.random()
        if c < 0.45: s += rnd.choice("0123456789") * rnd.randint(1, 2)
        elif c < 0.6: s += "."
        elif c < 0.7: s += "~"
        elif c < 0.78: s += "+"
        elif c < 0.82 and allow_hyphen: s += "-" + rnd.choice("0123456789")
        else: s += rnd.choice("abcxyzAZ")
    return s
def version():
    v = ""
    if rnd.random() < 0.3: v += str(rnd.randint(0, 3)) + ":"
    has_rev = rnd.random() < 0.7
    v += part(has_rev)
    if has_rev:
        rev = part(False)
        if rnd.random() < 0.2: rev = rev.replace(rev[0], "0" + rev[0], 1)
        v += "-" + rev
    return v
def mutate(v):
    ops = [lambda s: s + "~", lambda s: s + "~rc1", lambda s: s + "+b1", lambda s: s + ".0",
           lambda s: s.replace("1", "01", 1), lambda s: "0:" + s if ":" not in s else s,
           lambda s: s + "-1" if "-" not in s else s + "a", lambda s: s[:-1] if len(s) > 1 and s[-2] not in ":-" else s,
           lambda s: s.replace(".", "~", 1), lambda s: s]
    return rnd.choice(ops)(v)
with open(sys.argv[1], "w") as f:
    for i in range(12000):
        a = version()
        b = mutate(a) if i % 2 else version()
        f.write("%s %s\n" % (a, b))
PY
# dpkg's own answer for each pair (its exit status tells "lt" / "eq")
while read -r a b; do
	if dpkg --compare-versions "$a" lt "$b" 2>/dev/null; then echo -1
	elif dpkg --compare-versions "$a" eq "$b" 2>/dev/null; then echo 0
	else echo 1; fi
done <"$work/pairs" >"$work/dpkg"
"$PAYGUARD" image vercmp --stdin <"$work/pairs" >"$work/ours"
n=$(wc -l <"$work/pairs")
[ "$n" -ge 10000 ] || { echo "FAIL: only $n pairs"; exit 1; }
[ "$(wc -l <"$work/ours")" = "$n" ] || { echo "FAIL: payguard answered $(wc -l <"$work/ours") of $n"; exit 1; }
if ! cmp -s "$work/dpkg" "$work/ours"; then
	paste -d' ' "$work/pairs" "$work/dpkg" "$work/ours" | awk '$3 != $4' | head -20
	echo "FAIL: $(paste -d' ' "$work/dpkg" "$work/ours" | awk '$1 != $2' | wc -l) disagreements"; exit 1
fi
eq=$(grep -c '^0$' "$work/dpkg" || true); lt=$(grep -c '^-1$' "$work/dpkg" || true)
echo "debver: $n pairs agree with dpkg --compare-versions ($lt lt, $eq eq, $((n - lt - eq)) gt)"
