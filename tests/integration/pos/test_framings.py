"""The server in other dialects and framings (seed 4 codec): ascii dialect with
a BCD length and a TPDU (the answer's TPDU swaps destination and source), and
4 ASCII digits of length; each answer is checked byte for byte at the frame."""
import json
import socket

from posutil import Env, check, run, scenario_message

env = Env("framings")
try:
    env.import_sample()
    for framing, dialect in (("bcd2+tpdu", "ascii"), ("ascii4", "ascii"), ("bin2+tpdu", "binary")):
        env.start("--framing", framing, "--dialect", dialect)
        bare = bytes.fromhex(run("encode", "--dialect", dialect, "--framing", "none", "-",
                                 input=json.dumps(scenario_message("stay", 7))).stdout.strip())
        tpdu = bytes.fromhex("6000010002") if "tpdu" in framing else b""
        n = len(tpdu) + len(bare)
        prefix = {"bcd2": bytes.fromhex("%04d" % n), "ascii4": b"%04d" % n,
                  "bin2": n.to_bytes(2, "big")}[framing.split("+")[0]]
        s = socket.create_connection(("127.0.0.1", env.port), timeout=10)
        s.sendall(prefix + tpdu + bare)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            pl = len(prefix)
            if len(data) >= pl:
                if framing.startswith("ascii4"):
                    want = int(data[:4])
                elif framing.startswith("bcd2"):
                    want = int(data[:2].hex())
                else:
                    want = int.from_bytes(data[:2], "big")
                if len(data) >= pl + want:
                    break
        s.close()
        check(len(data) == len(prefix) + want, "%s: one whole frame back (%d bytes)" % (framing, len(data)))
        if tpdu:
            check(data[len(prefix):len(prefix) + 5] == bytes.fromhex("6000020001"),
                  "%s: TPDU destination and source swapped" % framing)
        body = data[len(prefix) + len(tpdu):]
        r = json.loads(run("decode", "--dialect", dialect, "--json", body.hex()).stdout)
        check(r["0"] == "0210" and r["39"] == "00" and r["44"] == "IN_PLACE" and r["11"] == "000007",
              "%s/%s: 0210 in place" % (framing, dialect))
        env.stop()
    print("PASS")
finally:
    env.cleanup()
