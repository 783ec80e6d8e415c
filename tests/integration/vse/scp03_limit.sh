#!/usr/bin/env bash
# Issue 13 item 5: every INITIALIZE UPDATE advances the card's persistent
# 24-bit SCP03 sequence counter, so a VSE limits the unauthenticated ones
# (a token bucket, `vse create --iu-rate N --iu-burst M`). A burst beyond the
# limit is answered 6985 without advancing the counter (the counter is read
# from the INITIALIZE UPDATE responses); after a wait it works again and the
# counter continues where it was; authenticated sessions give their token
# back, so they are never limited by each other; the limit is refused
# outside 0..1000 and can be switched off (0).
. "$(dirname "$0")/common.sh"
start_hv

IU=8050300008010203040506070800
# iu NAME COUNT: COUNT INITIALIZE UPDATEs in one host session; prints "SW[:COUNTER]" each
iu() {
	local a=() i
	for i in $(seq 1 "$2"); do a+=("$IU"); done
	"$pg" vse apdu "$1" $SEL_ISD "${a[@]}" | grep '^< ' | tail -n +2 | sed -E 's/^< //' |
		while read -r r; do
			if [ "${r: -4}" = 9000 ]; then echo "9000:$((16#${r: -10:6}))"; else echo "${r: -4}"; fi
		done | tr '\n' ' '
}

"$pg" vse create --name lim --master $MASTER --iu-rate 2 --iu-burst 3 >/dev/null || fail "create"
[ "$(field lim request | grep -o "'iu_rate': [0-9]*")" = "'iu_rate': 2" ] ||
	fail "iu_rate not in the request: $(field lim request)"
out=$(iu lim 8)
echo "burst of 8: $out"
[ "$out" = "9000:1 9000:2 9000:3 6985 6985 6985 6985 6985 " ] ||
	fail "burst of 8 with burst 3: $out"
sleep 1.2 # 2 tokens a second
out=$(iu lim 1)
[ "$out" = "9000:4 " ] || fail "after the wait: $out (the refused ones moved the counter?)"
# authenticated sessions give their token back: ten in a row with a bucket of 3
sleep 1.6
for i in $(seq 1 10); do
	[ "$(sw lim --scp03 --master $MASTER 80CA9F7F00)" = 9000 ] || fail "SCP03 session $i limited"
done
out=$(iu lim 1)
[ "$out" = "9000:15 " ] || fail "after 10 sessions: $out"

# no limit with 0; out-of-range values refused with exit 3
"$pg" vse create --name nolim --master $MASTER --iu-rate 0 >/dev/null || fail "create --iu-rate 0"
out=$(iu nolim 30)
[ "$(tr ' ' '\n' <<<"$out" | grep -c '^9000')" = 30 ] || fail "--iu-rate 0 limited: $out"
set +e
"$pg" vse create --name bad1 --master $MASTER --iu-rate 1001 >/dev/null 2>&1; rc1=$?
"$pg" vse create --name bad2 --master $MASTER --iu-burst 0 >/dev/null 2>&1; rc2=$?
"$pg" vse create --name bad3 --master $MASTER --iu-rate x >"$work/err" 2>&1; rc3=$?
set -e
[ "$rc1$rc2$rc3" = 333 ] || fail "bad limits gave $rc1 $rc2 $rc3, want 3 3 3"
grep -q "iu_rate" "$work/err" || fail "no field named: $(cat "$work/err")"
# the default (1 a second, burst 10) holds a default VSE too
"$pg" vse create --name deflt --master $MASTER >/dev/null || fail "create default"
out=$(iu deflt 12)
[ "$(tr ' ' '\n' <<<"$out" | grep -c '^9000')" = 10 ] || fail "default limit: $out"
echo "vse scp03 limit: ok"
