"""Bad input (seed 4 server): truncated frames, lengths that lie, bitmaps
naming absent fields, non-digits in numeric fields, a 10 MB length prefix and
a client sending one byte a second are each answered with a format error or
cut with a log line, while another client keeps getting answers."""
import json
import socket
import struct
import threading
import time

from posutil import Env, check, run, scenario_message

env = Env("badinput")


def encode(m, framing="bin4"):
    return bytes.fromhex(run("encode", "--framing", framing, "-", input=json.dumps(m)).stdout.strip())


def connect():
    s = socket.create_connection(("127.0.0.1", env.port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_frame(s):
    hdr = b""
    while len(hdr) < 4:
        chunk = s.recv(4 - len(hdr))
        if not chunk:
            return None
        hdr += chunk
    n = struct.unpack(">I", hdr)[0]
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            return None
        body += chunk
    return body


def decode(body):
    p = run("decode", "--json", body.hex())
    return json.loads(p.stdout)


def closed_by_server(s, timeout=10):
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, socket.timeout):
        return False


def frame(body):
    return struct.pack(">I", len(body)) + body


try:
    env.import_sample()
    env.start("--framing", "bin4", "--frame-ms", "2000", "--idle-ms", "30000")
    good = encode(scenario_message("stay", 1))
    a = connect()
    answers = 0

    def exchange(stan):
        global answers
        a.sendall(encode(scenario_message("stay", stan)))
        r = decode(read_frame(a))
        check(r["0"] == "0210" and r["39"] == "00" and r["11"] == "%06d" % stan, "good client answered (stan %d)" % stan)
        answers += 1

    exchange(1)

    # slow sender in the background: one byte a second
    slow_result = {}

    def slow():
        s = connect()
        t0 = time.time()
        try:
            for b in good:
                s.sendall(bytes([b]))
                time.sleep(1.0)
        except OSError:
            pass
        slow_result["cut_after"] = time.time() - t0
        slow_result["closed"] = closed_by_server(s, 5)
        s.close()

    th = threading.Thread(target=slow)
    th.start()

    # 1. truncated frame: half a message, then the client goes away
    s = connect()
    s.sendall(good[: len(good) // 2])
    time.sleep(0.2)
    s.close()
    exchange(2)

    body = good[4:]  # MTI 2 bytes BCD, bitmap 8 bytes, fields...
    # 2. a length that lies: field 2 says 19 digits, 3 bytes follow
    lie = bytes.fromhex("0200") + bytes.fromhex("4000000000000000") + bytes.fromhex("19") + b"\x47\x61\x73"
    s = connect()
    s.sendall(frame(lie))
    r = decode(read_frame(s))
    check(r["0"] == "0210" and r["39"] == "30" and r["44"] == "FORMAT_ERROR", "lying length -> 0210 format error")
    # 3. bitmap naming fields that are absent (3, 4, 41 named, only 3 present)
    absent = bytes.fromhex("0200") + bytes.fromhex("3000000000800000") + bytes.fromhex("000000")
    s.sendall(frame(absent))
    r = decode(read_frame(s))
    check(r["39"] == "30", "bitmap naming absent fields -> format error")
    # 4. non-digit in a numeric field (BCD nibble A in field 3)
    nondigit = bytes.fromhex("0200") + bytes.fromhex("2000000000000000") + bytes.fromhex("00A000")
    s.sendall(frame(nondigit))
    r = decode(read_frame(s))
    check(r["39"] == "30", "non-digit in numeric field -> format error")
    # the same connection still works after format errors
    s.sendall(good)
    r = decode(read_frame(s))
    check(r["39"] == "00", "connection keeps serving after format errors")
    s.close()
    exchange(3)

    # 5. a 10 MB length prefix: cut at once
    s = connect()
    s.sendall(struct.pack(">I", 10 * 1024 * 1024) + b"\x02\x00")
    check(closed_by_server(s), "10 MB length prefix: connection cut")
    s.close()
    # 6. an unreadable MTI: cut
    s = connect()
    s.sendall(frame(b"\xff\xff" + b"\x00" * 8))
    check(closed_by_server(s), "unreadable MTI: connection cut")
    s.close()
    exchange(4)

    # the slow client is cut within the frame deadline while others are served
    # (at least one exchange here: on a loaded machine steps 1-6 can outlast
    # the slow client, which made the count below depend on timing)
    while True:
        exchange(5 + answers)
        if not th.is_alive():
            break
        time.sleep(0.3)
    th.join()
    check(slow_result.get("closed") or slow_result.get("cut_after", 99) < 10,
          "one byte a second: cut after %.1f s" % slow_result.get("cut_after", -1))
    exchange(90)
    a.close()
    env.stop()
    log = env.server_log()
    for needle in ("partial frame", "field 2: value truncated", "field 4: value truncated",
                   "field 3: nibble 0xA", "announced length 10485760 exceeds", "unreadable MTI",
                   "frame not completed in time"):
        check(needle in log, "log line: %s" % needle)
    check(answers >= 6, "good client got %d answers throughout" % answers)
    print("PASS")
finally:
    env.cleanup()
