# Shared by the NFC switch integration tests: three demo SEs as processes
# (`payguard nfcswitch sim`) on SWP, T=1 and SPI over UNIX sockets, and the
# routing configuration naming them. Everything started is stopped on exit.
set -euo pipefail
pg=${PAYGUARD:?PAYGUARD must point at the payguard binary}
src=${PG_SOURCE_DIR:?}
work=$(mktemp -d /tmp/pg-nfcsw-it.XXXXXX)
pids=()
pcscd_pid=""

fail() {
	echo "FAIL: $*" >&2
	for f in "$work"/*.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -15 "$f" >&2; }; done
	exit 1
}

cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -n "$pcscd_pid" ]; then
		kill "$pcscd_pid" 2>/dev/null || true
		wait "$pcscd_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

wait_socket() {
	for _ in $(seq 1 100); do
		[ -S "$1" ] && return 0
		sleep 0.1
	done
	fail "no socket $1"
}

# uicc (SWP): MASTERCARD + METRO transit; ese (T=1): VISA + RAIL transit;
# sd (SPI, no own PPSE): JCB, configured as a payment application.
start_ses() {
	"$pg" nfcswitch sim --link swp --listen "unix:$work/uicc.sock" --serial 0x101 \
		--app payment:A0000000041010:MASTERCARD:2 --app transit:F0504754524E5301:METRO \
		>"$work/uicc.log" 2>&1 &
	pids+=($!)
	"$pg" nfcswitch sim --link t1 --listen "unix:$work/ese.sock" --serial 0x102 \
		--app payment:A0000000031010:VISA:1 --app transit:F0504754524E5302:RAIL \
		>"$work/ese.log" 2>&1 &
	pids+=($!)
	"$pg" nfcswitch sim --link spi --listen "unix:$work/sd.sock" --serial 0x103 --no-ppse \
		--app payment:A0000000651010:JCB:3 >"$work/sd.log" 2>&1 &
	pids+=($!)
	wait_socket "$work/uicc.sock"
	wait_socket "$work/ese.sock"
	wait_socket "$work/sd.sock"
	cat >"$work/switch.conf" <<CONF
# three SEs on three link types
policy priority
se uicc link=swp addr=unix:$work/uicc.sock priority=2
se ese link=t1 addr=unix:$work/ese.sock priority=1
se sd link=spi addr=unix:$work/sd.sock priority=3
app sd A0000000651010 priority=3 label=JCB payment
CONF
}
