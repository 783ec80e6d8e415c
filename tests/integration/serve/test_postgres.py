"""`payguard serve --store URL` on PostgreSQL (issue 14, build item 2): the
daemon, its API and its workers on the PostgreSQL server of the CTest fixture
(tests/fixtures/postgres.sh), in a database made for this test. Through the
HTTP API: POS demo traffic is decided and listed, the demo images are scanned
and an upgrade job runs to "done", the load service stores estimates; psql
(the server's own client) sees the same rows in PostgreSQL, with 64-bit
times. The URL carries a password (the fixture trusts local connections, so
it is never asked for): it must appear in no log line and on no worker's
command line. Then the `store` key of the configuration file instead of
--store, and no SQLite file holding the serve, POS or image tables in the data
directory. (The VSE hypervisor still keeps its own registry in
DATA_DIR/payguard.db, and the SE OS worker does not run on PostgreSQL, until
src/se moves to the store API: see docs/serve.md.)"""
import os
import sqlite3
import subprocess
import sys
import urllib.parse

from serveutil import Daemon

SECRET = "pw-never-logged-7f3a"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


state = os.path.join(os.environ["PG_BUILD_DIR"], "postgres-fixture", "postgres.url")
base_url = open(state).read().strip()
q = urllib.parse.parse_qs(urllib.parse.urlparse(base_url).query)
host, user = q["host"][0], q["user"][0]


def psql(db, sql):
    p = subprocess.run(["psql", "-X", "-A", "-t", "-F", "|", "-h", host, "-U", user, "-d", db, "-c", sql],
                       capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, "psql %s: %s" % (sql, p.stderr))
    return [l.split("|") for l in p.stdout.splitlines() if l]


def fresh_db(name):
    psql("payguard", "DROP DATABASE IF EXISTS %s" % name)
    psql("payguard", "CREATE DATABASE %s" % name)
    return "postgresql://%s:%s@/%s?host=%s" % (user, SECRET, name, urllib.parse.quote(host, safe=""))


def serve_tables_in_sqlite(d):
    """The serve/POS/image tables found in any SQLite file of the data directory."""
    found = []
    for root, _, files in os.walk(d.dir):
        for f in files:
            if not f.endswith(".db"):
                continue
            path = os.path.join(root, f)
            if os.path.relpath(path, d.dir).startswith("image-demo"):
                continue  # the image demo's own scratch store, not the daemon's
            con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
            names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            con.close()
            found += ["%s:%s" % (f, n) for n in names if n.startswith(("serve_", "pos_", "image"))]
    return found


def job_of(d, job):
    s, jobs = d.get("/api/images/jobs")
    check(s == 200, jobs)
    return next((j for j in jobs if j["id"] == job), None)


def part_flag():
    url = fresh_db("serve_pgtest")
    d = Daemon("--store", url, period_ms=300)
    try:
        # POS: the demo terminals' traffic decided and listed
        # (the demo's moving terminals leave their place some transactions in:
        # wait for that, not only for a count that may come first)
        terms = d.wait("POS traffic with a moved terminal", lambda: (lambda v: v if sum(
            t["transactions"] for t in v) >= 20 and any(t["moved"] > 0 for t in v) else None)(
            d.get("/api/pos/terminals")[1]), 90)
        check(len(terms) == 8 and any(t["moved"] > 0 for t in terms), terms)
        # load: an estimate of the generated fleet
        s, v = d.wait("a load estimate", lambda: (lambda r: r if r[0] == 200 else None)(d.get("/api/load/vms")), 60)
        check(len(v["vms"]) > 0 and v["at_ms"] > 1 << 32, v)
        s, h = d.get("/api/load/history?vm=%s" % v["vms"][0]["name"])
        check(s == 200 and len(h["history"]) >= 1, h)
        # image: the two demo disks scanned, then an upgrade job to done
        imgs = d.wait("the demo images", lambda: (lambda v: v if len(v) >= 2 else None)(d.get("/api/images")[1]), 120)
        img = next(i for i in imgs if i["path"].endswith("/image-demo/demo-disk.img"))
        s, pk = d.get("/api/images/%d/packages" % img["id"])
        check(s == 200 and any(p["name"] == "demo-tool" for p in pk), pk)
        s, v = d.request("POST", "/api/images/%d/upgrade" % img["id"], {"fix": True})
        check(s == 202 and v["state"] == "queued", v)
        job = v["job"]
        j = d.wait("the upgrade job to finish",
                   lambda: (lambda j: j if j and j["state"] not in ("queued", "running") else None)(job_of(d, job)), 120)
        check(j["state"] == "done" and j["progress"] == 1.0, j)
        d.wait("the done job in /metrics", lambda: (d.metric('payguard_image_upgrades{state="done"}') or 0) >= 1, 10)
        check((d.metric("payguard_pos_transactions_total") or 0) >= 20, "POS transactions in /metrics")
        s, v = d.get("/api/services")
        check(s == 200 and {"pos", "load", "image", "pos-traffic"} <= {w["name"] for w in v}, v)

        # the same data in PostgreSQL, as its own client reads it
        n = int(psql("serve_pgtest", "SELECT count(*) FROM pos_txn")[0][0])
        check(n >= 20, "POS transactions in PostgreSQL: %d" % n)
        check(int(psql("serve_pgtest", "SELECT count(*) FROM serve_load")[0][0]) >= 1, "load estimates stored")
        check(int(psql("serve_pgtest", "SELECT count(*) FROM image")[0][0]) >= 2, "images stored")
        check(psql("serve_pgtest", "SELECT state FROM image_job WHERE id = %d" % job) == [["done"]], "job row")
        check(psql("serve_pgtest", "SELECT count(*) FROM serve_upgrade WHERE job = %d" % job) == [["1"]],
              "the upgrade request row")
        check(psql("serve_pgtest", "SELECT version FROM pg_schema WHERE area = 'serve'") == [["3"]], "serve schema")
        types = dict(psql("serve_pgtest", "SELECT table_name || '.' || column_name, data_type FROM"
                                          " information_schema.columns WHERE table_name LIKE 'serve_%'"))
        check(types["serve_load.at_ms"] == "bigint" and types["serve_events.at_ms"] == "bigint"
              and types["serve_load.silhouette"] == "double precision" and types["serve_upgrade.job"] == "bigint",
              "64-bit times and ids, double reals: %s" % types)
        # the URL's password: not on any worker's command line, in no log line
        for w in v:
            if w["pid"] > 0:
                try:
                    with open("/proc/%d/cmdline" % w["pid"], "rb") as f:
                        check(SECRET.encode() not in f.read(), "password on %s's command line" % w["name"])
                except FileNotFoundError:
                    pass
        found = serve_tables_in_sqlite(d)
        check(found == [], "serve/POS/image tables in a SQLite file of the data directory: %s" % found)
        check(d.stop() == 0, "clean stop: " + d.log()[-2000:])
        ev = psql("serve_pgtest", "SELECT event FROM serve_events WHERE service = 'serve' ORDER BY id")
        check(ev[0] == ["start"] and ev[-1] == ["stop"], "start and stop events in PostgreSQL: %s" % ev)
        log = d.log()
        check(SECRET not in log, "the store password in the log")
        check("store postgresql://" in log and "serve_pgtest" in log, "the store named in the log: " + log[:2000])
    finally:
        d.stop()
        d.cleanup()


def part_config():
    """The configuration file's `store` key, and a bad store: a clear error."""
    fresh_db("serve_pgconf")
    # a libpq keyword string this time, its password masked in the start line
    kw = "host=%s dbname=serve_pgconf user=%s password=%s" % (host, user, SECRET)
    d = Daemon(demo=False, conf={"store": kw})
    try:
        d.wait("the API", lambda: d.get("/api/health")[0] == 200, 30)
        s, v = d.get("/api/pos/alerts")
        check(s == 200 and v == [], v)
        check(d.stop() == 0, d.log()[-2000:])
        ev = psql("serve_pgconf", "SELECT event FROM serve_events WHERE service = 'serve' ORDER BY id")
        check(ev and ev[0] == ["start"], ev)
        check(not os.path.exists(os.path.join(d.dir, "payguard.db")) or serve_tables_in_sqlite(d) == [],
              "the serve tables went to PostgreSQL")
        check(SECRET not in d.log() and "store host=%s dbname=serve_pgconf user=%s password=***)" % (host, user)
              in d.log(), "the store password in the log: " + d.log()[:1000])
    finally:
        d.stop()
        d.cleanup()
    bad = "postgresql://%s:%s@/no_such_db_here?host=%s" % (user, SECRET, urllib.parse.quote(host, safe=""))
    try:
        Daemon("--store", bad, demo=False)
        check(False, "the daemon started on a missing database")
    except AssertionError as e:
        msg = str(e)
        check("daemon exited early" in msg and "no_such_db_here" in msg, msg[-1500:])
        check(SECRET not in msg, "the password in the error: " + msg[-1500:])


part_flag()
part_config()
print("serve on PostgreSQL: ok")
