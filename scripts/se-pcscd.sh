#!/usr/bin/env bash
# Starts and stops a private pcscd with Debian's vsmartcard-vpcd reader for
# the SE tests, benchmark and demo (pcscd has one fixed socket per machine,
# /run/pcscd/pcscd.comm, so only one may run; CTest serialises its users
# with RESOURCE_LOCK pcscd).
#   scripts/se-pcscd.sh start LOG   starts `pcscd -f -a` (foreground, APDU log
#                                    to LOG), waits until its socket and
#                                    vpcd's port 35963 answer, prints its pid
#   scripts/se-pcscd.sh stop PID    stops that pcscd and waits for it to go
# Scripts that can reap their children (tests) source this file instead and
# call pcscd_check, start `pcscd -f -a` themselves and call pcscd_ready PID,
# so no zombie outlives them.
# Debian 12's pcscd 1.9.9 runs as root without systemd socket activation
# when started in the foreground, and has no polkit check.
die() { echo "se-pcscd: $*" >&2; exit 1; }

# pcscd processes that are alive (a zombie left unreaped by its parent does not count).
live_pcscd() {
	local p
	for p in $(pgrep -x pcscd || true); do
		case "$(ps -o stat= -p "$p" 2>/dev/null)" in Z* | "") ;; *) echo "$p" ;; esac
	done
}

# Listening, checked without connecting: a connection to vpcd's port is a card to vpcd.
port_open() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# Prerequisites, and no other live pcscd holding the socket.
pcscd_check() {
	command -v pcscd >/dev/null || die "pcscd is not installed (apt-get install pcscd)"
	[ -e /usr/lib/pcsc/drivers/serial/libifdvpcd.so ] ||
		die "vpcd is not installed (apt-get install vsmartcard-vpcd)"
	grep -qs libifdvpcd /etc/reader.conf.d/* ||
		die "no vpcd entry in /etc/reader.conf.d (reinstall vsmartcard-vpcd)"
	# Another pcscd (a demo, another run, another user of this machine) owns the one
	# socket: wait up to 2 minutes for it to go.
	for _ in $(seq 1 240); do
		[ -n "$(live_pcscd)" ] || break
		sleep 0.5
	done
	if [ -n "$(live_pcscd)" ]; then
		die "another pcscd is running (pid $(live_pcscd | tr '\n' ' ')); stop it first"
	fi
	# A crashed pcscd leaves its socket behind, which makes the next one refuse to start.
	rm -f /run/pcscd/pcscd.comm /run/pcscd/pcscd.pid
}

# Waits until pcscd PID has its socket and vpcd listens on 35963.
pcscd_ready() {
	local pid=$1
	for _ in $(seq 1 100); do
		if [ -S /run/pcscd/pcscd.comm ] && port_open 35963; then
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || die "pcscd exited at start"
		sleep 0.1
	done
	die "pcscd did not open its socket and vpcd's port 35963 within 10 s"
}

[ "${BASH_SOURCE[0]}" = "$0" ] || return 0
set -euo pipefail

case "${1:-}" in
start)
	log=${2:?log file}
	pcscd_check
	pcscd -f -a >"$log" 2>&1 &
	pid=$!
	pcscd_ready "$pid" || { kill "$pid" 2>/dev/null; cat "$log" >&2; exit 1; }
	echo "$pid"
	;;
stop)
	pid=${2:?pid}
	kill "$pid" 2>/dev/null || exit 0
	for _ in $(seq 1 50); do
		case "$(ps -o stat= -p "$pid" 2>/dev/null)" in Z* | "") exit 0 ;; esac
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
	;;
*)
	die "usage: se-pcscd.sh start LOG | stop PID"
	;;
esac
