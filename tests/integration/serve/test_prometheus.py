"""A real Prometheus (Debian's prometheus) scrapes `payguard serve run
--demo` /metrics every second; a PromQL query through its HTTP API returns
the POS transaction count and the service restart counter (issue 9)."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

from serveutil import Daemon


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def query(port, q):
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (port, urllib.parse.urlencode({"query": q}))
    with urllib.request.urlopen(url, timeout=10) as r:
        v = json.load(r)
    check(v["status"] == "success", v)
    return v["data"]["result"]


def main():
    prom = shutil.which("prometheus")
    check(prom is not None, "prometheus missing: run scripts/setup.sh")
    d = Daemon()
    p = None
    try:
        port = free_port()
        cfg = os.path.join(d.dir, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: payguard\n"
                    "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % d.port)
        log = open(os.path.join(d.dir, "prometheus.log"), "w")
        p = subprocess.Popen([prom, "--config.file=" + cfg,
                              "--storage.tsdb.path=" + os.path.join(d.dir, "tsdb"),
                              "--web.listen-address=127.0.0.1:%d" % port],
                             stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        got = None
        while time.time() < deadline and p.poll() is None:
            try:
                r = query(port, 'payguard_pos_transactions_total{job="payguard"}')
                if r and float(r[0]["value"][1]) > 0:
                    got = float(r[0]["value"][1])
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        check(got is not None, "Prometheus never returned the POS transaction count: " +
              open(os.path.join(d.dir, "prometheus.log")).read()[-2000:])
        now = d.metric("payguard_pos_transactions_total")
        check(0 < got <= now, (got, now))
        # every worker the daemon lists is up (the events relay among them)
        s, svcs = d.get("/api/services")
        check(s == 200 and "events" in [w["name"] for w in svcs], svcs)
        r = query(port, 'sum(payguard_service_up{job="payguard"})')
        check(r and float(r[0]["value"][1]) == len(svcs) == 8, (r, len(svcs)))
        r = query(port, 'up{job="payguard"}')
        check(r and r[0]["value"][1] == "1", r)
        print("prometheus: POS transaction count %d scraped and queried (daemon now %d)" % (got, now))
        check(d.stop() == 0, "clean stop")
    finally:
        if p is not None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        d.cleanup()


if __name__ == "__main__":
    sys.exit(main())
