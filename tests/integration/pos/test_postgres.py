"""POS on the PostgreSQL engine (issue 14): the same import, traffic and
alert life cycle as test_e2e.py, once on a SQLite file and once on the
PostgreSQL server of the CTest fixture (tests/fixtures/postgres.sh), each in
a database of its own. Decisions, response codes, stored transactions and
alerts must be the same on both engines; the PostgreSQL rows are read back
with psql, the server's own client."""
import json
import os
import socket
import subprocess
import sys
import urllib.parse

from posutil import Env, check, run, scenario_message, message

state = os.path.join(os.environ["PG_BUILD_DIR"], "postgres-fixture", "postgres.url")
base_url = open(state).read().strip()
q = urllib.parse.parse_qs(urllib.parse.urlparse(base_url).query)
host, user = q["host"][0], q["user"][0]


def psql(db, sql):
    p = subprocess.run(["psql", "-X", "-A", "-t", "-F", "|", "-h", host, "-U", user, "-d", db, "-c", sql],
                       capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, "psql %s: %s" % (sql, p.stderr))
    return [l.split("|") for l in p.stdout.splitlines() if l]


psql("payguard", "DROP DATABASE IF EXISTS pos_pgtest")
psql("payguard", "CREATE DATABASE pos_pgtest")
pg_url = "postgresql:///pos_pgtest?host=%s&user=%s" % (host, user)


ODD_TID = 'T"\\,{}N9'
TXN_COLS = ("tid, mid, mti, stan, f7, decision, reason, distance_m, excess_m, est_lat, est_lon, acc_m,"
            " confidence, radio, mcc, mnc, area, cell, rc")


def traffic(env):
    """Runs the scenarios; returns the answers and the alerts as the CLI lists them."""
    c, m = env.import_sample()
    check(c["imported"] == 7 and m["imported"] == 5, "imports on %s: %s %s" % (env.db, c, m))
    env.start("--alert-n", "2", "--window-s", "3600", "--decline", "59")
    answers = []
    stan = 100
    for name in ("stay", "move2km", "move50km", "unknown", "foreign"):
        for _ in range(2):
            stan += 1
            r = env.send([scenario_message(name, stan)])[0]
            answers.append((name, r["39"], r["44"]))
    r = env.send([message("T0000099", None, [], 201)])[0]
    answers.append(("unregistered", r["39"], r["44"]))
    # a terminal id with the characters an array literal quotes ('"', '\\',
    # ',', '{', '}'): PostgreSQL gets a batch as column arrays (engine.c)
    r = env.send([message(ODD_TID, None, [], 202)])[0]
    answers.append(("odd-tid", r["39"], r["44"]))
    env.stop()
    # a restart rebuilds the windows from the store: one more move alerts at once
    env.start("--alert-n", "2", "--window-s", "3600", "--decline", "59")
    r = env.send([scenario_message("move2km", 300)])[0]
    answers.append(("move2km-after-restart", r["39"], r["44"]))
    env.stop()
    alerts = json.loads(run("alerts", "--db", env.db, "--json").stdout)
    return answers, alerts


lite = Env("pg-sqlite")
pg = Env("pg-postgres")
pg.db = pg_url
try:
    a_lite, al_lite = traffic(lite)
    a_pg, al_pg = traffic(pg)
    check(a_pg == a_lite, "same answers on both engines:\n%s\n%s" % (a_pg, a_lite))
    # every column of every stored transaction the same on both engines
    # (doubles to the last bit, NULLs where no estimate or cell), the odd
    # terminal id byte for byte
    sql = "SELECT %s FROM pos_txn ORDER BY stan, tid" % TXN_COLS
    t_lite, t_pg = lite.rows(sql), pg.rows(sql)
    check(len(t_lite) == 13 and t_pg == t_lite, "same stored transactions on both engines:\n%s\n%s"
          % (t_pg, t_lite))
    check(sum(1 for r in t_pg if r[0] == ODD_TID and r[3] == "000202") == 1,
          "the terminal id %r stored as sent" % ODD_TID)
    check(("move2km", "59", "MOVED ALERT") in a_pg and a_pg[-1] == ("move2km-after-restart", "59", "MOVED ALERT"),
          "moves alert, and the window survives a restart: %s" % a_pg)

    def shape(alerts):
        return sorted((a["terminal"], a["state"], a["reason"], a["transactions"]) for a in alerts)
    check(shape(al_pg) == shape(al_lite) and len(al_pg) == 3, "same alerts: %s / %s" % (shape(al_pg), shape(al_lite)))

    rows = psql("pos_pgtest", "SELECT stan, decision, reason, rc, alert_id IS NOT NULL FROM pos_txn ORDER BY id")
    check(len(rows) == 13, "13 transactions stored in PostgreSQL (%d)" % len(rows))
    by = {r[0]: r for r in rows}
    check(by["000103"][1] == "moved" and by["000104"][4] == "t", "moves stored with their alert link")
    check(by["000201"][1] == "unregistered" and by["000201"][3] == "03", "unregistered stored")
    types = dict(psql("pos_pgtest", "SELECT column_name, data_type FROM information_schema.columns"
                                    " WHERE table_name = 'pos_txn'"))
    check(types["ts"] == "bigint" and types["est_lat"] == "double precision" and types["id"] == "bigint",
          "64-bit times and ids, double positions: %s" % types)
    check(psql("pos_pgtest", "SELECT version FROM pg_schema WHERE area = 'pos'") == [["7"]], "pos schema recorded")
    idx = psql("pos_pgtest", "SELECT indexdef FROM pg_indexes WHERE indexname = 'pos_alerts_one_open'")
    check(idx and "UNIQUE" in idx[0][0], "one open alert per terminal and reason is a constraint: %s" % idx)

    # the alert life cycle, through the CLI, on PostgreSQL
    aid = str(next(a["id"] for a in al_pg if a["terminal"] == "T0000002"))
    run("ack", aid, "--db", pg_url, "--note", "called the merchant")
    p = run("ack", aid, "--db", pg_url, check_rc=False)
    check(p.returncode == 1 and "already" in p.stderr, "acknowledging twice is refused on PostgreSQL")
    run("close", aid, "--db", pg_url)
    p = run("close", "999", "--db", pg_url, check_rc=False)
    check(p.returncode == 4, "closing an unknown alert: exit 4 (%d %s)" % (p.returncode, p.stderr))
    check(psql("pos_pgtest", "SELECT state, note FROM pos_alerts WHERE id = %s" % aid) ==
          [["closed", "called the merchant"]], "the alert is closed with its note")

    # concurrent load: group commits of many rows (multi-row inserts of 64,
    # 16, 4 and 1); every answered transaction is stored exactly once, and
    # two servers racing to open the same alerts leave one open per terminal
    before = int(psql("pos_pgtest", "SELECT count(*) FROM pos_txn")[0][0])
    tpl = pg.write("tpl.jsonl", "".join(json.dumps(scenario_message(n, 1)) + "\n"
                                        for n in ("stay", "move2km", "unknown", "foreign")))
    # two servers on one store, as two nodes would be, same terminals on both
    pg2 = Env("pg-postgres-2")
    pg2.db = pg_url
    try:
        pg.start("--alert-n", "2", "--decline", "59")
        pg2.start("--alert-n", "2", "--decline", "59")
        # STANs of their own per loader: the same terminal, STAN and field 7
        # decided in the same millisecond is one transaction (pos_txn_once),
        # and two loaders counting from 0 in step did collide now and then
        loads = [subprocess.Popen([os.environ["PAYGUARD"], "pos", "load", "--port", str(e.port), "--conns", "16",
                                   "--duration-ms", "2000", "--stan-base", str(base), "--json", tpl],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for e, base in ((pg, 0), (pg2, 500000))]
        outs = [l.communicate(timeout=120) for l in loads]
        pg.stop()
        pg2.stop()
    finally:
        pg2.cleanup()
    for l, (out, err) in zip(loads, outs):
        check(l.returncode == 0, "pos load: %s" % err)
    answered = sum(json.loads(out)["answered"] for out, _ in outs)
    errors = sum(json.loads(out)["errors"] for out, _ in outs)
    after = int(psql("pos_pgtest", "SELECT count(*) FROM pos_txn")[0][0])
    check(answered > 500 and errors == 0, "two servers answered %d (errors %d)" % (answered, errors))
    check(after - before == answered, "every answered transaction stored once: %d answered, %d rows"
          % (answered, after - before))
    open_dups = psql("pos_pgtest", "SELECT tid, reason, count(*) FROM pos_alerts WHERE state = 'open'"
                                   " GROUP BY tid, reason HAVING count(*) > 1")
    check(open_dups == [], "no two open alerts for one terminal and reason: %s" % open_dups)

    # The same transaction 40 times in one write: decided in one pass, many
    # in the same millisecond, so they share one pos_txn_once key. Such a
    # batch of in-place rows is a plain INSERT on PostgreSQL (engine.c);
    # the store refuses it and the batch is written again with ON CONFLICT
    # DO NOTHING: every request is answered 00 (none 96), the key is stored
    # once per millisecond, nothing twice.
    pg.start("--framing", "bin2")
    bare = bytes.fromhex(run("encode", "--framing", "none", "-",
                             input=json.dumps(scenario_message("stay", 4242))).stdout.strip())
    sock = socket.create_connection(("127.0.0.1", pg.port), timeout=30)
    sock.sendall((len(bare).to_bytes(2, "big") + bare) * 40)
    data, frames = b"", []
    while len(frames) < 40:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        while len(data) >= 2 and len(data) >= 2 + int.from_bytes(data[:2], "big"):
            n = int.from_bytes(data[:2], "big")
            frames.append(data[2:2 + n])
            data = data[2 + n:]
    sock.close()
    pg.stop()
    codes = {json.loads(run("decode", "--framing", "none", "--json", f.hex()).stdout)["39"]
             for f in frames}
    dup = psql("pos_pgtest", "SELECT count(*), count(DISTINCT ts) FROM pos_txn WHERE stan = '004242'")[0]
    check(len(frames) == 40 and codes == {"00"}, "40 answers, all 00: %d, %s" % (len(frames), codes))
    check(int(dup[0]) == int(dup[1]) and 1 <= int(dup[0]) < 40,
          "one row per key, fewer than 40 (the duplicate path was taken): %s" % dup)
    check("commit failed" not in pg.server_log(), "no failed commit in the server log")
    # schema step 7: no foreign key (a check trigger per inserted row) and no
    # primary key (a second B-tree per row) on pos_txn; pos_txn_once is the
    # one unique index, and ids stay unique (an identity)
    keys = psql("pos_pgtest", "SELECT conname FROM pg_constraint WHERE contype IN ('f', 'p')"
                              " AND conrelid IN (SELECT oid FROM pg_class WHERE relname LIKE 'pos_txn%')")
    check(keys == [], "no foreign or primary key left on pos_txn or its partitions: %s" % keys)
    uniq = psql("pos_pgtest", "SELECT indexdef FROM pg_indexes WHERE tablename = 'pos_txn'"
                              " AND indexdef LIKE 'CREATE UNIQUE%'")
    check(len(uniq) == 1 and "(ts, tid, stan, f7)" in uniq[0][0], "pos_txn_once the unique key: %s" % uniq)
    ids = psql("pos_pgtest", "SELECT count(*), count(DISTINCT id) FROM pos_txn")[0]
    check(ids[0] == ids[1] and int(ids[0]) > 0, "every row its own id: %s" % ids)

    # a store that cannot be reached is a clear error, not a crash
    p = run("alerts", "--db", "postgresql:///x?host=/nonexistent&connect_timeout=2", check_rc=False)
    check(p.returncode != 0 and "cannot connect" in p.stderr and p.returncode < 128,
          "unreachable PostgreSQL: exit %d, %s" % (p.returncode, p.stderr.strip()))
    print("pos on PostgreSQL: ok")
finally:
    lite.cleanup()
    pg.cleanup()
