"""pos_txn partitioned by day on PostgreSQL (issue 14): the server creates
today's and the next two days' partitions at start, moving rows that had
landed in the default partition into their day; `payguard pos retention
--keep-days N` drops whole day partitions older than N days (and deletes
stray old rows of the default partition); on SQLite it deletes the rows.
Runs on the PostgreSQL of the CTest fixture, in a database of its own."""
import json
import os
import sqlite3
import subprocess
import time
import urllib.parse

from posutil import Env, check, run, scenario_message

DAY = 86400000
state = os.path.join(os.environ["PG_BUILD_DIR"], "postgres-fixture", "postgres.url")
base_url = open(state).read().strip()
q = urllib.parse.parse_qs(urllib.parse.urlparse(base_url).query)
host, user = q["host"][0], q["user"][0]


def psql(db, sql):
    p = subprocess.run(["psql", "-X", "-A", "-t", "-F", "|", "-h", host, "-U", user, "-d", db, "-c", sql],
                       capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, "psql %s: %s" % (sql, p.stderr.strip()))
    return [l.split("|") for l in p.stdout.splitlines() if l]


def part(day):
    return "pos_txn_" + time.strftime("%Y%m%d", time.gmtime(day * 86400))


def row(ts, stan):
    return ("INSERT INTO pos_txn(ts, tid, stan, f7, mti, decision, rc) VALUES (%d, 'T0000001', '%s', "
            "'1125120000', '0200', 'in_place', '00')" % (ts, stan))


psql("payguard", "DROP DATABASE IF EXISTS pos_parttest")
psql("payguard", "CREATE DATABASE pos_parttest")
DB = "pos_parttest"
pg = Env("partitions")
pg.db = "postgresql:///%s?host=%s&user=%s" % (DB, host, user)
lite = Env("partitions-lite")
try:
    pg.import_sample()
    kind = psql(DB, "SELECT relkind FROM pg_class WHERE relname = 'pos_txn'")
    check(kind == [["p"]], "pos_txn is a partitioned table on PostgreSQL (%s)" % kind)
    now = int(time.time() * 1000)
    today = now // DAY
    # a row that came while today had no partition sits in the default one
    psql(DB, row(now - 1000, "000001"))
    check(psql(DB, "SELECT count(*) FROM pos_txn_default") == [["1"]], "row of today in the default partition")

    pg.start()
    r = pg.send([scenario_message("stay", 2)])[0]
    check(r["39"] == "00", "a transaction is answered")
    pg.stop()
    parts = [p[0] for p in psql(DB, "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                                    " WHERE i.inhparent = 'pos_txn'::regclass ORDER BY 1")]
    check(all(part(d) in parts for d in (today, today + 1, today + 2)),
          "the server created today's and the next two days' partitions: %s" % parts)
    where = psql(DB, "SELECT tableoid::regclass, stan FROM pos_txn ORDER BY stan")
    check(where == [[part(today), "000001"], [part(today), "000002"]],
          "the default partition's row moved into its day, the new one landed there: %s" % where)

    # days a server created earlier, with their rows, and a stray old row in the default
    for d in (today - 10, today - 3):
        psql(DB, "CREATE TABLE %s PARTITION OF pos_txn FOR VALUES FROM (%d) TO (%d)" % (part(d), d * DAY,
                                                                                        (d + 1) * DAY))
        psql(DB, row(d * DAY + 5000, "1%05d" % (today - d)))
    psql(DB, row((today - 20) * DAY, "900000"))
    out = json.loads(run("retention", "--keep-days", "5", "--db", pg.db, "--json").stdout)
    check(out == {"dropped_partitions": 1, "deleted_rows": 1}, "retention dropped one day and one stray row: %s" % out)
    check(psql(DB, "SELECT to_regclass('%s') IS NULL, to_regclass('%s') IS NULL"
               % (part(today - 10), part(today - 3))) == [["t", "f"]],
          "the day 10 days back is dropped, 3 days back kept")
    check(psql(DB, "SELECT count(*) FROM pos_txn") == [["3"]], "three rows remain (today's two, 3 days back)")
    bad = run("retention", "--db", pg.db, check_rc=False)
    check(bad.returncode != 0 and "keep-days" in bad.stderr, "retention without --keep-days is refused")

    # SQLite: the same command deletes rows
    lite.import_sample()
    db = sqlite3.connect(lite.db)
    db.execute(row(now - 10 * DAY, "000010"))
    db.execute(row(now, "000011"))
    db.commit()
    db.close()
    out = json.loads(run("retention", "--keep-days", "5", "--db", lite.db, "--json").stdout)
    check(out == {"dropped_partitions": 0, "deleted_rows": 1}, "SQLite retention deletes the old row: %s" % out)
finally:
    pg.cleanup()
    lite.cleanup()
    psql("payguard", "DROP DATABASE IF EXISTS pos_parttest")
