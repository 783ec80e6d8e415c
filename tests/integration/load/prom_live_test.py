"""Prometheus as a live load source (issue 17): a real Prometheus (Debian's
prometheus) started here in a temporary folder on a free port scrapes, every
second, a small libvirt-exporter lookalike this test serves: six domains, two
burning CPU, two reading from disk, two idle, whose counters advance with
the clock. The CPU counter is published under a name of our own, so the
source must be told it (cpu=...); the other names are the documented
libvirt defaults.

1. `payguard load collect --source prometheus:URL,...` stores samples of all
   six domains from query_range.
2. `payguard serve` with load_source = prometheus:URL,... polls it every
   period; its estimate must put the three behaviours in three types
   (adjusted Rand index, scikit-learn, printed and >= 0.9).
3. Prometheus stopped: the daemon keeps running and logs that Prometheus is
   down, naming the URL; `load collect` fails with the same clear error.
Before all that: a daemon whose prometheus load_source has a bad key or a
metric name that is not one refuses to start, naming the key."""
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "serve"))
from serveutil import Daemon, PAYGUARD  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402

GROUPS = {"cpu": ["web-1", "web-2"], "disk": ["db-1", "db-2"], "idle": ["spare-1", "spare-2"]}
T0 = time.time()


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def exposition():
    t = time.time() - T0
    out = []
    fam = [
        ("vm_cpu_seconds_total", "counter",
         lambda g: t * (1.7 if g == "cpu" else 0.04), ""),  # 2 vCPUs: 85 % / 2 %
        ("libvirt_domain_info_virtual_cpus", "gauge", lambda g: 2, ""),
        ("libvirt_domain_info_maximum_memory_bytes", "gauge", lambda g: 4 << 30, ""),
        ("libvirt_domain_info_memory_usage_bytes", "gauge", lambda g: 1 << 30, ""),
        ("libvirt_domain_block_stats_read_bytes_total", "counter",
         lambda g: t * (40 << 20 if g == "disk" else 1024), ',target_device="vda"'),
        ("libvirt_domain_block_stats_write_bytes_total", "counter",
         lambda g: t * (8 << 20 if g == "disk" else 512), ',target_device="vda"'),
        ("libvirt_domain_interface_stats_receive_bytes_total", "counter",
         lambda g: t * 2048, ',target_device="vnet0"'),
        ("libvirt_domain_interface_stats_transmit_bytes_total", "counter",
         lambda g: t * 2048, ',target_device="vnet0"'),
    ]
    for name, typ, val, extra in fam:
        out.append("# TYPE %s %s" % (name, typ))
        for g, vms in GROUPS.items():
            for vm in vms:
                out.append('%s{domain="%s"%s} %.3f' % (name, vm, extra, val(g)))
    return ("\n".join(out) + "\n").encode()


class Exporter(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/metrics":
            self.send_error(404)
            return
        body = exposition()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def main():
    prom = shutil.which("prometheus")
    check(prom is not None, "prometheus missing: run scripts/setup.sh")
    for bad, word in [("prometheus:http://127.0.0.1:1,nosuch=1", "unknown key 'nosuch'"),
                      ('prometheus:http://127.0.0.1:1,cpu=up{job="x"}', "is not a metric name")]:
        d0 = tempfile.mkdtemp(prefix="pg-prom-bad-")
        with open(os.path.join(d0, "serve.json"), "w") as f:
            json.dump({"load_source": bad}, f)
        r = subprocess.run([PAYGUARD, "serve", "--data", d0, "--port", "0"], capture_output=True,
                           text=True, timeout=30)
        shutil.rmtree(d0, ignore_errors=True)
        check(r.returncode == 3 and word in r.stderr and "load_source" in r.stderr,
              (bad, r.returncode, r.stderr))
    work = tempfile.mkdtemp(prefix="pg-prom-live-")
    exp = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Exporter)
    threading.Thread(target=exp.serve_forever, daemon=True).start()
    port = free_port()
    with open(os.path.join(work, "prometheus.yml"), "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                "scrape_configs:\n  - job_name: libvirt\n"
                "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % exp.server_address[1])
    log = open(os.path.join(work, "prometheus.log"), "w")
    p = subprocess.Popen([prom, "--config.file=" + os.path.join(work, "prometheus.yml"),
                          "--storage.tsdb.path=" + os.path.join(work, "tsdb"),
                          "--web.listen-address=127.0.0.1:%d" % port],
                         stdout=log, stderr=subprocess.STDOUT)
    d = None
    url = "http://127.0.0.1:%d" % port
    spec = "prometheus:%s,step=1,window=5,timeout=3,retries=1,cpu=vm_cpu_seconds_total" % url
    try:
        # ready, and six series scraped twice (rate() needs two points)
        deadline = time.time() + 90
        n = 0
        while time.time() < deadline and p.poll() is None:
            try:
                q = urllib.request.quote("rate(vm_cpu_seconds_total[5s])")
                with urllib.request.urlopen(url + "/api/v1/query?query=" + q, timeout=5) as r:
                    n = len(json.load(r)["data"]["result"])
                if n == 6:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        check(n == 6, "prometheus did not scrape the exporter: " + open(log.name).read()[-2000:])

        # 1. load collect stores samples of every domain
        db = os.path.join(work, "collect.db")
        r = subprocess.run([PAYGUARD, "load", "collect", "--source", spec, "--interval", "2",
                            "--count", "3", "--db", db, "--json"],
                           capture_output=True, text=True, timeout=120)
        check(r.returncode == 0, (r.returncode, r.stderr))
        out = subprocess.run(["sqlite3", db, "SELECT vm, COUNT(*), ROUND(AVG(cpu)), ROUND(AVG(disk_rd)) "
                              "FROM load_samples GROUP BY vm"], capture_output=True, text=True)
        print(out.stdout)
        rows = {l.split("|")[0]: [float(x) for x in l.split("|")[1:]] for l in out.stdout.split()}
        check(set(rows) == {vm for g in GROUPS.values() for vm in g}, rows)
        check(all(rows[vm][0] >= 3 for vm in rows), rows)
        check(all(50 < rows[vm][1] <= 100 for vm in GROUPS["cpu"]), rows)  # 85 %, less while rate() fills
        check(all(rows[vm][1] < 10 for vm in GROUPS["idle"]), rows)
        check(all(rows[vm][2] > 20000 for vm in GROUPS["disk"]), rows)  # 40 MiB/s

        # 2. the daemon polls it every period and estimates
        d = Daemon(demo=False, period_ms=1000, conf={"load_source": spec})

        def est():
            s, v = d.get("/api/load/vms")
            return v if s == 200 and len(v["vms"]) == 6 and min(x["samples"] for x in v["vms"]) >= 6 else None
        v = d.wait("an estimate of the 6 domains from Prometheus", est, 90)
        by = {x["name"]: x["type"] for x in v["vms"]}
        truth = {vm: g for g, vms in GROUPS.items() for vm in vms}
        vms = sorted(by)
        ari = adjusted_rand_score([truth[x] for x in vms], [by[x] for x in vms])
        print("daemon, prometheus source: %d VMs, ARI %.3f, types %s" % (len(vms), ari, by))
        check(ari >= 0.9, (ari, v))

        # 3. Prometheus goes away: a clear error, the daemon stays up
        p.terminate()
        p.wait(timeout=30)
        d.wait("the load worker saying Prometheus is down",
               lambda: "prometheus '%s' is down or unreachable" % url in d.log(), 30)
        check(d.proc.poll() is None, "daemon exited: " + d.log()[-2000:])
        r = subprocess.run([PAYGUARD, "load", "collect", "--source", spec, "--interval", "0.5",
                            "--count", "2", "--db", db], capture_output=True, text=True, timeout=60)
        print(r.stderr.strip())
        check(r.returncode != 0 and ("prometheus '%s' is down or unreachable (2 attempts" % url) in r.stderr,
              (r.returncode, r.stderr))
        rc = d.stop()
        check(rc == 0, d.log()[-2000:])
        print("prometheus live source: ok")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if d:
            d.cleanup()
        exp.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
