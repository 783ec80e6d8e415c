"""Issue 15, POS intake through JetStream in the daemon: `payguard serve
--demo --nats URLS --intake jetstream` (SQLite store) against the three-node
JetStream fixture. The demo's POS traffic is answered by the pos worker once
the intake stream (PAYGUARD_POS) acknowledges each batch, and the worker's
sink (the durable pull consumer "pos-sink") writes the stream into the
store. Checked: the stream grows while the daemon runs (the transactions go
through it, not straight into the store), the store gets the transactions
and the demo's alerts, after a SIGTERM the sink has acknowledged every
message of the stream (nothing left pending, nothing held in the work
queue, at least one stored row per published batch), and no transaction is stored
twice (terminal, STAN, transmission time). The configuration-file key
(`"intake": "jetstream"`) does the same as the option; `intake` without
NATS servers is refused at the start."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "serve"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "fixtures"))

from eventsutil import check, nats_urls  # noqa: E402
from serveutil import Daemon  # noqa: E402
import natsreq  # noqa: E402

STREAM, DURABLE = "PAYGUARD_POS", "pos-sink"
urls = nats_urls()


def nats_request(subject, payload=b"", timeout=5.0):
    return natsreq.request(urls, subject, payload, timeout)


def stream_state():
    """(messages held, last sequence); (0, 0) when there is no stream. The
    stream is a work queue: a message the sink acknowledged is removed, so
    the last sequence counts what was published, messages what is left."""
    v = nats_request("$JS.API.STREAM.INFO." + STREAM)
    return (v["state"]["messages"], v["state"]["last_seq"]) if "state" in v else (0, 0)


# a clean stream (the fixture is shared under RESOURCE_LOCK nats): the
# counts below are this run's
nats_request("$JS.API.STREAM.DELETE." + STREAM)
check(stream_state() == (0, 0), "no intake stream before the run")

# intake jetstream without NATS is refused at the start, naming the missing option
try:
    Daemon("--intake", "jetstream")
    check(False, "serve started with --intake jetstream and no NATS")
except AssertionError as e:
    check("needs NATS" in str(e), "--intake jetstream without --nats is refused (%s)" % str(e)[-200:])


def run(*extra, conf=None):
    base = stream_state()[1]
    d = Daemon("--nats", urls, *extra, conf=conf, period_ms=1000)
    try:
        s, svcs = d.get("/api/services")
        pos = next((w for w in svcs if w["name"] == "pos"), None)
        check(s == 200 and pos and pos["state"] == "running", "the pos worker runs (%s)" % pos)
        # the daemon's store on either engine (a PostgreSQL database of its
        # own on the PostgreSQL pass, serveutil.py)
        count = lambda sql: int(d.rows(sql)[0][0])  # noqa: E731
        n0 = stream_state()[1]
        d.wait("POS transactions stored through the sink",
               lambda: count("SELECT count(*) FROM pos_txn") >= 50, 180)
        n1 = stream_state()[1]
        check(n1 > n0, "batches were published to the intake stream while the daemon answered"
              " (last sequence %d -> %d)" % (n0, n1))
        d.wait("the demo's alerts", lambda: count("SELECT count(*) FROM pos_alerts") >= 1,
               120)
        rc = d.stop()
        check(rc == 0, "the daemon stopped cleanly on SIGTERM (%s)" % rc)
    except BaseException:
        print(d.log()[-4000:])
        d.cleanup()
        raise
    ci = nats_request("$JS.API.CONSUMER.INFO.%s.%s" % (STREAM, DURABLE))
    check("error" not in ci, "the sink's durable consumer exists (%s)" % ci.get("error"))
    check(ci["num_pending"] == 0 and ci["num_ack_pending"] == 0,
          "the sink acknowledged every message of the stream (pending %d, unacked %d)"
          % (ci["num_pending"], ci["num_ack_pending"]))
    rows = int(d.rows("SELECT count(*) FROM pos_txn")[0][0])
    dup = int(d.rows("SELECT count(*) FROM (SELECT tid, stan, f7 FROM pos_txn"
                     " GROUP BY tid, stan, f7 HAVING count(*) > 1) AS d")[0][0])
    held, last = stream_state()
    print("stream: %d batches published, %d held; store: %d transactions" % (last, held, rows))
    check(held == 0, "the work-queue stream holds nothing the sink has not stored (%d held)" % held)
    # each batch holds at least one transaction: fewer rows than batches is a lost batch
    check(rows >= last - base, "the store has every batch of this run (%d rows, %d batches)" % (rows, last - base))
    check(dup == 0, "no transaction stored twice (%d repeated keys)" % dup)
    d.cleanup()


run("--intake", "jetstream")
run(conf={"intake": "jetstream"})
