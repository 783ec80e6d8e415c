#!/usr/bin/python3
"""Issue 13 item 8, driven through pcscd + vsmartcard's vpcd with
python3-pyscard: a VSE exposed as a PC/SC reader never exits for what its
reader sends, and pcscd sees its card again after every restart.

usage: vpcd_robust.py PAYGUARD NAME READER bad|restarts N
  bad       APDUs over 65,535 bytes and malformed ones: each answered with an
            error status or refused, the VSE process the same one throughout
            (pid and restart count unchanged), SELECT ISD works after each
  restarts  N times: SIGKILL the VSE, wait for the hypervisor to restart it,
            and require pcscd to show the card and SELECT ISD to answer 9000"""
import json, os, signal, subprocess, sys, time
from smartcard.System import readers
from smartcard.Exceptions import CardConnectionException, NoCardException

pg, name, reader_name, mode = sys.argv[1:5]
SELECT_ISD = list(bytes.fromhex("00A4040008A00000015100000000"))


def fail(what):
    print("vpcd_robust: FAIL:", what, file=sys.stderr)
    sys.exit(1)


def show():
    out = subprocess.run([pg, "vse", "show", name, "--json"], capture_output=True, check=True)
    return json.loads(out.stdout)


def reader():
    rs = [r for r in readers() if str(r) == reader_name]
    if not rs:
        fail("reader %r not listed" % reader_name)
    return rs[0]


def select_isd(deadline_s):
    """Connects and SELECTs the ISD until it answers 9000; returns seconds taken."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < deadline_s:
        try:
            c = reader().createConnection()
            c.connect()
            try:
                data, sw1, sw2 = c.transmit(SELECT_ISD)
                if (sw1, sw2) == (0x90, 0x00):
                    return c, time.monotonic() - t0
                last = "SW %02X%02X" % (sw1, sw2)
            except CardConnectionException as e:
                last = str(e)
        except (CardConnectionException, NoCardException) as e:
            last = str(e)
        time.sleep(0.1)
    fail("no card answering in %r within %d s (last: %s)" % (reader_name, deadline_s, last))


def transmit(conn, apdu):
    """(conn, SW or None, error): a card reset or removal left by the case
    before is waited out (new connection, same APDU again), so each case
    reaches the card; any other failure is pcscd's or vpcd's refusal."""
    for _ in range(20):
        try:
            data, sw1, sw2 = conn.transmit(apdu)
            return conn, (sw1 << 8) | sw2, None
        except CardConnectionException as e:
            if "reset" not in str(e) and "removed" not in str(e):
                return conn, None, str(e)
            conn, _ = select_isd(20)
    fail("the card kept being reset")


if mode == "bad":
    before = show()
    conn, _ = select_isd(20)
    big = [
        ("APDU of 65,536 bytes", [0x80, 0xCA, 0x9F, 0x7F] + [0] * 65532),
        ("APDU of 65,540 bytes", [0x80, 0xCA, 0x9F, 0x7F] + [0] * 65536),
        ("APDU of 65,548 bytes (pcscd's largest)", [0x80, 0xCA, 0x9F, 0x7F] + [0x41] * 65544),
        ("extended case 3, 65,535 data bytes",
         [0x80, 0xE2, 0x80, 0x00, 0x00, 0xFF, 0xFF] + [0x5A] * 65535),
    ]
    malformed = [
        ("three bytes", [0x00, 0xA4, 0x04]),
        ("Lc beyond the data", [0x00, 0xA4, 0x04, 0x00, 0x10, 0xA0]),
        ("extended Lc with short data", [0x00, 0xA4, 0x04, 0x00, 0x00, 0x01, 0x00, 0xA0]),
        ("APDU of 65,535 bytes, Lc and data disagree",
         [0x80, 0xCA, 0x9F, 0x7F, 0x00, 0xFF, 0xFA] + [0] * 65528),
    ]
    answered = 0
    for what, apdu in big + malformed:
        conn, sw, err = transmit(conn, apdu)
        if sw is not None:
            if sw == 0x9000 and (what, apdu) in malformed:
                fail("%s answered 9000" % what)
            print("vpcd_robust: %s: SW %04X" % (what, sw))
            answered += 1
        elif (what, apdu) in malformed and len(apdu) >= 4:
            fail("%s did not reach the card: %s" % (what, err))
        else:
            print("vpcd_robust: %s: refused (%s)" % (what, err))
        conn, took = select_isd(20)
        now = show()
        if now["pid"] != before["pid"] or now["restarts"] != before["restarts"]:
            fail("after %s the VSE was restarted (pid %s -> %s, restarts %s -> %s, last exit %s)"
                 % (what, before["pid"], now["pid"], before["restarts"], now["restarts"],
                    now.get("last_exit")))
    print("vpcd_robust: %d oversized and %d malformed APDUs (%d answered with a status), "
          "the VSE (pid %s) never restarted" % (len(big), len(malformed), answered, before["pid"]))
elif mode == "restarts":
    n = int(sys.argv[5])
    worst = 0.0
    for i in range(n):
        old = show()["pid"]
        os.kill(old, signal.SIGKILL)
        t0 = time.monotonic()
        while True:
            v = show()
            if v["pid"] and v["pid"] != old and v["state"] == "running":
                break
            if time.monotonic() - t0 > 20:
                fail("restart %d: VSE not restarted (%s)" % (i + 1, v))
            time.sleep(0.05)
        _, took = select_isd(20)
        worst = max(worst, time.monotonic() - t0)
    print("vpcd_robust: %d restarts, the card back in pcscd's reader each time "
          "(slowest %.1f s)" % (n, worst))
else:
    fail("mode %r" % mode)
