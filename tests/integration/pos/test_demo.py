"""`payguard pos demo` (called by the main demo): runs in well under 20 s and
shows each scenario's decision and the three stored alerts."""
import os
import subprocess
import tempfile
import time

from posutil import check, PAYGUARD

with tempfile.TemporaryDirectory() as d:
    t0 = time.time()
    p = subprocess.run([PAYGUARD, "pos", "demo", "--keep"], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PAYGUARD_DATA_DIR=d))
    took = time.time() - t0
    print(p.stdout, p.stderr)
    check(p.returncode == 0, "demo exits 0")
    check(took < 20, "demo took %.1f s" % took)
    out = p.stdout
    for needle in ("0800 -> 0810, response code 00", "T0000001  stays at the merchant  0200 0210 00  IN_PLACE",
                   "0200 0210 59  MOVED ALERT", "UNDETERMINED", "#1 T0000002 open reason=distance transactions=2",
                   "#2 T0000003 open reason=distance", "#3 T0000005 open reason=country"):
        check(needle in out, "demo shows: %s" % needle)
    check(os.path.exists(os.path.join(d, "pos-demo.db")), "--keep leaves the store in the data directory")
    print("PASS")
