#!/usr/bin/env bash
# The NFC switch's card-emulation side exposed as a PC/SC reader: pcscd +
# Debian's vpcd, `payguard nfcswitch serve --vpcd` (the switch is the card in
# vpcd's slot), and a python3-pyscard client playing the contactless reader
# for full transactions routed to three SEs on SWP, T=1 and SPI.
# Fails (never skips) when pcscd, vpcd or pyscard are missing.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
command -v pcscd >/dev/null || fail "pcscd is not installed (scripts/setup.sh installs it)"
/usr/bin/python3 -c 'import smartcard' 2>/dev/null ||
	fail "python3-pyscard is not installed (scripts/setup.sh installs it)"
. "$src/scripts/se-pcscd.sh"
pcscd_check
pcscd -f -a >"$work/pcscd.log" 2>&1 &
pcscd_pid=$!
pcscd_ready "$pcscd_pid"
start_ses
"$pg" nfcswitch serve --config "$work/switch.conf" --vpcd tcp:127.0.0.1:35963 --once \
	>"$work/switch.log" 2>&1 &
pids+=($!)
/usr/bin/python3 - "Virtual PCD 00 00" <<'PY' || fail "pyscard transactions through the switch"
import sys, time
from smartcard.System import readers
from smartcard.util import toHexString

name = sys.argv[1]
conn = None
for _ in range(100):
    try:
        r = [x for x in readers() if str(x) == name]
        conn = r[0].createConnection()
        conn.connect()
        break
    except Exception:
        conn = None
        time.sleep(0.1)
assert conn, "pcscd never saw the switch in " + name

def tx(hexs, want=0x9000):
    data, sw1, sw2 = conn.transmit(list(bytes.fromhex(hexs)))
    sw = sw1 << 8 | sw2
    assert sw == want, "%s -> %04X (want %04X)" % (hexs, sw, want)
    return bytes(data)

# EMV terminal data for the cards' PDOL (9F66 9F02 9F37 5F2A) and CDOL1 (29 bytes).
GPO = "80A8000012831036004000000000001250A1B2C3D4097800"
GENAC = "80AE80001D00000000125000000000000002500000000000097826112500A1B2C3D400"
ppse = tx("00A404000E325041592E5359532E444446303100")
aids = ["A0000000031010", "A0000000041010", "A0000000651010"]
pos = [ppse.find(bytes.fromhex(a)) for a in aids]
assert all(p > 0 for p in pos) and pos == sorted(pos), pos
labels = {"A0000000041010": b"MASTERCARD", "A0000000031010": b"VISA", "A0000000651010": b"JCB"}
for aid in aids:
    tx("00A404000E325041592E5359532E444446303100")
    fci = tx("00A4040007" + aid + "00")
    assert labels[aid] in fci, fci
    gpo = tx(GPO)
    assert gpo[0] == 0x77
    rec = tx("00B2020C00")  # SFI 1 record 2: PAN, dates, CDOL1
    assert rec[0] == 0x70 and bytes([0x5A, 0x08]) in rec
    ac = tx(GENAC)
    assert bytes.fromhex("9F2701809F3602") in ac
    k = ac.find(bytes.fromhex("9F2608"))
    assert k > 0
    print("pyscard: %s transaction ok (AC %s)" % (labels[aid].decode(), ac[k + 3:k + 11].hex()))
tx("00A4040008F0504754524E530200")
assert tx("8054000004000003E8") == bytes.fromhex("00000FA0")
tx(GPO, 0x9000)
tx("00A4040007A000000999990100", 0x6A82)
tx("80A8000002830000", 0x6985)
print("pyscard: unrouted SELECT 6A82, then 6985")
PY
grep -q "APDU: 80 AE 80 00 1D" "$work/pcscd.log" || fail "pcscd log lacks the GENERATE AC"
echo "nfcswitch pcsc: ok"
