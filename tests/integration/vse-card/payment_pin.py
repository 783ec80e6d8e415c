#!/usr/bin/python3
"""A terminal and a PIN client written with python3-pyscard against payguard's
GP card in pcscd's vpcd reader (issue 3). Payment: SELECT PPSE, SELECT the AID
its directory lists, GET PROCESSING OPTIONS with the PDOL data, READ RECORD for
every record in the AFL, GENERATE AC (ARQC). PIN: VERIFY with the transport
PIN, GENERATE ASYMMETRIC KEY PAIR, PSO: COMPUTE DIGITAL SIGNATURE, verified
with python3-cryptography. Run "first" on a fresh card, then "second" after a
restart: the ATC and the try counter must have persisted.
usage: payment_pin.py READER first|second"""
import sys
from smartcard.System import readers
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

reader_name, phase = sys.argv[1], sys.argv[2]


def check(cond, what):
    if not cond:
        print("pyscard: FAIL:", what, file=sys.stderr)
        sys.exit(1)


def tlv(data):
    """BER-TLV objects of one level: list of (tag, value)."""
    out, i = [], 0
    while i < len(data):
        tag = data[i]
        i += 1
        if tag & 0x1F == 0x1F:
            while True:
                tag = (tag << 8) | data[i]
                i += 1
                if not data[i - 1] & 0x80:
                    break
        n = data[i]
        i += 1
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(data[i:i + k], "big")
            i += k
        out.append((tag, data[i:i + n]))
        i += n
    return out


def find(data, tag):
    for t, v in tlv(data):
        if t == tag:
            return v
        if (t >> (8 * ((t.bit_length() - 1) // 8))) & 0x20:
            r = find(v, tag)
            if r is not None:
                return r
    return None


rs = [r for r in readers() if str(r) == reader_name]
check(rs, "reader %r not listed" % reader_name)
conn = rs[0].createConnection()
conn.connect()


def tx(apdu):
    data, sw1, sw2 = conn.transmit(list(bytes.fromhex(apdu) if isinstance(apdu, str) else apdu))
    if sw1 == 0x61:
        more, sw1, sw2 = conn.transmit([0x00, 0xC0, 0x00, 0x00, sw2])
        data += more
    return bytes(data), (sw1 << 8) | sw2


# ---- payment ----
fci, sw = tx("00A404000E325041592E5359532E444446303100")
check(sw == 0x9000 and fci[0] == 0x6F, "SELECT PPSE %04X" % sw)
entry = find(fci, 0x61)
aid = find(entry, 0x4F)
check(find(entry, 0x50) == b"PAYGUARD" and find(entry, 0x87) == b"\x01", "PPSE entry")
fci, sw = tx(bytes([0, 0xA4, 4, 0, len(aid)]) + aid + b"\x00")
check(sw == 0x9000, "SELECT AID %04X" % sw)
pdol = find(fci, 0x9F38)
need, i = 0, 0
while i < len(pdol):  # PDOL: tag, length pairs
    i += 2 if pdol[i] & 0x1F == 0x1F else 1
    need += pdol[i]
    i += 1
pdol_data = bytes(need)
gpo, sw = tx(bytes([0x80, 0xA8, 0, 0, need + 2, 0x83, need]) + pdol_data + b"\x00")
check(sw == 0x9000 and gpo[0] == 0x77, "GPO %04X" % sw)
aip, afl = find(gpo, 0x82), find(gpo, 0x94)
check(len(aip) == 2 and len(afl) % 4 == 0 and afl, "AIP/AFL")
records = []
for j in range(0, len(afl), 4):
    sfi = afl[j] >> 3
    for rec in range(afl[j + 1], afl[j + 2] + 1):
        r, sw = tx(bytes([0, 0xB2, rec, (sfi << 3) | 4, 0]))
        check(sw == 0x9000 and r[0] == 0x70, "READ RECORD %d/%d %04X" % (sfi, rec, sw))
        records.append(r)
pan = b"".join(find(r, 0x5A) or b"" for r in records)
check(pan[:3] == bytes.fromhex("599999"), "PAN %s" % pan.hex())
cdol1 = b"".join(find(r, 0x8C) or b"" for r in records)
n, i = 0, 0
while i < len(cdol1):
    i += 2 if cdol1[i] & 0x1F == 0x1F else 1
    n += cdol1[i]
    i += 1
ac, sw = tx(bytes([0x80, 0xAE, 0x80, 0, n]) + bytes(n) + b"\x00")
check(sw == 0x9000 and ac[0] == 0x77, "GENERATE AC %04X" % sw)
check(find(ac, 0x9F27) == b"\x80" and len(find(ac, 0x9F26)) == 8, "ARQC")
atc = int.from_bytes(find(ac, 0x9F36), "big")
check(atc == (1 if phase == "first" else 2), "ATC %d in the %s run" % (atc, phase))
print("pyscard: payment flow ok: AID %s PAN %s ATC %d ARQC %s" %
      (aid.hex(), pan.hex(), atc, find(ac, 0x9F26).hex()))

# ---- PIN and key store ----
_, sw = tx("00A4040007F0504750494E0100")
check(sw == 0x9000, "SELECT PIN applet")
def sign_and_check(pub):
    msg = b"payguard " + phase.encode()
    sig, sw = tx(bytes([0, 0x2A, 0x9E, 0x9A, len(msg)]) + msg + b"\x00")
    check(sw == 0x9000, "SIGN %04X" % sw)
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub[5:70])
    key.verify(sig, msg, ec.ECDSA(hashes.SHA256()))  # raises if wrong
    print("pyscard: PIN flow ok: ECDSA P-256 signature verified (%d bytes)" % len(sig))


if phase == "first":
    _, sw = tx("0020008008249999FFFFFFFFFF")
    check(sw == 0x63C2, "wrong PIN %04X" % sw)
    _, sw = tx("0020008000")
    check(sw == 0x63C2, "retry counter %04X" % sw)
    _, sw = tx("002A9E9A0568656C6C6F00")
    check(sw == 0x6982, "SIGN before VERIFY must be refused: %04X" % sw)
    _, sw = tx("0020008008241234FFFFFFFFFF")
    check(sw == 0x9000, "VERIFY %04X" % sw)
    pub, sw = tx("0046800000")
    check(sw == 0x9000 and pub[:5] == bytes.fromhex("7F49438641"), "GENERATE KEY %04X" % sw)
    sign_and_check(pub)
    _, sw = tx("0020008008249999FFFFFFFFFF")  # leaves 2 tries for the restart
    check(sw == 0x63C2, "wrong PIN again %04X" % sw)
else:
    _, sw = tx("0020008000")
    check(sw == 0x63C2, "try counter after restart %04X" % sw)
    _, sw = tx("0020008008241234FFFFFFFFFF")
    check(sw == 0x9000, "VERIFY %04X" % sw)
    pub, sw = tx("0046810000")
    check(sw == 0x9000, "public key after restart %04X" % sw)
    sign_and_check(pub)
