"""Cells and merchants imported once reach every node (issue 14): two
`payguard pos serve` processes on one PostgreSQL store (the CTest fixture's
server, a database of its own) are running when a new cell ~500 km from
Berlin and a new terminal are imported through the CLI on the side. Within a
few seconds both servers decide with them, each on its own (the import's
NOTIFY on payguard_pos_ref; each server reloads on a connection of its own,
its event loop never waits): a Berlin terminal reported at the new cell is
MOVED with an alert on either server (before the import the cell was unknown:
UNDETERMINED), and the new terminal is registered (before: 03). Traffic keeps
flowing during the reload: every answered transaction is stored once.
Then acknowledgements: an alert acknowledged through the CLI is seen by the
other server's next decision for that terminal at once (it adds to the
acknowledged alert; no new open one), since no process keeps alerts."""
import json
import os
import subprocess
import threading
import time
import urllib.parse

from posutil import Env, check, run, message, cell

state = os.path.join(os.environ["PG_BUILD_DIR"], "postgres-fixture", "postgres.url")
base_url = open(state).read().strip()
q = urllib.parse.parse_qs(urllib.parse.urlparse(base_url).query)
host, user = q["host"][0], q["user"][0]


def psql(db, sql):
    p = subprocess.run(["psql", "-X", "-A", "-t", "-F", "|", "-h", host, "-U", user, "-d", db, "-c", sql],
                       capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, "psql %s: %s" % (sql, p.stderr.strip()))
    return [l.split("|") for l in p.stdout.splitlines() if l]


DB = "pos_reload"
psql("payguard", "DROP DATABASE IF EXISTS %s" % DB)
psql("payguard", "CREATE DATABASE %s" % DB)
pg_url = "postgresql:///%s?host=%s&user=%s" % (DB, host, user)

# Munich, about 500 km from the Berlin merchants of the sample
NEW_CELLS = ("radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal\n"
             "LTE,262,1,1001,13001,,11.5820,48.1351,500,40,1,1459692000,1700000000,-80\n"
             "LTE,262,1,1001,13002,,11.5900,48.1400,500,40,1,1459692000,1700000000,-80\n")
NEW_MERCHANTS = ("terminal_id,merchant_id,lat,lon,uncertainty_m,limit_m,mcc,name\n"
                 "T0000007,M00000000000007,52.5200,13.4050,50,1000,262,New kiosk\n")


def at_new_cell(tid, stan):
    return message(tid, cell("LTE", 262, 1, 1001, 13001, -70), [cell("LTE", 262, 1, 1001, 13002, -85)], stan)


def answer(env, m):
    r = env.send([m])[0]
    return r["39"], r.get("44", "")


a, b = Env("reload-a"), Env("reload-b")
a.db = b.db = pg_url
stop = threading.Event()
load_answered = []
try:
    c, m = a.import_sample()
    check(c["imported"] == 7 and m["imported"] == 5, "sample imported once")
    a.start("--alert-n", "1", "--window-s", "3600")
    b.start("--alert-n", "1", "--window-s", "3600")
    stan = 1000
    for env, tid in ((a, "T0000001"), (b, "T0000002")):
        stan += 1
        rc, text = answer(env, at_new_cell(tid, stan))
        check("UNDETERMINED" in text, "before the import the new cell is unknown on %s: %s %s"
              % (env.dir, rc, text))
        stan += 1
        rc, text = answer(env, message("T0000007", None, [], stan))
        check(rc == "03", "before the import T0000007 is unregistered: %s %s" % (rc, text))

    # traffic on both servers while the import lands and they reload
    tpl = a.write("tpl.jsonl", json.dumps(message("T0000003", cell("LTE", 262, 1, 1001, 11001, -70), [], 1)) + "\n")
    before = int(psql(DB, "SELECT count(*) FROM pos_txn")[0][0])
    # one terminal on two servers: distinct STANs, as one device numbers them (the
    # same terminal, STAN and field 7 in the same ms is one transaction, pos_txn_once)
    loads = [subprocess.Popen([os.environ["PAYGUARD"], "pos", "load", "--port", str(e.port), "--conns", "4",
                               "--duration-ms", "4000", "--stan-base", base, "--json", tpl], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for e, base in ((a, "0"), (b, "500000"))]
    time.sleep(0.5)
    t0 = time.monotonic()
    run("cells", "import", a.write("new-cells.csv", NEW_CELLS), "--db", pg_url)
    run("merchants", "import", a.write("new-merchants.csv", NEW_MERCHANTS), "--db", pg_url)
    seen = {}
    while len(seen) < 2 and time.monotonic() - t0 < 10:
        for env, tid in ((a, "T0000001"), (b, "T0000002")):
            if env in seen:
                continue
            stan += 1
            rc, text = answer(env, at_new_cell(tid, stan))
            if text == "MOVED ALERT":
                seen[env] = time.monotonic() - t0
        time.sleep(0.05)
    check(len(seen) == 2, "both servers decide with the new cell (seen after %s s)"
          % sorted(round(v, 2) for v in seen.values()))
    check(max(seen.values()) < 3.0, "within 3 s of the import: %.2f s" % max(seen.values()))
    for env in (a, b):
        stan += 1
        rc, text = answer(env, message("T0000007", cell("LTE", 262, 1, 1001, 11001, -70), [], stan))
        check(rc == "00" and "IN_PLACE" in text, "the new terminal is registered: %s %s" % (rc, text))
    outs = [l.communicate(timeout=120) for l in loads]
    for l, (out, err) in zip(loads, outs):
        check(l.returncode == 0 and json.loads(out)["errors"] == 0, "load during the reload: %s %s" % (out, err))
    answered = sum(json.loads(out)["answered"] for out, _ in outs)
    check(answered > 100, "traffic flowed during the reload (%d answered)" % answered)

    # acknowledgements are seen by the other node at once
    alerts = json.loads(run("alerts", "--db", pg_url, "--json").stdout)
    al = [x for x in alerts if x["terminal"] == "T0000001" and x["state"] == "open"]
    check(len(al) == 1, "one open alert for T0000001 (opened through server a): %s" % alerts)
    aid = al[0]["id"]
    run("ack", str(aid), "--db", pg_url, "--note", "checked by phone")
    stan += 1
    rc, text = answer(b, at_new_cell("T0000001", stan))
    check("MOVED" in text, "server b decides the next move of T0000001: %s" % text)
    rows = psql(DB, "SELECT id, state, note, strikes FROM pos_alerts WHERE tid = 'T0000001' ORDER BY id")
    check(len(rows) == 1 and rows[0][1] == "acknowledged" and rows[0][2] == "checked by phone",
          "b's decision joined the acknowledged alert, no new open one: %s" % rows)
    linked = psql(DB, "SELECT count(*) FROM pos_txn WHERE tid = 'T0000001' AND stan = '%06d' AND alert_id = %s"
                  % (stan, aid))
    check(linked == [["1"]], "b's transaction is linked to the acknowledged alert: %s" % linked)
    a.stop()
    b.stop()
    after = int(psql(DB, "SELECT count(*) FROM pos_txn")[0][0])
    check(after - before >= answered, "every answered load transaction stored (%d rows for %d)"
          % (after - before, answered))
    for env in (a, b):
        check("cells and merchants reloaded" in env.server_log(), "the server says it reloaded")
    print("pos reload on every node: ok")
finally:
    a.cleanup()
    b.cleanup()
    psql("payguard", "DROP DATABASE IF EXISTS %s" % DB)
