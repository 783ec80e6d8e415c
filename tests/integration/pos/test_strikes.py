"""Alerts do not depend on which node answered (issue 14, cluster mode): the
alert decision is taken from the store when a batch is written (every
node's moved transactions are there), not from one process's memory.

With --alert-n 3, one terminal whose moved transactions alternate between
two `payguard pos serve` on one PostgreSQL store (the CTest fixture's
server, a database of its own) gets its alert at the 3rd moved transaction
overall, exactly one open alert, and every later moved one strikes it, as a
single server would. Each server alone has seen only 1 or 2 of them: before
the store-side count the alert came at the 5th. Then four terminals each
get three moved transactions at each server at the same time: one open
alert with 4 strikes each (2 when counted per node). The field 44 text of an
answer still comes from the answering server's own window (docs/pos.md),
so it is not checked here beyond MOVED. On SQLite a single server opens it
at the 3rd too (the behaviour one node always had)."""
import json
import os
import subprocess
import urllib.parse

from posutil import PAYGUARD, Env, check, message, cell

state = os.path.join(os.environ["PG_BUILD_DIR"], "postgres-fixture", "postgres.url")
base_url = open(state).read().strip()
q = urllib.parse.parse_qs(urllib.parse.urlparse(base_url).query)
host, user = q["host"][0], q["user"][0]
DB = "pos_strikes"
TID = "T0000003"


def psql(db, sql):
    p = subprocess.run(["psql", "-X", "-A", "-t", "-F", "|", "-h", host, "-U", user, "-d", db, "-c", sql],
                       capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, "psql %s: %s" % (sql, p.stderr.strip()))
    return [l.split("|") for l in p.stdout.splitlines() if l]


def moved(stan, tid=TID):
    # 50 km north of the merchant: moved by distance (one strike each)
    return message(tid, cell("LTE", 262, 1, 1201, 12001, -80), [cell("GSM", 262, 1, 1201, 12002, -95)], stan)


def alerts(query, tid=TID):
    """[(state, strikes)] of the terminal's alerts, by id."""
    return [tuple(r) for r in query("SELECT state, strikes FROM pos_alerts WHERE tid = '%s' ORDER BY id" % tid)]


def burst(servers, tid, query):
    """Three moved transactions of one terminal sent to each server at the
    same time (one `pos send` process per server). Whatever the order the
    batches commit in, the six add up as on one server: the alert opens
    with the 3rd and takes the 4th to 6th, one open alert with 4 strikes.
    Each server alone saw 3: counted per node that was 1 + 1 = 2 strikes.
    Two batches that overlap in time are ordered by the terminal's advisory
    lock; nothing here forces them to overlap (group commits are short), so
    this checks the sum, not the lock."""
    procs = []
    for k, env in enumerate(servers):
        text = "".join(json.dumps(moved(300 + 3 * k + j, tid)) + "\n" for j in range(3))
        p = subprocess.Popen([PAYGUARD, "pos", "send", "--port", str(env.port), "-"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append((p, text))
    for p, text in procs:
        out, err = p.communicate(text, timeout=60)
        check(p.returncode == 0, "pos send: %s" % err.strip())
        rs = [json.loads(l) for l in out.splitlines()]
        check(len(rs) == 3 and all(r["39"] == "00" and r.get("44", "").startswith("MOVED") for r in rs),
              "burst %s: answers %s" % (tid, rs))
    got = alerts(query, tid)
    check(got == [("open", "4")], "burst %s: one open alert with 4 strikes: %s" % (tid, got))
    linked = query("SELECT count(*) FROM pos_txn WHERE tid = '%s' AND alert_id IS NOT NULL" % tid)
    check(linked == [["6"]], "burst %s: all six moved transactions linked: %s" % (tid, linked))


def sqlite_query(env):
    def query(sql):
        p = subprocess.run(["sqlite3", "-separator", "|", env.db, sql], capture_output=True, text=True, timeout=60)
        check(p.returncode == 0, "sqlite3 %s: %s" % (sql, p.stderr.strip()))
        return [l.split("|") for l in p.stdout.splitlines() if l]
    return query


def walk(servers, query, what):
    """Five moved transactions, the i-th through servers[i % len]; the
    alert must open with the 3rd and take the 4th and 5th."""
    for i in range(5):
        env = servers[i % len(servers)]
        r = env.send([moved(100 + i)])[0]
        check(r["39"] == "00" and r.get("44", "").startswith("MOVED"),
              "%s: moved transaction %d answered by %s: %s %s" % (what, i + 1, env.dir, r["39"], r.get("44")))
        got = alerts(query)
        if i < 2:
            check(got == [], "%s: no alert after %d moved transactions: %s" % (what, i + 1, got))
        else:
            check(got == [("open", str(i - 1))],
                  "%s: one open alert after %d moved transactions, %d strikes: %s" % (what, i + 1, i - 1, got))


a, b, solo = Env("strikes-a"), Env("strikes-b"), Env("strikes-solo")
try:
    psql("payguard", "DROP DATABASE IF EXISTS %s" % DB)
    psql("payguard", "CREATE DATABASE %s" % DB)
    pg_url = "postgresql:///%s?host=%s&user=%s" % (DB, host, user)
    a.db = b.db = pg_url
    a.import_sample()
    a.start("--alert-n", "3", "--window-s", "3600")
    b.start("--alert-n", "3", "--window-s", "3600")
    walk([a, b], lambda sql: psql(DB, sql), "two servers on PostgreSQL")
    linked = psql(DB, "SELECT count(*) FROM pos_txn WHERE tid = '%s' AND alert_id IS NOT NULL" % TID)
    check(linked == [["5"]], "every moved transaction of the window is the alert's evidence: %s" % linked)
    # the same terminal's strikes at both nodes at once, for four terminals
    for tid in ("T0000001", "T0000002", "T0000004", "T0000005"):
        burst([a, b], tid, lambda sql: psql(DB, sql))
    a.stop()
    b.stop()

    solo.import_sample()
    solo.start("--alert-n", "3", "--window-s", "3600")
    walk([solo], sqlite_query(solo), "one server on SQLite")
    solo.stop()
    print("pos strikes counted in the store: ok")
finally:
    a.cleanup()
    b.cleanup()
    solo.cleanup()
    psql("payguard", "DROP DATABASE IF EXISTS %s" % DB)
