"""The serve configuration file and SIGHUP (issue 9): DIR/serve.json is read
at start, bad files are refused with the key named, SIGHUP applies a new
load period at once (the load worker is restarted on purpose, not counted
as a crash), and a broken file on SIGHUP keeps the running configuration."""
import json
import os
import signal
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
                           ('{"node": "a b"}', "node name"), ('{"node": ""}', "node")]:
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
        print("serve config: ok")
    finally:
        d.cleanup()


if __name__ == "__main__":
    sys.exit(main())
