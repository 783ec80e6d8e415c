"""Issue 15, acceptance: `payguard serve --demo --nats URLS` (SQLite store)
runs its "events" singleton; an independent consumer (the npm `nats` client,
pinned in npm/package-lock.json) reads every event of the run: each is a
valid CloudEvents 1.0 document, ids are unique, and the count per type
matches the store (POS alerts opened / acknowledged / closed, image upgrade
jobs by end state, load estimates). The daemon also has a webhook from its
configuration file (`webhooks`, `webhook_secret_file`): the local receiver
gets the same events, each with a valid signature, and the secret appears
in no log and on no worker's command line. The daemon is stopped with
SIGTERM: the relay stops last and publishes what the others committed while
stopping, so the outbox is empty afterwards and nothing is left to relay.

With the argument `postgres` the same run is on a fresh database of the
`postgres` fixture (`--store URL --node NAME`), where the cluster's own
events come too: node_joined (one), leader_changed (one per row of
cluster_leader) and node_left. The node_left of a clean stop is written
after the relay stopped, so it must be the one event left in the outbox;
`payguard events relay --once` (with the same sinks) then publishes it, and
the counts are compared after that."""
import base64
import hashlib
import hmac
import http.server
import json
import os
import sqlite3
import subprocess
import sys
import threading
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "serve"))

from eventsutil import check, consume, nats_urls  # noqa: E402
from serveutil import PAYGUARD, Daemon  # noqa: E402

urls = nats_urls()
POSTGRES = sys.argv[1:] == ["postgres"]
store_args, pg_db = [], None
if POSTGRES:
    base = open(os.path.join(os.environ.get("PG_POSTGRES_STATE") or os.path.join(
        os.environ["PG_BUILD_DIR"], "postgres-fixture"), "postgres.url")).read().strip()
    qs = urllib.parse.parse_qs(urllib.parse.urlparse(base).query)
    pg_host, pg_user, pg_db = qs["host"][0], qs["user"][0], "events_demo"

    def psql(db, sql):
        p = subprocess.run(["psql", "-X", "-A", "-t", "-h", pg_host, "-U", pg_user, "-d", db, "-c", sql],
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            check(False, "psql %s (%s)" % (sql, p.stderr.strip()))
        return p.stdout.strip()

    psql("payguard", "DROP DATABASE IF EXISTS %s" % pg_db)
    psql("payguard", "CREATE DATABASE %s" % pg_db)
    store_url = "postgresql:///%s?host=%s&user=%s" % (pg_db, urllib.parse.quote(pg_host, safe=""), pg_user)
    store_args = ["--store", store_url, "--node", "evdemo"]
consume(urls, delete=True)  # a clean stream: the fixture is shared (RESOURCE_LOCK nats)

key = os.urandom(32)
secret = "whsec_" + base64.b64encode(key).decode()
got, bad_sig, lock = [], [], threading.Lock()


class Receiver(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        wid, ts = self.headers.get("webhook-id", ""), self.headers.get("webhook-timestamp", "")
        want = base64.b64encode(hmac.new(key, b"%s.%s.%s" % (wid.encode(), ts.encode(), body),
                                         hashlib.sha256).digest()).decode()
        sig = self.headers.get("webhook-signature", "")
        with lock:
            if not any(s.startswith("v1,") and hmac.compare_digest(s[3:], want) for s in sig.split()):
                bad_sig.append(wid)
            got.append(json.loads(body)["id"])
        self.send_response(204)
        self.end_headers()


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=srv.serve_forever, daemon=True).start()
hook = "http://127.0.0.1:%d/events" % srv.server_address[1]

# the secret's file must be private: the daemon refuses one others may read
conf_dir = os.path.join(os.environ.get("PG_BUILD_DIR", "/tmp"), "events-serve-demo")
os.makedirs(conf_dir, exist_ok=True)
secret_file = os.path.join(conf_dir, "webhook.secret")
with open(secret_file, "w") as f:
    f.write(secret + "\n")
os.chmod(secret_file, 0o644)
conf = {"webhooks": [hook], "webhook_secret_file": secret_file,
        "pos_report": "moved,unregistered,undetermined"}
# a decision name that does not exist is refused before anything starts
p = subprocess.run([PAYGUARD, "serve", "--pos-report", "unregistered,bogus", "--port", "0"],
                   capture_output=True, text=True, timeout=60)
check(p.returncode == 2 and "'bogus' is no decision" in p.stderr,
      "serve --pos-report refuses an unknown decision (exit %d: %s)" % (p.returncode, p.stderr.strip()))
try:
    Daemon("--nats", urls, *store_args, conf=conf, period_ms=1000)
    check(False, "serve started with a webhook secret others may read")
except AssertionError as e:
    check("webhook secret" in str(e) and secret not in str(e),
          "serve refuses a webhook secret file others may read, naming it, not its content")
os.chmod(secret_file, 0o600)

d = Daemon("--nats", urls, *store_args, conf=conf, period_ms=1000)


def q(sql):
    """One number from the daemon's store (its SQLite file or the database)."""
    if POSTGRES:
        return int(psql(pg_db, sql) or 0)
    c = sqlite3.connect(os.path.join(d.dir, "payguard.db"))
    try:
        return c.execute(sql).fetchone()[0]
    finally:
        c.close()


def rows(sql):
    if POSTGRES:
        return [tuple(l.split("|")) for l in psql(pg_db, sql).splitlines() if l]
    c = sqlite3.connect(os.path.join(d.dir, "payguard.db"))
    try:
        return [tuple(str(x) for x in r) for r in c.execute(sql).fetchall()]
    finally:
        c.close()


try:
    # a singleton starts once its node leads it (at once on SQLite, after
    # the first heartbeat on PostgreSQL)
    ev = d.wait("the events worker to run", lambda: next(
        (w for w in d.get("/api/services")[1] if w["name"] == "events" and w["state"] == "running"), None), 30)
    s, svcs = d.get("/api/services")
    check(s == 200 and ev, "the events worker runs (%s)" % ev)
    s, v = d.get("/api/cluster")
    check({l["singleton"]: l["node"] for l in v["leaders"]}.get("events") == v["node"],
          "the events singleton is led by the one node")
    for w in svcs:
        with open("/proc/%d/cmdline" % w["pid"], "rb") as f:
            cmd = f.read()
        check(secret.encode() not in cmd and urls.encode() not in cmd,
              "neither the secret nor the NATS URLs are on %s's command line" % w["name"])

    # POS alerts open (the demo's taxi and courier): acknowledge one, close another
    alerts = d.wait("two open POS alerts",
                    lambda: (lambda a: a if len(a) >= 2 else None)(d.get("/api/pos/alerts?state=open")[1]), 180)
    s, v = d.request("POST", "/api/pos/alerts/%d" % alerts[0]["id"], {"action": "acknowledge"})
    check(s == 200 and v["state"] == "acknowledged", v)
    s, v = d.request("POST", "/api/pos/alerts/%d" % alerts[1]["id"], {"action": "close", "note": "test"})
    check(s == 200 and v["state"] == "closed", v)

    # an upgrade job that finishes and one that fails
    imgs = d.wait("the demo images", lambda: (lambda v: v if len(v) >= 2 else None)(d.get("/api/images")[1]), 120)
    img = next(i for i in imgs if i["path"].endswith("/image-demo/demo-disk.img"))
    ends = {}
    for body, want in (({"fix": True}, "done"), ({"packages": ["missing_1.0_all.deb"]}, "failed")):
        s, v = d.request("POST", "/api/images/%d/upgrade" % img["id"], body)
        check(s == 202, v)
        job = v["job"]
        j = d.wait("job %d to end" % job, lambda: next(
            (j for j in d.get("/api/images/jobs")[1] if j["id"] == job and j["state"] not in ("queued", "running")),
            None), 120)
        ends[want] = j["state"]
    check(ends == {"done": "done", "failed": "failed"}, "one upgrade job finished, one failed (%s)" % ends)
    d.wait("a few load estimates", lambda: q("SELECT count(*) FROM serve_load") >= 3, 60)
    rc = d.stop()
    check(rc == 0, "the daemon stopped cleanly on SIGTERM (%s)" % rc)
    log = d.log()
except BaseException:
    print(d.log()[-4000:])
    d.cleanup()
    raise

left = rows("SELECT type, subject FROM event_outbox")
if POSTGRES:
    # the node's own node_left is written after the relay stopped (docs/events.md)
    check(left == [("payguard.cluster.node_left", "evdemo")],
          "only the stopping node's node_left waits in the outbox (%s)" % left)
    p = subprocess.run([PAYGUARD, "events", "relay", "--once", "--db", store_url, "--nats", urls,
                        "--webhook", hook, "--webhook-secret-file", secret_file],
                       capture_output=True, text=True, timeout=120)
    check(p.returncode == 0, "events relay --once published it (%s)" % p.stderr[-500:])
    left = rows("SELECT type, subject FROM event_outbox")
check(left == [], "the relay published everything (%s left in the outbox)" % left)
# the outbox's own count: every event the relay numbered ('#pub'), and how far
# each sink (NATS, the webhook) got; all of them, and the stream, must agree
sinks = {k: int(v) for k, v in rows("SELECT name, last_pub FROM event_sink")}
numbered = sinks.pop("#pub", -1)
check(sinks.get("nats") == numbered and sinks.get("webhook:" + hook) == numbered,
      "both sinks have every event the outbox numbered (%d: %s)" % (numbered, sinks))
store = {
    "payguard.pos.alert_opened": q("SELECT count(*) FROM pos_alerts"),
    "payguard.pos.alert_acknowledged": q("SELECT count(*) FROM pos_alerts WHERE state = 'acknowledged'"),
    "payguard.pos.alert_closed": q("SELECT count(*) FROM pos_alerts WHERE state = 'closed'"),
    # pos_report: every stored transaction with a reported decision, once
    "payguard.pos.decision_reported":
        q("SELECT count(*) FROM pos_txn WHERE decision IN ('moved', 'unregistered', 'undetermined')"),
    "payguard.image.upgrade_finished": q("SELECT count(*) FROM image_job WHERE state = 'done'"),
    "payguard.image.upgrade_failed": q("SELECT count(*) FROM image_job WHERE state = 'failed'"),
    "payguard.image.upgrade_interrupted": q("SELECT count(*) FROM image_job WHERE state = 'interrupted'"),
    # the demo's VSEs are never destroyed: each row was created once, and
    # every crash the hypervisor restarted is counted in its row
    "payguard.vse.created": q("SELECT count(*) FROM vse_instance"),
    "payguard.vse.destroyed": 0,
    "payguard.vse.crashed": q("SELECT coalesce(sum(restarts), 0) FROM vse_instance"),
    # a finding stays in the state table until it is fixed
    "payguard.image.finding_found": q("SELECT count(*) FROM image_finding_state"),
    "payguard.image.finding_fixed": 0,
    # ids only grow and only the oldest rows are trimmed: max(id) is every estimate made
    "payguard.load.estimate_finished": q("SELECT coalesce(max(id), 0) FROM serve_load"),
}
if POSTGRES:
    # a fresh database, one node started once and stopped once; a leader row
    # is written once per singleton and never deleted
    store.update({
        "payguard.cluster.node_joined": q("SELECT count(*) FROM cluster_node"),
        "payguard.cluster.node_left": q("SELECT count(*) FROM cluster_node WHERE state = 'down'"),
        "payguard.cluster.leader_changed": q("SELECT count(*) FROM cluster_leader"),
    })

out = consume(urls)
# an SE authenticates at each attach (a cache hit too), so the SE OS's list
# holds at most as many authenticated SEs as there were events, and at least one
se_rows = q("SELECT count(*) FROM seos_se WHERE state = %d" % 1)
check(1 <= se_rows <= out["types"].get("payguard.se.authenticated", 0),
      "every SE the SE OS lists as authenticated had its event (%d listed, %d events)"
      % (se_rows, out["types"].get("payguard.se.authenticated", 0)))
print("stream: %d events; per type %s" % (out["count"], json.dumps(out["types"], sort_keys=True)))
print("store:  %s" % json.dumps(store, sort_keys=True))
check(out["problems"] == [], "every event is a valid CloudEvents 1.0 document (%s)" % out["problems"][:5])
check(len(out["ids"]) == len(set(out["ids"])), "event ids are unique")
check(out["stream_messages"] == out["count"], "the consumer read every message of the stream")
check(out["count"] == numbered, "the stream has every event of the outbox, once (%d in the stream, %d numbered)"
      % (out["count"], numbered))
for t, n in sorted(store.items()):
    check(out["types"].get(t, 0) == n, "%s: %d in the stream, %d in the store" % (t, out["types"].get(t, 0), n))
check(store["payguard.pos.alert_opened"] >= 2 and store["payguard.pos.alert_acknowledged"] >= 1
      and store["payguard.pos.alert_closed"] >= 1 and store["payguard.pos.decision_reported"] >= 1 and store["payguard.image.upgrade_finished"] >= 1
      and store["payguard.load.estimate_finished"] >= 3, "the run had every kind of change")
if POSTGRES:
    check(store["payguard.cluster.node_joined"] == 1 and store["payguard.cluster.node_left"] == 1
          and store["payguard.cluster.leader_changed"] >= 4, "the node joined, led the singletons and left")
# types of other areas (VSE, SE, image findings) are counted above when mapped;
# the rest must still be payguard's and well-formed (checked by the consumer)
other = {t: n for t, n in out["types"].items() if t not in store}
print("other event types in the run:", other)
check(all(t.startswith("payguard.") for t in other), "every other type is payguard's")

with lock:
    hook_ids = list(got)
check(bad_sig == [], "every webhook request carried a valid signature")
check(sorted(set(hook_ids)) == sorted(out["ids"]), "the webhook got exactly the events the stream has")
check(secret not in log and base64.b64encode(key).decode() not in log, "the secret is in no log")
srv.shutdown()
os.unlink(secret_file)
d.cleanup()
if POSTGRES:
    psql("payguard", "DROP DATABASE IF EXISTS %s" % pg_db)
