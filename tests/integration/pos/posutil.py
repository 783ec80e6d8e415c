"""Helpers for the pos integration tests (seed 4): sample data, the server
process, JSON messages. Each test gets its own data directory and a free
port on 127.0.0.1; every process started here is stopped here. Its store is
a SQLite file in that directory, or on the PostgreSQL pass (issue 14,
tests/fixtures/with_pg_store.sh) a fresh database of its own."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "fixtures"))
import storeq  # noqa: E402

PAYGUARD = os.environ.get("PAYGUARD", "payguard")

CELLS = """radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal\r
LTE,262,1,1001,11001,101,13.4045,52.5205,500,40,1,1459692000,1700000000,-85\r
LTE,262,1,1001,11002,102,13.4100,52.5230,800,25,1,1459692000,1700000000,\r
LTE,262,1,1001,11003,,13.4050,52.5380,300,12,1,1459692000,1700000000,0
LTE,262,1,1001,11004,,13.4080,52.5390,300,9,1,1459692000,1700000000,0
LTE,262,1,1201,12001,,13.4050,52.9700,1000,30,1,1459692000,1700000000,0
GSM,262,1,1201,12002,,13.4200,52.9650,1200,30,1,1459692000,1700000000,0
LTE,260,2,5001,77001,,14.5528,53.4285,1000,50,1,1459692000,1700000000,0
LTE,262,1,,11009,,13.40,52.52,500,1,1,1459692000,1700000000,0
UMTS,262,1,1001,11010,,13.40,52.52,500,1,1,1459692000,1700000000
this is not a row
"""

MERCHANTS = """terminal_id,merchant_id,lat,lon,uncertainty_m,limit_m,mcc,name
T0000001,M00000000000001,52.5200,13.4050,50,1000,262,Cafe Mitte
T0000002,M00000000000002,52.5200,13.4050,50,1000,262,Taxi 17
T0000003,M00000000000003,52.5200,13.4050,50,1000,262,Food truck
T0000004,M00000000000004,52.5200,13.4050,50,1000,262,Market stall
T0000005,M00000000000005,52.5200,13.4050,50,1000,262,Courier
T0000006,M00000000000006,52.5200,13.4050,50,notanumber,262,Broken
"""


def cell(radio, mcc, mnc, area, cid, signal=None, ta=None):
    c = {"radio": radio, "mcc": mcc, "mnc": mnc, "area": area, "cid": cid}
    if signal is not None:
        c["signal"] = signal
    if ta is not None:
        c["ta"] = ta
    return c


# (terminal, scenario, serving, neighbours)
SCENARIOS = {
    "stay": ("T0000001", cell("LTE", 262, 1, 1001, 11001, -70), [cell("LTE", 262, 1, 1001, 11002, -90)]),
    "move2km": ("T0000002", cell("LTE", 262, 1, 1001, 11003, -75), [cell("LTE", 262, 1, 1001, 11004, -80)]),
    "move50km": ("T0000003", cell("LTE", 262, 1, 1201, 12001, -80), [cell("GSM", 262, 1, 1201, 12002, -95)]),
    "unknown": ("T0000004", cell("LTE", 262, 1, 1001, 99999, -80), []),
    "foreign": ("T0000005", cell("LTE", 260, 2, 5001, 77001, -70), []),
}


def message(tid, serving, neigh, stan, mti="0200"):
    mid = "M0000000000000" + tid[-1]
    m = {"0": mti, "2": "4761739001010119", "3": "000000", "4": "000000001250",
         "7": "1125120000", "11": "%06d" % stan, "22": "071", "41": tid, "42": mid,
         "49": "978"}
    if serving is not None:
        m["cell"] = {"serving": serving, "neighbours": neigh}
    return m


def scenario_message(name, stan):
    tid, s, n = SCENARIOS[name]
    return message(tid, s, n, stan)


def check(cond, what):
    if not cond:
        print("FAIL:", what, flush=True)
        sys.exit(1)
    print("ok:", what, flush=True)


def run(*args, check_rc=True, input=None):
    p = subprocess.run([PAYGUARD, "pos", *args], capture_output=True, text=True, input=input,
                       timeout=120)
    if check_rc and p.returncode != 0:
        print("command failed:", args, p.returncode, p.stdout, p.stderr, flush=True)
        sys.exit(1)
    return p


class Env:
    def __init__(self, name):
        base = os.environ.get("PG_BUILD_DIR", tempfile.gettempdir())
        self.dir = tempfile.mkdtemp(prefix="pos-%s-" % name, dir=base)
        self.db = storeq.fresh_store(name, os.path.join(self.dir, "payguard.db"))
        self.server = None
        self.log = None

    def rows(self, sql):
        """Rows of sql on this test's store (either engine), typed."""
        return storeq.rows(self.db, sql)

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    def import_sample(self):
        c = json.loads(run("cells", "import", self.write("cells.csv", CELLS), "--db", self.db, "--json").stdout)
        m = json.loads(run("merchants", "import", self.write("merchants.csv", MERCHANTS), "--db", self.db,
                           "--json").stdout)
        return c, m

    def start(self, *extra):
        portfile = self.path("port")
        if os.path.exists(portfile):
            os.unlink(portfile)
        self.log = open(self.path("server.log"), "a")
        self.server = subprocess.Popen([PAYGUARD, "--log-level", "info", "pos", "serve", "--port", "0",
                                        "--port-file", portfile, "--db", self.db, *extra],
                                       stdout=self.log, stderr=self.log)
        for _ in range(200):
            if os.path.exists(portfile):
                self.port = int(open(portfile).read())
                return self.port
            if self.server.poll() is not None:
                break
            time.sleep(0.05)
        print(open(self.path("server.log")).read())
        raise SystemExit("server did not start")

    def stop(self, sig=signal.SIGTERM):
        if self.server and self.server.poll() is None:
            self.server.send_signal(sig)
            try:
                self.server.wait(20)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        self.server = None
        if self.log:
            self.log.close()
            self.log = None

    def server_log(self):
        return open(self.path("server.log")).read()

    def send(self, msgs, *extra):
        text = "".join(json.dumps(m) + "\n" for m in msgs)
        p = run("send", "--port", str(self.port), *extra, "-", input=text)
        return [json.loads(l) for l in p.stdout.splitlines()]

    def cleanup(self):
        self.stop()
        if os.environ.get("PG_KEEP") is None:
            shutil.rmtree(self.dir, ignore_errors=True)
