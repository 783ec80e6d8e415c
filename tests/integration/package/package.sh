#!/usr/bin/env bash
# Builds payguard_*.deb from a copy of the tree (scripts/package.sh:
# dpkg-buildpackage -us -uc -b, Release, nocheck), installs it with
# `apt-get install ./payguard_*.deb`, checks what an operator uses
# (`payguard --version`, `man payguard` and an area page, bash completion,
# the VSE helper found from /usr/bin, shipped dialects, `systemd-analyze
# verify` on the unit, lintian-like content checks), then purges it and
# checks that every file it installed is gone. The package is always purged
# again, also when a check fails.
set -euo pipefail
src=${PG_SOURCE_DIR:?}
fail() { echo "FAIL: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root: it installs the package system-wide (CI runs as root)"
if dpkg-query -W -f='${Status}' payguard 2>/dev/null | grep -q "installed"; then
	fail "a payguard package is already installed here; not touching it"
fi
work=$(mktemp -d)
installed=0
cleanup() {
	if [ "$installed" = 1 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get remove --purge -y -q payguard >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

start=$(date +%s)
bash "$src/scripts/package.sh" "$work/out" >"$work/build.log" 2>&1 || { tail -40 "$work/build.log"; fail "package build"; }
echo "ok: package built in $(( $(date +%s) - start )) s"
deb=$(ls "$work"/out/payguard_*.deb)
[ "$(echo "$deb" | wc -l)" = 1 ] || fail "one .deb expected: $deb"
dpkg-deb -c "$deb" >"$work/contents"
for f in ./usr/bin/payguard ./usr/libexec/payguard/payguard-vse ./lib/systemd/system/payguard.service \
	./usr/share/man/man1/payguard.1.gz ./usr/share/man/man1/payguard-pos.1.gz \
	./usr/share/man/man1/payguard-serve.1.gz ./usr/share/bash-completion/completions/payguard \
	./usr/share/payguard/pos/dialects/jpos-iso87b.def ./usr/share/doc/payguard/copyright; do
	grep -q " $f\$" "$work/contents" || fail "package lacks $f"
done
echo "ok: package contents"

cd "$work/out"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "./$(basename "$deb")" >"$work/install.log" 2>&1 \
	|| { cat "$work/install.log"; fail "apt-get install"; }
installed=1
echo "ok: apt-get install ./$(basename "$deb")"
dpkg -L payguard >"$work/files"

# what an operator runs
ver=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
[ "$(command -v payguard)" = /usr/bin/payguard ] || fail "payguard not on PATH"
[ "$(payguard --version)" = "payguard $ver" ] || fail "payguard --version: $(payguard --version)"
MANPAGER=cat MANWIDTH=250 man payguard 2>"$work/man.err" >"$work/man.out" || { cat "$work/man.err"; fail "man payguard"; }
grep -qE "payguard +- +one code base" "$work/man.out" || fail "man payguard: NAME"
grep -q "payguard-pos" "$work/man.out" || fail "man payguard: SEE ALSO"
MANPAGER=cat MANWIDTH=250 man payguard-pos >"$work/manpos.out" 2>&1 || fail "man payguard-pos"
grep -q "payguard pos decode" "$work/manpos.out" || fail "man payguard-pos: commands"
grep -q "jpos-iso87b" "$work/manpos.out" || fail "man payguard-pos: the --help text"
echo "ok: man payguard, man payguard-pos"
# bash completion, as bash-completion loads it
out=$(bash -c '
	source /usr/share/bash-completion/completions/payguard
	COMP_WORDS=(payguard po); COMP_CWORD=1; _payguard; echo "a:${COMPREPLY[*]}"
	COMP_WORDS=(payguard pos dec); COMP_CWORD=2; _payguard; echo "v:${COMPREPLY[*]}"
	COMP_WORDS=(payguard pos decode --dia); COMP_CWORD=3; _payguard; echo "o:${COMPREPLY[*]}"
	COMP_WORDS=(payguard pos decode --dialect jp); COMP_CWORD=4; _payguard; echo "d:${COMPREPLY[*]}"
	COMP_WORDS=(payguard image advisories --format deb); COMP_CWORD=4; _payguard; echo "f:${COMPREPLY[*]}"')
echo "$out" | grep -qx "a:pos" || fail "completion of areas: $out"
echo "$out" | grep -qx "v:decode" || fail "completion of verbs: $out"
echo "$out" | grep -qx "o:--dialect" || fail "completion of options: $out"
echo "$out" | grep -qx "d:jpos-iso87b" || fail "completion of dialects: $out"
echo "$out" | grep -qx "f:debian-tracker" || fail "completion of --format: $out"
echo "ok: bash completion"
# the shipped dialects and the VSE helper, as installed
h=$(echo '{"0":"0200","2":"5413330","3":"000000"}' | payguard pos encode --dialect jpos-iso87b --framing none -)
[ "$h" = "020060000000000000000754133300000000" ] || fail "installed jpos-iso87b dialect: $h"
/usr/libexec/payguard/payguard-vse 2>/dev/null && fail "payguard-vse without its descriptors must refuse"
PAYGUARD_DATA_DIR=$work/data timeout 20 payguard --log-level info vse serve --data-dir "$work/vse" >"$work/hv.log" 2>&1 &
hv=$!
for _ in $(seq 50); do grep -q "VSE image:" "$work/hv.log" && break; sleep 0.2; done
kill "$hv" 2>/dev/null || true
wait "$hv" 2>/dev/null || true
grep -q "VSE image: /usr/libexec/payguard/payguard-vse" "$work/hv.log" \
	|| { cat "$work/hv.log"; fail "the hypervisor did not find the installed VSE image"; }
echo "ok: /usr/bin/payguard finds /usr/libexec/payguard/payguard-vse"
# the installed daemon, as the unit starts it (without the sandbox, which
# needs systemd as PID 1): every worker re-executes /usr/bin/payguard and
# runs, the dashboard answers, SIGTERM stops it cleanly
/usr/bin/payguard serve run --data "$work/srv" --port 0 --port-file "$work/port" >"$work/serve.log" 2>&1 &
srv=$!
ok=0
for _ in $(seq 100); do
	if [ -s "$work/port" ] && curl -sf "http://127.0.0.1:$(cat "$work/port")/api/services" >"$work/svc.json" 2>/dev/null &&
		/usr/bin/python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
names = {x["name"] for x in s}
sys.exit(0 if {"pos", "image", "vse", "seos"} <= names and all(x["state"] == "running" for x in s) else 1)' "$work/svc.json"; then
		ok=1
		break
	fi
	sleep 0.2
done
[ "$ok" = 1 ] || { cat "$work/serve.log" "$work/svc.json" 2>/dev/null; kill "$srv"; fail "installed daemon: services not running"; }
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(cat "$work/port")/")" = 200 ] \
	|| { kill "$srv"; fail "installed daemon: dashboard"; }
kill -TERM "$srv"
rc=0
wait "$srv" || rc=$?
[ "$rc" = 0 ] || { cat "$work/serve.log"; fail "installed daemon: exit $rc after SIGTERM"; }
echo "ok: installed daemon ran its services and stopped on SIGTERM"
# the unit: present, not enabled or started by the package, and verified
[ -f /lib/systemd/system/payguard.service ] || fail "unit not installed"
systemd-analyze verify /lib/systemd/system/payguard.service >"$work/verify" 2>&1 \
	|| { cat "$work/verify"; fail "systemd-analyze verify"; }
[ ! -s "$work/verify" ] || { cat "$work/verify"; fail "systemd-analyze verify printed warnings"; }
for k in ProtectSystem=strict PrivateTmp=yes NoNewPrivileges=yes StateDirectory=payguard; do
	grep -qx "$k" /lib/systemd/system/payguard.service || fail "unit lacks $k"
done
[ ! -e /etc/systemd/system/multi-user.target.wants/payguard.service ] || fail "unit enabled by the package"
echo "ok: systemd-analyze verify payguard.service"

# removal: purge, then nothing it installed is left
DEBIAN_FRONTEND=noninteractive apt-get remove --purge -y -q payguard >"$work/remove.log" 2>&1 \
	|| { cat "$work/remove.log"; fail "apt-get remove --purge"; }
installed=0
if dpkg-query -W -f='${Status}' payguard 2>/dev/null | grep -q "installed"; then fail "still installed"; fi
left=0
while IFS= read -r f; do
	[ -d "$f" ] && continue # shared folders (/usr/bin, ...) stay
	if [ -e "$f" ] || [ -L "$f" ]; then
		echo "left behind: $f" >&2
		left=1
	fi
done <"$work/files"
for d in /usr/libexec/payguard /usr/share/payguard /usr/share/doc/payguard /var/lib/payguard; do
	[ ! -e "$d" ] || { echo "left behind: $d" >&2; left=1; }
done
[ "$left" = 0 ] || fail "files left after purge"
command -v payguard >/dev/null && fail "payguard still on PATH"
echo "ok: removed cleanly ($(wc -l <"$work/files") paths checked)"
echo "package: ok"
