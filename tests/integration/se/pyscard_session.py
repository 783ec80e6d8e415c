#!/usr/bin/python3
"""A PC/SC client written with python3-pyscard against payguard's simulated SE
in pcscd's vpcd reader: ATR, SELECT by AID (ISO/IEC 7816-4 11.1.1), ECHO,
MANAGE CHANNEL (11.1.2) with a command on the new channel, GET DATA CPLC
(GlobalPlatform Card Specification 2.3, 9F7F) and the command counter.
usage: pyscard_session.py READER SERIAL_HEX"""
import sys
from smartcard.System import readers

reader_name, serial = sys.argv[1], bytes.fromhex(sys.argv[2])


def check(cond, what):
    if not cond:
        print("pyscard: FAIL:", what, file=sys.stderr)
        sys.exit(1)


rs = [r for r in readers() if str(r) == reader_name]
check(rs, "reader %r not listed by pcscd" % reader_name)
conn = rs[0].createConnection()
conn.connect()
atr = conn.getATR()
check(atr[0] == 0x3B and atr[4:6] == [0x80, 0x58] and atr[6:14] == list(b"payguard"), "ATR %s" % bytes(atr).hex())


def tx(apdu):
    data, sw1, sw2 = conn.transmit(list(apdu))
    return bytes(data), (sw1 << 8) | sw2


AID = bytes.fromhex("F0") + b"payguard" + bytes([1])
data, sw = tx(bytes([0x00, 0xA4, 0x04, 0x00, len(AID)]) + AID + b"\x00")
check(sw == 0x9000 and data[0] == 0x6F and AID in data, "SELECT: %04X %s" % (sw, data.hex()))
payload = bytes(range(16))
data, sw = tx(b"\x80\x10\x00\x00\x10" + payload + b"\x00")
check(sw == 0x9000 and data == payload, "ECHO: %04X %s" % (sw, data.hex()))
# Extended length through pcscd and vpcd: 1000 bytes each way.
big = bytes((i * 13) & 0xFF for i in range(1000))
data, sw = tx(b"\x80\x10\x00\x00\x00\x03\xE8" + big + b"\x00\x00")
check(sw == 0x9000 and data == big, "extended ECHO: %04X, %d bytes" % (sw, len(data)))
# A logical channel: opened, used with its own selection, closed.
data, sw = tx(b"\x00\x70\x00\x00\x01")
check(sw == 0x9000 and len(data) == 1 and 1 <= data[0] <= 19, "MANAGE CHANNEL open")
ch = data[0]
data, sw = tx(bytes([0x80 | ch, 0xCA, 0x9F, 0x7F, 0x00]))  # the ISD on the new channel
check(sw == 0x9000 and data[:3] == b"\x9F\x7F\x2A" and data[3 + 12:3 + 16] == serial,
      "CPLC on channel %d: %04X %s" % (ch, sw, data.hex()))
_, sw = tx(bytes([0x00, 0x70, 0x80, ch]))
check(sw == 0x9000, "MANAGE CHANNEL close: %04X" % sw)
_, sw = tx(bytes([0x80 | ch, 0xCA, 0x9F, 0x7F, 0x00]))
check(sw == 0x6881, "closed channel must answer 6881, got %04X" % sw)
# The counter counts every executed command, so two reads differ by one.
d1, sw1 = tx(b"\x80\x12\x00\x00\x08")
d2, sw2 = tx(b"\x80\x12\x00\x00\x08")
check(sw1 == sw2 == 0x9000 and int.from_bytes(d2, "big") == int.from_bytes(d1, "big") + 1,
      "GET COUNTER %s then %s" % (d1.hex(), d2.hex()))
conn.disconnect()
print("pyscard: ATR %s, 8 exchanges ok, counter %d" % (bytes(atr).hex(), int.from_bytes(d2, "big")))
