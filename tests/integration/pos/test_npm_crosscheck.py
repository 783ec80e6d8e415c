"""Cross-check with a real peer (seed 4 codec): the npm package iso_8583,
run with /usr/bin/node, decodes messages payguard encoded, and payguard
decodes messages the package encoded, with identical field values. Two
layouts: payguard's "ascii" dialect (hex bitmap) and the package's default
(ASCII fields, binary bitmap, its own field table), payguard's shipped dialect
"npm-iso8583". A message over the fields where the package's table differs
from ISO 8583:1987 (28, 37, 38, 40, 49, 51, 53, 58, 62, 64) checks that table;
the old description of the layout ("base ascii" + "bitmap binary") must fail it.
The package is installed from tests/integration/pos/npm/package-lock.json."""
import json
import os
import shutil
import subprocess

from posutil import Env, check, run

HERE = os.path.dirname(os.path.abspath(__file__))
NODE = "/usr/bin/node"

env = Env("npm")
try:
    check(os.path.exists(NODE), "Node.js at /usr/bin/node")
    npmdir = os.path.join(os.environ.get("PG_BUILD_DIR", env.dir), "pos-npm")
    os.makedirs(npmdir, exist_ok=True)
    for f in ("package.json", "package-lock.json"):
        shutil.copy(os.path.join(HERE, "npm", f), npmdir)
    if not os.path.exists(os.path.join(npmdir, "node_modules", "iso_8583", "package.json")):
        p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=npmdir, capture_output=True,
                           text=True, timeout=300)
        check(p.returncode == 0, "npm ci installed iso_8583 (%s)" % p.stderr[-300:])
    ver = json.load(open(os.path.join(npmdir, "node_modules", "iso_8583", "package.json")))["version"]
    check(ver == "2.6.7", "peer is iso_8583 %s" % ver)
    olddef = env.write("old.def", "# what docs/pos.md used to say\ndialect old\nbase ascii\nbitmap binary\n")

    msgs = [
        {"0": "0200", "2": "4761739001010119", "3": "000000", "4": "000000005000", "7": "0911131411",
         "11": "000001", "12": "131411", "13": "0911", "14": "2212", "18": "4111", "22": "051",
         "25": "00", "32": "423935", "35": "4761739001010119D22122011758928889", "37": "000000000001",
         "41": "12345678", "42": "MOTITILL_000001", "43": "My Termianl Business                    ",
         "49": "404", "52": "7434F67813BAE545", "102": "ACCOUNT-1"},
        {"0": "0210", "3": "000000", "4": "000000001250", "11": "000042", "38": "A1B2C3", "39": "00",
         "41": "T0000001", "42": "M00000000000001", "44": "IN_PLACE", "48": "private data, with commas",
         "54": "1002360C0102240000000", "70": "301", "100": "12345678901"},
        {"0": "0800", "7": "1125120000", "11": "999999", "70": "001", "104": "network sign-on",
         "123": "91010151134C101"},
        {"0": "0100", "2": "5413330", "3": "310000", "4": "000000000000", "11": "000002", "22": "071",
         "41": "TERM  02", "42": "SHOP 17        ", "103": "ACC/2 *7"},
    ]
    # the fields where the package's table is its own
    table = {"0": "0200", "3": "000000", "4": "000000001250", "11": "000043", "28": "C00000150",
             "37": "12345678901*", "38": "A1#B2 ", "40": "101", "41": "T0000001", "49": "978", "51": "840",
             "53": "".join("%02X" % (i * 5 + 1) for i in range(48)), "58": "12345", "62": "cell text, 62",
             "64": "0A0B0C0D"}
    hexf = ("52", "53", "64")
    # (the peer's "ans" check refuses "#" and "@"; payguard takes any printable ASCII)
    for mode, dialect in (("ascii", "ascii"), ("npm", "npm-iso8583")):
        if mode == "npm":
            msgs = msgs + [table]
        # payguard encodes, the peer decodes
        frames = [run("encode", "--dialect", dialect, "--framing", "bin2", "-", input=json.dumps(m)).stdout.strip()
                  for m in msgs]
        p = subprocess.run([NODE, os.path.join(HERE, "npm_peer.js"), "decode", mode], input=json.dumps(frames),
                           capture_output=True, text=True, cwd=npmdir,
                           env=dict(os.environ, NODE_PATH=os.path.join(npmdir, "node_modules")))
        check(p.returncode == 0, "%s: peer decoded payguard's frames (%s)" % (mode, p.stderr[-300:]))
        peer = json.loads(p.stdout)
        for m, got in zip(msgs, peer):
            want = dict(m)
            got = {k: (v.upper() if k in hexf else v) for k, v in got.items()}
            check(got == want, "%s: peer reads payguard's %s with identical fields" % (mode, m["0"]))
        # the peer encodes, payguard decodes
        lower = [{k: (v.lower() if k in hexf else v) for k, v in m.items()} for m in msgs]
        p = subprocess.run([NODE, os.path.join(HERE, "npm_peer.js"), "encode", mode], input=json.dumps(lower),
                           capture_output=True, text=True, cwd=npmdir,
                           env=dict(os.environ, NODE_PATH=os.path.join(npmdir, "node_modules")))
        check(p.returncode == 0, "%s: peer encoded (%s)" % (mode, p.stderr[-300:]))
        for m, h in zip(msgs, json.loads(p.stdout)):
            got = json.loads(run("decode", "--dialect", dialect, "--framing", "bin2", "--json", h).stdout)
            check(got == m, "%s: payguard reads the peer's %s with identical fields" % (mode, m["0"]))
        if mode == "npm":
            # the peer's frame of the table message, read with the old description: refused
            p = run("decode", "--dialect", olddef, "--framing", "bin2", "--json", json.loads(p.stdout)[-1],
                    check_rc=False)
            check(p.returncode != 0, "the old npm description cannot read the package's table: " +
                  p.stderr.strip()[-120:])
    # and a field the peer cannot hold is refused by payguard with the field named
    p = run("encode", "--dialect", "ascii", "-", input=json.dumps({"0": "0200", "4": "0000000012AB"}), check_rc=False)
    check(p.returncode == 3 and "field 4" in p.stderr, "payguard names the bad field: " + p.stderr.strip())
    print("PASS")
finally:
    env.cleanup()
