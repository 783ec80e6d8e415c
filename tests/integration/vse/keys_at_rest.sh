#!/usr/bin/env bash
# Keys at rest (issue 13, item 2): the VSE keys kept in payguard.db are
# wrapped (RFC 3394) under DIR/kek. A dump of the store (sqlite3 .dump) and
# its raw bytes hold none of the test keys, hex or raw, and the VSEs still
# authenticate with them over SCP03. A store written by an older payguard
# (keys in clear) is wrapped in place when the hypervisor opens it. A copy
# of the database without its kek holds no usable key. The kek file, the
# data directory and the store are refused when others may read them.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
data=$PAYGUARD_DATA_DIR
# whatever umask we are given, payguard keeps its files private
umask 000
ENC=2B7E151628AED2A6ABF7158809CF4F3C
MAC=F0E1D2C3B4A5968778695A4B3C2D1E0F
DEK=00FF11EE22DD33CC44BB55AA66997788
MKEY=C0C1C2C3C4C5C6C7C8C9CACBCCCDCECF

# no_keys WHAT FILE...: none of the test keys (hex either case, or raw bytes) is in FILE...
no_keys() {
	local what=$1
	shift
	/usr/bin/python3 - "$what" "$@" <<'PY' || fail "$what"
import sys
what, files = sys.argv[1], sys.argv[2:]
keys = ["2B7E151628AED2A6ABF7158809CF4F3C", "F0E1D2C3B4A5968778695A4B3C2D1E0F",
        "00FF11EE22DD33CC44BB55AA66997788", "C0C1C2C3C4C5C6C7C8C9CACBCCCDCECF",
        "000102030405060708090A0B0C0D0E0F"]
found = []
for f in files:
    try:
        blob = open(f, "rb").read()
    except FileNotFoundError:
        continue
    for k in keys:
        for needle in (k.encode(), k.lower().encode(), bytes.fromhex(k)):
            if needle in blob:
                found.append((f, k))
if found:
    print("FAIL: %s: keys found: %s" % (what, found), file=sys.stderr)
    sys.exit(1)
print("ok: %s (%d files, %d keys)" % (what, len(files), len(keys)))
PY
}

# dump_and_files: the store's SQL dump plus the store files themselves
check_store() {
	sqlite3 "$data/payguard.db" .dump >"$work/dump.sql" || fail "sqlite3 .dump"
	grep -q 'vse_instance' "$work/dump.sql" || fail "dump has no vse_instance table"
	no_keys "$1" "$work/dump.sql" "$data/payguard.db" "$data/payguard.db-wal"
}

start_hv
"$pg" vse create --name v-exp --keys "$ENC:$MAC:$DEK" --link t1 >/dev/null || fail "create explicit"
"$pg" vse create --name v-div --master "$MKEY" --link t1 >/dev/null || fail "create master"
"$pg" vse create --name v-old --master "$MASTER" --link t1 >/dev/null || fail "create v-old"

# a request file holds keys: refused while others can read it
printf '{"name":"v-req","arena":"256K","pmem":"64K","keys":{"master":"%s"},"expose":{"link":"t1"}}' \
	"$MKEY" >"$work/req.json"
chmod 644 "$work/req.json"
out=$("$pg" vse create --request "$work/req.json" 2>&1) && fail "vse create read a 0644 request"
echo "$out" | grep -qF "run: chmod 600 '$work/req.json'" || fail "request message: $out"
chmod 600 "$work/req.json"
"$pg" vse create --request "$work/req.json" >/dev/null || fail "create from a 0600 request"

# the data directory and every file made in it are private, whatever our umask was
[ "$(stat -c %a "$data")" = 700 ] || fail "data dir mode $(stat -c %a "$data")"
for f in "$data/kek" "$data/payguard.db"; do
	[ "$(stat -c %a "$f")" = 600 ] || fail "$f mode $(stat -c %a "$f")"
done
[ "$(stat -c %s "$data/kek")" = 32 ] || fail "kek is not 32 bytes"

check_store "dump and raw store after create"
# ... and the keys still work: SCP03 with the explicit set and the master
[ "$(sw v-exp --scp03 --keys "$ENC:$MAC:$DEK" $SEL_ISD)" = 9000 ] || fail "SCP03 with explicit keys"
[ "$(sw v-div --scp03 --master "$MKEY" $SEL_ISD)" = 9000 ] || fail "SCP03 with master"
"$pg" vse apdu v-exp --scp03 --keys "$MAC:$ENC:$DEK" $SEL_ISD >/dev/null 2>&1 &&
	fail "SCP03 opened with swapped keys"

# A restarted hypervisor unwraps them again
stop_hv
start_hv
[ "$(sw v-exp --scp03 --keys "$ENC:$MAC:$DEK" $SEL_ISD)" = 9000 ] || fail "SCP03 after restart"

# Migration: a store an older payguard wrote (keys in clear) is wrapped on open
stop_hv
/usr/bin/python3 - "$data/payguard.db" "$MASTER" <<'PY' || fail "writing an old-style row"
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
cfg = json.loads(db.execute("SELECT config FROM vse_instance WHERE name='v-old'").fetchone()[0])
cfg["keys"] = {"kvn": cfg["keys"]["kvn"], "master": sys.argv[2]}
db.execute("UPDATE vse_instance SET config=? WHERE name='v-old'", (json.dumps(cfg),))
db.commit()
assert sys.argv[2] in db.execute("SELECT config FROM vse_instance WHERE name='v-old'").fetchone()[0]
# and a malformed row: left alone (reported), it must not stop the others
bad = dict(cfg, name="v-junk", keys={"kvn": 48, "master": "not hex"})
db.execute("INSERT INTO vse_instance(name, config, state, created_ms, updated_ms)"
           " VALUES('v-junk', ?, 'stopped', 0, 0)", (json.dumps(bad),))
db.commit()
db.close()
PY
# (through a file: with pipefail, grep -q quitting early would SIGPIPE the dump)
sqlite3 "$data/payguard.db" .dump >"$work/dump.sql" || fail "sqlite3 .dump"
grep -q "$MASTER" "$work/dump.sql" || fail "the old-style row is not in clear"
start_hv
check_store "dump and raw store after migrating a clear row"
[ "$(sw v-old --scp03 --master "$MASTER" $SEL_ISD)" = 9000 ] || fail "SCP03 after migration"
grep -q "stored VSE [0-9]*: keys not wrapped" "$work/hv.log" || fail "malformed row not reported"
"$pg" vse show v-junk >/dev/null 2>&1 && fail "a malformed row was loaded"
sqlite3 "$data/payguard.db" "DELETE FROM vse_instance WHERE name='v-junk'"
sqlite3 "$data/payguard.db" "SELECT config FROM vse_instance WHERE name='v-old'" | grep -q '"master_kw":"' ||
	fail "the old-style row was not wrapped"

# A copy of the database alone holds no usable key: beside another kek, no
# VSE can be brought back from it
stop_hv
copy=$work/copy
mkdir -m 700 "$copy"
cp "$data/payguard.db" "$copy/payguard.db"
PAYGUARD_DATA_DIR=$copy "$pg" vse serve >"$work/copy.log" 2>&1 &
cpid=$!
for _ in $(seq 1 100); do
	PAYGUARD_DATA_DIR=$copy "$pg" vse list >/dev/null 2>&1 && break
	sleep 0.1
done
n=$(PAYGUARD_DATA_DIR=$copy "$pg" vse list --json | /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
kill "$cpid"
wait "$cpid" || true
[ "$n" = 0 ] || fail "a copy of the store without its kek brought back $n VSEs"
grep -q 'integrity check' "$work/copy.log" || fail "copy: no integrity failure logged"

# The kek: refused when group/others may read it, or when it is a symlink
chmod 640 "$data/kek"
out=$("$pg" vse serve 2>&1) && fail "hypervisor ran with a 0640 kek"
echo "$out" | grep -qF "permissions 0640 for '$data/kek' are too open; run: chmod 600 '$data/kek'" ||
	fail "kek message: $out"
chmod 600 "$data/kek"
mv "$data/kek" "$data/kek.real"
ln -s "$data/kek.real" "$data/kek"
out=$("$pg" vse serve 2>&1) && fail "hypervisor ran with a symlinked kek"
echo "$out" | grep -q "symbolic link" || fail "kek symlink message: $out"
rm "$data/kek"
mv "$data/kek.real" "$data/kek"

# The data directory and the store: refused when others may read them, with the chmod
chmod 755 "$data"
out=$("$pg" vse serve 2>&1) && fail "hypervisor ran on a 0755 data directory"
echo "$out" | grep -qF "permissions 0755 for '$data' are too open; run: chmod 700 '$data'" ||
	fail "data dir message: $out"
chmod 700 "$data"
chmod 644 "$data/payguard.db"
out=$("$pg" vse serve 2>&1) && fail "hypervisor ran on a 0644 store"
echo "$out" | grep -qF "run: chmod 600 '$data/payguard.db'" || fail "store message: $out"
chmod 600 "$data/payguard.db"
start_hv
[ "$(sw v-exp --scp03 --keys "$ENC:$MAC:$DEK" $SEL_ISD)" = 9000 ] || fail "SCP03 at the end"
echo "ok: keys at rest"
