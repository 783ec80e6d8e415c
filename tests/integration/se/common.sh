# Shared by the SE integration tests: start/stop pcscd + vpcd and a simulated
# card plugged into vpcd; everything started is stopped on exit.
set -euo pipefail
pg=${PAYGUARD:?PAYGUARD must point at the payguard binary}
src=${PG_SOURCE_DIR:?}
work=$(mktemp -d /tmp/pg-se-it.XXXXXX)
pcscd_pid=""
sim_pids=()
READER="Virtual PCD 00 00"

fail() { echo "FAIL: $*" >&2; [ -f "$work/pcscd.log" ] && tail -20 "$work/pcscd.log" >&2; exit 1; }

cleanup() {
	local p
	for p in "${sim_pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${sim_pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -n "$pcscd_pid" ]; then
		kill "$pcscd_pid" 2>/dev/null || true
		wait "$pcscd_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

need() {
	command -v "$1" >/dev/null || fail "$1 is not installed (scripts/setup.sh installs it)"
}

start_pcscd() {
	need pcscd
	need opensc-tool
	/usr/bin/python3 -c 'import smartcard' 2>/dev/null ||
		fail "python3-pyscard is not installed (scripts/setup.sh installs it)"
	. "$src/scripts/se-pcscd.sh"
	pcscd_check
	pcscd -f -a >"$work/pcscd.log" 2>&1 &
	pcscd_pid=$!
	pcscd_ready "$pcscd_pid"
}

# start_card SERIAL [PORT]: a simulated SE dialing vpcd; waits until pcscd sees it.
start_card() {
	local port=${2:-35963} slot
	"$pg" se sim --link vpcd --connect "tcp:127.0.0.1:$port" --serial "$1" --once \
		>"$work/sim-$port.log" 2>&1 &
	sim_pids+=($!)
	slot=$((port - 35963))
	for _ in $(seq 1 100); do
		if /usr/bin/python3 - "Virtual PCD 00 0$slot" <<'PY' 2>/dev/null; then return 0; fi
import sys
from smartcard.System import readers
r = [x for x in readers() if str(x) == sys.argv[1]]
c = r[0].createConnection()
c.connect()
PY
		sleep 0.1
	done
	cat "$work/sim-$port.log" >&2
	fail "pcscd never saw the simulated card in 'Virtual PCD 00 0$slot'"
}
