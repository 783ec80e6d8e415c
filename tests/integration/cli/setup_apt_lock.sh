#!/usr/bin/env bash
# scripts/setup.sh waits for another apt instead of failing (issue 13, item 13):
# every apt-get call carries -o DPkg::Lock::Timeout=..., and a busy lock that
# apt does not wait for itself (the lists lock of `apt-get update`, apt 2.6)
# is retried; any other failure is not. apt-get, sudo and npm are stand-ins
# on PATH that record their calls, so nothing is installed.
set -euo pipefail
src=${PG_SOURCE_DIR:?}
work=$(mktemp -d /tmp/pg-setup-lock.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; cat "$work/calls" >&2 2>/dev/null || true; exit 1; }

mkdir "$work/bin"
# apt-get: records its arguments; `update` says the lists lock is busy on its
# first $LOCKED_UPDATES calls (apt's own message), or fails for another reason
cat >"$work/bin/apt-get" <<'SH'
#!/usr/bin/env bash
echo "apt-get $*" >>"$CALLS"
case " $* " in *" update "*)
	n=$(grep -c ' update' "$CALLS")
	if [ "$n" -le "${LOCKED_UPDATES:-0}" ]; then
		echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)" >&2
		echo "E: Unable to lock directory /var/lib/apt/lists/" >&2
		exit 100
	fi
	if [ -n "${OTHER_FAILURE:-}" ]; then
		echo "E: The repository is not signed." >&2
		exit 100
	fi;;
esac
exit 0
SH
printf '#!/bin/sh\nexec "$@"\n' >"$work/bin/sudo"
printf '#!/bin/sh\necho "npm $*" >>"$CALLS"\n' >"$work/bin/npm"
chmod +x "$work/bin/"*
export PATH="$work/bin:$PATH" CALLS="$work/calls" PG_APT_RETRY_SECONDS=0

# the lists lock busy twice: setup.sh waits it out and goes on
: >"$work/calls"
LOCKED_UPDATES=2 bash "$src/scripts/setup.sh" >"$work/out" 2>&1 || fail "setup.sh gave up on a busy lock: $(cat "$work/out")"
[ "$(grep -c '^apt-get .*update' "$work/calls")" = 3 ] || fail "update not retried until the lock was free"
[ "$(grep -c '^apt-get .*install' "$work/calls")" = 1 ] || fail "install not run once"
while read -r line; do
	case "$line" in
	apt-get*) case " $line " in *" -o DPkg::Lock::Timeout=600 "*) ;; *) fail "no lock timeout: $line" ;; esac ;;
	esac
done <"$work/calls"
grep -q 'another apt holds a lock' "$work/out" || fail "no word about waiting"
echo "ok: busy lock waited for; every apt-get call has DPkg::Lock::Timeout=600"

# another failure is reported at once, not retried
: >"$work/calls"
OTHER_FAILURE=1 bash "$src/scripts/setup.sh" >"$work/out" 2>&1 && fail "setup.sh ignored a failing update"
[ "$(grep -c '^apt-get .*update' "$work/calls")" = 1 ] || fail "a non-lock failure was retried"
grep -q 'not signed' "$work/out" || fail "apt's message not shown"
echo "ok: other failures stop setup.sh at once"

# the wait is bounded: a lock that never frees fails after PG_APT_LOCK_TIMEOUT
: >"$work/calls"
start=$SECONDS
LOCKED_UPDATES=1000 PG_APT_LOCK_TIMEOUT=2 PG_APT_RETRY_SECONDS=1 bash "$src/scripts/setup.sh" >"$work/out" 2>&1 &&
	fail "setup.sh succeeded with a lock that never freed"
[ $((SECONDS - start)) -lt 30 ] || fail "the wait was not bounded"
echo "ok: the wait is bounded"
