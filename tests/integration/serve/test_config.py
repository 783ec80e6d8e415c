"""The serve configuration file and SIGHUP (issue 9): DIR/serve.json is read
at start, bad files are refused with the key named, SIGHUP applies a new
load period at once (the load worker is restarted on purpose, not counted
as a crash), and a broken file on SIGHUP keeps the running configuration."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

from serveutil import PAYGUARD, Daemon


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main():
    with tempfile.TemporaryDirectory(prefix="pg-serve-conf-") as tmp:
        for text, word in [('{"port": "80"}', "port"), ('{"colour": 1}', "unknown key"),
                           ('{"listen": "example.org"}', "IPv4"), ('{"port": 1', "malformed"),
                           ('[]', "object"), ('{"load_period_ms": 5}', "load_period_ms"),
                           ('{"node": "a b"}', "node name"), ('{"node": ""}', "node"),
                           ('{"store": ""}', "store"), ('{"store": 5}', "store"),
                           ('{"pos_keep_days": 0}', "pos_keep_days"), ('{"pos_keep_days": "7"}', "pos_keep_days"),
                           # events (issue 15, docs/events.md)
                           ('{"nats": ""}', "nats"), ('{"webhooks": "http://x"}', "webhooks"),
                           ('{"webhooks": ["ftp://x/y"]}', "http"), ('{"intake": "kafka"}', "intake"),
                           (json.dumps({"webhooks": ["http://h/%d" % i for i in range(9)]}), "webhooks"),
                           ('{"webhook_secret_file": 1}', "webhook_secret_file")]:
            with open(os.path.join(tmp, "serve.json"), "w") as f:
                f.write(text)
            r = subprocess.run([PAYGUARD, "serve", "run", "--data", tmp, "--port", "0"],
                               capture_output=True, text=True, timeout=30)
            check(r.returncode == 3 and word in r.stderr and "serve.json" in r.stderr,
                  (text, r.returncode, r.stderr))

        # a node name is letters, digits, '.', '_' and '-' (cluster mode, docs/cluster.md)
        os.unlink(os.path.join(tmp, "serve.json"))
        r = subprocess.run([PAYGUARD, "serve", "run", "--data", tmp, "--port", "0", "--node", "n/1"],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 2 and "--node" in r.stderr, (r.returncode, r.stderr))
        # JetStream intake needs NATS; a webhook secret is only read from a private file
        for args, word in [(["--intake", "jetstream"], "NATS"), (["--intake", "x"], "--intake"),
                                 (["--webhook", "file:///etc/passwd"], "--webhook"),
                                 (["--webhook", "http://127.0.0.1:1/", "--webhook-secret-file",
                                   os.path.join(tmp, "none")], "webhook secret")]:
            r = subprocess.run([PAYGUARD, "serve", "run", "--data", tmp, "--port", "0"] + args,
                               capture_output=True, text=True, timeout=30)
            check(r.returncode != 0 and word in r.stderr, (args, r.returncode, r.stderr))
        sec = os.path.join(tmp, "short.secret")
        with open(sec, "w") as f:
            f.write("whsec_c2hvcnQ=\n")
        os.chmod(sec, 0o600)
        r = subprocess.run([PAYGUARD, "serve", "run", "--data", tmp, "--port", "0", "--webhook",
                            "http://127.0.0.1:1/", "--webhook-secret-file", sec],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode != 0 and "16 to 64 bytes" in r.stderr and "c2hvcnQ" not in r.stderr,
              (r.returncode, r.stderr))

    # the node name: the file's, unless the command line gives one
    d = Daemon(conf={"node": "conf-node"}, demo=False)
    try:
        c = d.get("/api/cluster")[1]
        check(c["node"] == "conf-node" and [n["name"] for n in c["nodes"]] == ["conf-node"], c)
    finally:
        d.stop()
        d.cleanup()
    d = Daemon("--node", "cli-node", conf={"node": "conf-node"}, demo=False)
    try:
        check(d.get("/api/cluster")[1]["node"] == "cli-node", "--node wins over the file")
    finally:
        d.stop()
        d.cleanup()

    # the command line wins over the file, at start and on SIGHUP
    d = Daemon(period_ms=700, conf={"load_period_ms": 60000}, demo=False)
    try:
        check(d.get("/api/health")[1]["load_period_ms"] == 700, "--load-period-ms wins")
        d.proc.send_signal(signal.SIGHUP)
        d.wait("the reload", lambda: d.get("/api/health")[1]["reloads"] == 1, 20)
        check(d.get("/api/health")[1]["load_period_ms"] == 700, "still the command line's")
        # one daemon per data directory: a second is refused, the first goes on
        r = subprocess.run([PAYGUARD, "serve", "--data", d.dir, "--port", "0"],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 1 and "another payguard serve (pid %d)" % d.proc.pid in r.stderr,
              (r.returncode, r.stderr))
        check(d.get("/api/health")[0] == 200, "the first daemon still answers")
        check(d.stop() == 0, "clean stop")
    finally:
        d.cleanup()

    d = Daemon(period_ms=None, conf={"load_period_ms": 60000, "demo": True})
    try:
        s, h = d.get("/api/health")
        check(s == 200 and h["load_period_ms"] == 60000 and h["reloads"] == 0, h)
        d.wait("a first estimate", lambda: (d.metric("payguard_load_estimates_total") or 0) >= 1)
        old = [x for x in d.get("/api/services")[1] if x["name"] == "load"][0]
        with open(os.path.join(d.dir, "serve.json"), "w") as f:
            json.dump({"load_period_ms": 300, "demo": True, "log_level": "info"}, f)
        d.proc.send_signal(signal.SIGHUP)
        d.wait("the reload", lambda: d.get("/api/health")[1]["reloads"] == 1, 20)
        check(d.get("/api/health")[1]["load_period_ms"] == 300, "new period")
        d.wait("the load worker with the new period",
               lambda: [x for x in d.get("/api/services")[1]
                        if x["name"] == "load" and x["pid"] not in (0, old["pid"])], 20)
        est = d.metric("payguard_load_estimates_total")
        d.wait("estimates at the new period",
               lambda: d.metric("payguard_load_estimates_total") >= est + 3, 30)
        check(all(x["restarts"] == 0 for x in d.get("/api/services")[1]), "a reload is no crash")

        with open(os.path.join(d.dir, "serve.json"), "w") as f:
            f.write('{"load_period_ms": "fast"}')
        d.proc.send_signal(signal.SIGHUP)
        d.wait("the refused reload in the log", lambda: "configuration kept" in d.log(), 20)
        s, h = d.get("/api/health")
        check(s == 200 and h["reloads"] == 1 and h["load_period_ms"] == 300, h)
        check(d.stop() == 0, "clean stop")
    finally:
        d.cleanup()
    store_key()
    print("serve config: ok")


def store_key():
    """`store` names the SQLite file the daemon and its workers use (the
    PostgreSQL form: test_postgres.py); --store wins over it; a store file
    others can read is refused (exit code 5) as DIR/payguard.db is."""
    with tempfile.TemporaryDirectory(prefix="pg-serve-store-") as tmp:
        os.chmod(tmp, 0o700)
        keyed, flag = os.path.join(tmp, "keyed.db"), os.path.join(tmp, "flag.db")
        d = Daemon(conf={"store": keyed})
        try:
            d.wait("POS traffic in the keyed store",
                   lambda: sum(t["transactions"] for t in d.get("/api/pos/terminals")[1]) > 0, 60)
            check(d.stop() == 0, "clean stop")
            con = sqlite3.connect(keyed)
            n = con.execute("SELECT count(*) FROM pos_txn").fetchone()[0]
            ev = [r[0] for r in con.execute("SELECT event FROM serve_events WHERE service='serve' ORDER BY id")]
            con.close()
            check(n > 0 and ev[0] == "start" and ev[-1] == "stop", (n, ev))
            check(os.stat(keyed).st_mode & 0o777 == 0o600, "the store is 0600")
            check("store %s)" % keyed in d.log(), d.log()[:500])
            own = os.path.join(d.dir, "payguard.db")
            if os.path.exists(own):  # the VSE registry's, until it moves to the store API
                con = sqlite3.connect(own)
                t = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'"
                                               " AND (name GLOB 'pos_*' OR name GLOB 'serve_*')")]
                con.close()
                check(t == [], "serve/POS tables in DIR/payguard.db: %s" % t)
        finally:
            d.cleanup()
        d = Daemon("--store", "sqlite:" + flag, demo=False, conf={"store": keyed})
        try:
            d.wait("the API", lambda: d.get("/api/health")[0] == 200, 30)
            check(d.stop() == 0, "clean stop")
            con = sqlite3.connect(flag)
            check(con.execute("SELECT count(*) FROM serve_events").fetchone()[0] >= 2, "--store wins")
            con.close()
        finally:
            d.cleanup()
        os.chmod(flag, 0o644)
        r = subprocess.run([PAYGUARD, "serve", "--data", tmp, "--port", "0", "--store", flag],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 5 and "chmod 600" in r.stderr, (r.returncode, r.stderr))


if __name__ == "__main__":
    sys.exit(main())
