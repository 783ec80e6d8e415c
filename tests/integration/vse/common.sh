# Shared by the VSE integration tests: a private data directory, a hypervisor
# started by the test (`payguard vse serve`) and stopped on exit.
set -euo pipefail
pg=${PAYGUARD:?PAYGUARD must point at the payguard binary}
work=$(mktemp -d /tmp/pg-vse-it.XXXXXX)
export PAYGUARD_DATA_DIR=$work/data
hv_pid=""
MASTER=000102030405060708090A0B0C0D0E0F
SEL_ISD=00A4040008A000000151000000
# INSTALL [for install and make selectable] of a PIN instance F0 "PGPIN" <NNNN>
# (the card runtime's catalogue), and SELECT of it
install_pin() { echo "80E60C001D06F050474C460306F050474D440308F0504750494E${1}010002C9000000"; }
select_pin() { echo "00A4040008F0504750494E${1}00"; }

fail() {
	echo "FAIL: $*" >&2
	[ -f "$work/hv.log" ] && tail -30 "$work/hv.log" >&2
	exit 1
}

stop_hv() {
	if [ -n "$hv_pid" ]; then
		kill "$hv_pid" 2>/dev/null || true
		wait "$hv_pid" 2>/dev/null || true
		hv_pid=""
	fi
}

cleanup() {
	stop_hv
	rm -rf "$work"
}
trap cleanup EXIT

start_hv() {
	# on the PostgreSQL pass (NAME@postgres, issue 14) the registry is PAYGUARD_STORE
	"$pg" vse serve ${PAYGUARD_STORE:+--db "$PAYGUARD_STORE"} >>"$work/hv.log" 2>&1 &
	hv_pid=$!
	for _ in $(seq 1 100); do
		if "$pg" vse list >/dev/null 2>&1; then return 0; fi
		kill -0 "$hv_pid" 2>/dev/null || fail "hypervisor exited"
		sleep 0.1
	done
	fail "hypervisor socket never answered"
}

# field NAME KEY: one top-level field of `vse show --json`
field() {
	"$pg" vse show "$1" --json | /usr/bin/python3 -c \
		'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print("" if v is None else v)' "$2"
}

# sw NAME APDU...: the status word of the last response
sw() {
	"$pg" vse apdu "$@" | tail -1 | sed -E 's/^< .*(....)$/\1/'
}

# resp NAME APDU...: the last response (data + SW)
resp() {
	"$pg" vse apdu "$@" | tail -1 | sed -E 's/^< //'
}

# wait_restarted NAME OLDPID: until the VSE runs again under a new pid
wait_restarted() {
	local p
	for _ in $(seq 1 100); do
		p=$(field "$1" pid)
		if [ -n "$p" ] && [ "$p" != "$2" ] && [ "$(field "$1" state)" = running ]; then
			return 0
		fi
		sleep 0.1
	done
	fail "VSE $1 was not restarted (pid was $2)"
}
