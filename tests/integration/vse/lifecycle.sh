#!/usr/bin/env bash
# VSE manager and hypervisor through the CLI (seed 6): create (every socket
# link type and a TCP listener), list, show, APDUs, stop/start with
# persistent memory kept, destroy, request validation, socket mode 0600,
# and a restarted hypervisor resuming its VSEs from the SQLite store.
. "$(dirname "$0")/common.sh"
start_hv

sock=$PAYGUARD_DATA_DIR/vse/hv.sock
[ "$(stat -c %a "$sock")" = 600 ] || fail "socket mode $(stat -c %a "$sock"), want 600"

for l in t0 t1 swp spi i2c ccid; do
	"$pg" vse create --name "v-$l" --arena 128K --pmem 8K --applet test --master $MASTER \
		--link $l >/dev/null || fail "create over $l"
	r=$(resp "v-$l" $SEL_ISD 80CA9F7F00)
	[ "${#r}" = 94 ] && [ "${r: -4}" = 9000 ] || fail "CPLC over $l: $r"
done
# create --json prints the new VSE (issue 13 item 10: it once read the answer after freeing it)
"$pg" vse create --name v-json --master $MASTER --link t1 --json >"$work/create.json" ||
	fail "create --json: exit $?"
/usr/bin/python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); assert v["name"] == "v-json" and v["state"] == "running", v' \
	"$work/create.json" || fail "create --json printed no VSE: $(cat "$work/create.json")"
"$pg" vse destroy v-json >/dev/null || fail "destroy v-json"
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$pg" vse create --name v-tcp --master $MASTER --link t1 --listen "tcp:127.0.0.1:$port" >/dev/null ||
	fail "create on tcp"
[ "$(sw v-tcp $SEL_ISD)" = 9000 ] || fail "SELECT over tcp"
[ "$(field v-tcp address)" = "tcp:127.0.0.1:$port" ] || fail "tcp address"

n=$("$pg" vse list --json | /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$n" = 7 ] || fail "list shows $n VSEs, want 7"
"$pg" vse list | grep -q '^v-swp  *running' || fail "table output"
# show: configuration without keys, key check values instead
"$pg" vse show v-t1 --json >"$work/show.json"
grep -q '"kcv_enc"' "$work/show.json" || fail "show lacks key check values"
grep -qi "$MASTER" "$work/show.json" && fail "show leaks the master key"
grep -q '"cin": "5047565300000002"' "$work/show.json" || fail "CIN not assigned from the id"

# CIN-diversified keys: each VSE's CIN differs, so its key check values do too
k1=$(field v-t0 request | grep -o "kcv_enc[^,]*")
k2=$(field v-t1 request | grep -o "kcv_enc[^,]*")
[ -n "$k1" ] && [ "$k1" != "$k2" ] || fail "diversified keys equal across VSEs ($k1 / $k2)"

# Persistent memory across stop/start: an applet installed in an SCP03 session
# (keys diversified from the master by the VSE's CIN) is still there after.
[ "$(sw v-t1 "$(select_pin 0001)")" = 6A82 ] || fail "instance exists before INSTALL"
[ "$(sw v-t1 --scp03 --master $MASTER "$(install_pin 0001)")" = 9000 ] || fail "INSTALL"
"$pg" vse apdu v-t1 --scp03 --master 0F0E0D0C0B0A09080706050403020100 $SEL_ISD >/dev/null 2>&1 &&
	fail "SCP03 opened with the wrong master key"
"$pg" vse stop v-t1 >/dev/null
[ "$(field v-t1 state)" = stopped ] || fail "stop"
"$pg" vse apdu v-t1 $SEL_ISD >/dev/null 2>&1 && fail "a stopped VSE answered"
"$pg" vse start v-t1 >/dev/null
[ "$(sw v-t1 "$(select_pin 0001)")" = 9000 ] || fail "persistent memory lost over stop/start"

# Validation before acting: exit 3 for bad input, nothing created
set +e
"$pg" vse create --name ../evil --master $MASTER >/dev/null 2>&1; rc1=$?
"$pg" vse create --name ok1 --arena 1K --master $MASTER >/dev/null 2>&1; rc2=$?
"$pg" vse create --name ok2 --applet nosuch --master $MASTER >/dev/null 2>&1; rc3=$?
"$pg" vse create --name ok3 --master $MASTER --link t1 --listen tcp:0.0.0.0:4000 >/dev/null 2>&1; rc4=$?
"$pg" vse create --name v-t0 --master $MASTER >/dev/null 2>&1; rc5=$?
"$pg" vse show nosuch >/dev/null 2>&1; rc6=$?
set -e
[ "$rc1$rc2$rc3$rc4" = 3333 ] || fail "bad requests gave $rc1 $rc2 $rc3 $rc4, want 3 3 3 3"
[ "$rc5" = 1 ] || fail "duplicate name gave $rc5"
[ "$rc6" = 4 ] || fail "unknown VSE gave $rc6"
# Requests over the socket API are validated by the daemon too (raw frame, bad name)
/usr/bin/python3 - "$sock" <<'PY' || fail "daemon accepted a bad raw request"
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
m = json.dumps({"op": "create", "vse": {"name": "a/b", "arena": 65536, "pmem": 4096,
    "keys": {"master": "00" * 16}, "expose": {"link": "t1"}}}).encode()
s.sendall(struct.pack(">I", len(m)) + m)
n = struct.unpack(">I", s.recv(4))[0]
r = json.loads(s.recv(n))
assert r["ok"] is False and r["error"] == "PG_EINVAL", r
PY
[ ! -e "$PAYGUARD_DATA_DIR/vse/ok1" ] && [ ! -e "$PAYGUARD_DATA_DIR/vse/a" ] || fail "directory left behind"

# A restarted hypervisor resumes its VSEs from the store, memory intact
stop_hv
start_hv
for _ in $(seq 1 50); do [ "$(field v-t1 state)" = running ] && break; sleep 0.1; done
[ "$(sw v-t1 "$(select_pin 0001)")" = 9000 ] || fail "VSE not resumed with its memory"

# destroy removes state, files and the row
"$pg" vse destroy v-t1 >/dev/null
[ ! -e "$PAYGUARD_DATA_DIR/vse/v-t1" ] || fail "destroy left files"
"$pg" vse show v-t1 >/dev/null 2>&1 && fail "destroyed VSE still shown"
for v in v-t0 v-t1 v-swp v-spi v-i2c v-ccid v-tcp; do "$pg" vse destroy $v >/dev/null 2>&1 || true; done
[ "$("$pg" vse list --json)" = "[]" ] || fail "list not empty after destroy"
echo "vse lifecycle: ok"
