#!/usr/bin/env bash
# `payguard se sim --atr` on every link with a card role (issue 13 item 11):
# an ATR with a wrong TCK, one that does not parse, and the old default
# (category 00 over raw text) are refused before anything is served, with the
# reason and exit 3 — on T=0/T=1 (which used to replace an unparsable one
# silently) as on SWP and vpcd (which used to pass a wrong TCK through). A
# well-formed --atr is served, and what `se transmit` reads on each link is
# parsed by pcsc-tools' ATR_analysis (offline: a fresh copy of its card list)
# without complaint.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
need ATR_analysis

links=$("$pg" se links --json | /usr/bin/python3 -c '
import json, sys
print(" ".join(l["name"] for l in json.load(sys.stdin) if l["card"]))')
case " $links " in *" vpcd "*) ;; *) fail "vpcd missing from the card roles: $links" ;; esac

good=3B8C8001805A7061796775617264C0DEC4 # category 80, issuer's data "payguard" C0 DE
bad_tck=3B8C8001805A7061796775617264C0DEC5
truncated=3B8F8001805A70
old_default=3B8C8001007061796775617264019000 # + TCK 91 below
n=0
for l in $links; do
	if [ "$l" = vpcd ]; then where=(--connect tcp:127.0.0.1:9); else where=(--listen "unix:$work/$l.sock"); fi
	for atr in "$bad_tck" "$truncated" "${old_default}91"; do
		rc=0
		timeout 10 "$pg" se sim --link "$l" "${where[@]}" --once --atr "$atr" \
			>"$work/out" 2>"$work/err" || rc=$?
		[ "$rc" -eq 3 ] || { cat "$work/err" >&2; fail "$l: --atr $atr: exit $rc, want 3"; }
		grep -q -- "--atr $atr refused: " "$work/err" ||
			{ cat "$work/err" >&2; fail "$l: --atr $atr: no reason given"; }
		[ -e "$work/$l.sock" ] && fail "$l: --atr $atr: listened anyway"
		n=$((n + 1))
	done
	grep -q "TCK" <(timeout 10 "$pg" se sim --link "$l" "${where[@]}" --atr "$bad_tck" 2>&1) ||
		fail "$l: a wrong TCK is not named as such"
done
echo "ok: $n bad --atr refused on: $links"

# A good --atr, and the default: what the host reads passes ATR_analysis.
cache="$work/cache"
mkdir -p "$cache"
cp /usr/share/pcsc/smartcard_list.txt "$cache/"
touch "$cache/smartcard_list.txt"
for l in $links; do
	[ "$l" = vpcd ] && continue # card only; pcscd_vpcd.sh reads it through pcscd
	for atr in "$good" ""; do
		sock="$work/$l-ok.sock"
		rm -f "$sock"
		"$pg" se sim --link "$l" --listen "unix:$sock" --once ${atr:+--atr "$atr"} \
			>"$work/sim-$l.log" 2>&1 &
		sim_pids+=($!)
		seen=$("$pg" se transmit --link "$l" --addr "unix:$sock" --json 00A4040000 |
			/usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["atr"])') ||
			{ cat "$work/sim-$l.log" >&2; fail "$l: se transmit"; }
		wait "${sim_pids[-1]}" || fail "$l: sim exited with an error"
		out=$(XDG_CACHE_HOME="$cache" ATR_analysis "$seen" 2>&1) ||
			fail "$l: ATR_analysis $seen failed"
		if grep -E "WRONG CHECKSUM|ERROR!|Error in the ATR|wrong ATR|RFU|Updating" <<<"$out"; then
			echo "$out" >&2
			fail "$l: ATR_analysis finds fault with $seen"
		fi
		grep -q "card issuer's data" <<<"$out" || fail "$l: $seen lost its historical bytes"
		echo "$l: ATR ${seen} (--atr ${atr:-default}) parsed cleanly by ATR_analysis"
	done
done
