"""Prometheus as a live load source (issue 17): a real Prometheus (Debian's
prometheus) started here in a temporary folder on a free port scrapes, every
second, a small libvirt-exporter lookalike this test serves: six domains, two
burning CPU, two reading from disk, two idle, whose counters advance with
the clock. The CPU counter is published under a name of our own, so the
source must be told it (cpu=...); the other names are the documented
libvirt defaults. The same exporter also serves node_exporter's metrics, one
instance per VM, for the node preset.

1. `payguard load collect --source prometheus:URL,...` stores samples of all
   six domains from query_range.
2. `payguard serve` with load_source = prometheus:URL,... polls it every
   period; its estimate must put the three behaviours in three types
   (adjusted Rand index, scikit-learn, printed and >= 0.9).
3. Prometheus stopped: the daemon keeps running and logs that Prometheus is
   down, naming the URL; `load collect` fails with the same clear error.
Before all that: a daemon whose prometheus load_source has a bad key or a
metric name that is not one refuses to start, naming the key; and against a
stand-in server that answers 503 twice, a request is retried (an HTTP 5xx
or a refused connection is, a 400 is not)."""
import http.server
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "serve"))
from serveutil import Daemon, PAYGUARD  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "fixtures"))
import storeq  # noqa: E402  (either engine: each collect gets a fresh store)
from sklearn.metrics import adjusted_rand_score  # noqa: E402

GROUPS = {"cpu": ["web-1", "web-2"], "disk": ["db-1", "db-2"], "idle": ["spare-1", "spare-2"]}
# (node_exporter's series are exposed with instance="<vm>" and scraped with
# honor_labels, as a federation or push gateway would keep them)
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


def per_vm(db):
    """vm -> [samples, median cpu, median disk read, median memory, max net rx]: medians,
    as the first steps' rate() windows reach back before the series began."""
    rows = {}
    for f in storeq.rows(db, "SELECT vm, cpu, disk_rd, mem, net_rx FROM load_samples"):
        rows.setdefault(f[0], []).append([float(x) for x in f[1:]])
    res = {}
    for vm, r in rows.items():
        col = lambda i: sorted(x[i] for x in r)
        res[vm] = [len(r), statistics.median(col(0)), statistics.median(col(1)),
                   statistics.median(col(2)), max(col(3))]
    print(res)
    return res


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
    # node_exporter's names, one "instance" per VM (kept by honor_labels), with
    # a busy loopback device the node preset must leave out.
    busy = {"cpu": 0.85, "disk": 0.03, "idle": 0.02}
    node = [
        ("node_cpu_seconds_total", "counter",
         lambda g, c, m: t * ((1 - busy[g]) if m == "idle" else busy[g]), None),
        ("node_memory_MemAvailable_bytes", "gauge", lambda g, c, m: 3 << 30, ""),
        ("node_memory_MemTotal_bytes", "gauge", lambda g, c, m: 4 << 30, ""),
        ("node_disk_read_bytes_total", "counter",
         lambda g, c, m: t * (40 << 20 if g == "disk" else 1024), ',device="vda"'),
        ("node_disk_written_bytes_total", "counter", lambda g, c, m: t * 512, ',device="vda"'),
        ("node_network_receive_bytes_total", "counter", lambda g, c, m: t * 2048, ',device="eth0"'),
        ("node_network_receive_bytes_total", "counter", lambda g, c, m: t * (200 << 20), ',device="lo"'),
        ("node_network_transmit_bytes_total", "counter", lambda g, c, m: t * 2048, ',device="eth0"'),
    ]
    seen = set()
    for name, typ, val, extra in node:
        if name not in seen:
            out.append("# TYPE %s %s" % (name, typ))
            seen.add(name)
        for g, vms in GROUPS.items():
            for vm in vms:
                if extra is None:
                    for c in ("0", "1"):
                        for m in ("idle", "user"):
                            out.append('%s{instance="%s",cpu="%s",mode="%s"} %.3f'
                                       % (name, vm, c, m, val(g, c, m)))
                else:
                    out.append('%s{instance="%s"%s} %.3f' % (name, vm, extra, val(g, None, None)))
    return ("\n".join(out) + "\n").encode()


class Flaky(http.server.BaseHTTPRequestHandler):
    """query_range stand-in: the first `fail` requests get `code`, then a matrix."""
    hits = 0
    fail = 0
    code = 503

    def do_GET(self):
        Flaky.hits += 1
        if Flaky.hits <= Flaky.fail:
            body = json.dumps({"status": "error", "errorType": "bad_data",
                               "error": "stand-in says %d" % Flaky.code}).encode()
            self.send_response(Flaky.code)
        else:
            t0 = 1700000000
            body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
                {"metric": {"domain": "vm-%d" % i}, "values": [[t0 + 60 * k, "%d" % (10 * i + k)]
                                                              for k in range(5)]}
                for i in range(2)]}}).encode()
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def retries():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = "prometheus:http://127.0.0.1:%d,1700000000,1700000240,60" % srv.server_address[1]
    d = tempfile.mkdtemp(prefix="pg-prom-flaky-")
    xdb = storeq.fresh_store("flaky", os.path.join(d, "x.db"))
    try:
        def run(spec, fail, code):
            Flaky.hits, Flaky.fail, Flaky.code = 0, fail, code
            return subprocess.run([PAYGUARD, "load", "import", "--source", spec, "--db", xdb],
                                  capture_output=True, text=True, timeout=60)
        r = run(base + ",retries=2", 2, 503)  # two 503s, then six queries answered
        check(r.returncode == 0 and Flaky.hits == 8, (r.returncode, r.stderr, Flaky.hits))
        r = run(base + ",retries=1", 2, 503)  # one retry is not enough
        check(r.returncode != 0 and Flaky.hits == 2 and "2 attempts" in r.stderr and "HTTP 503" in r.stderr,
              (r.returncode, r.stderr, Flaky.hits))
        r = run(base + ",retries=2", 1, 400)  # a bad query is not retried
        check(r.returncode != 0 and Flaky.hits == 1 and "HTTP 400" in r.stderr and "stand-in says 400" in r.stderr,
              (r.returncode, r.stderr, Flaky.hits))
        print("retries: ok (%s)" % r.stderr.strip())
    finally:
        srv.shutdown()
        shutil.rmtree(d, ignore_errors=True)


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
    retries()
    work = tempfile.mkdtemp(prefix="pg-prom-live-")
    exp = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Exporter)
    threading.Thread(target=exp.serve_forever, daemon=True).start()
    port = free_port()
    with open(os.path.join(work, "prometheus.yml"), "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                "scrape_configs:\n  - job_name: libvirt\n    honor_labels: true\n"
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
        # ready, with 10 s of history for six series: rate() over a window that
        # reaches back before a series began reads low (Prometheus extrapolates
        # at most half a scrape interval)
        deadline = time.time() + 90
        n = 0
        while time.time() < deadline and p.poll() is None:
            try:
                q = urllib.request.quote("count_over_time(vm_cpu_seconds_total[15s]) >= 10")
                with urllib.request.urlopen(url + "/api/v1/query?query=" + q, timeout=5) as r:
                    n = len(json.load(r)["data"]["result"])
                if n == 6:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        check(n == 6, "prometheus did not scrape the exporter: " + open(log.name).read()[-2000:])

        # 1. load collect stores samples of every domain
        db = storeq.fresh_store("collect", os.path.join(work, "collect.db"))
        r = subprocess.run([PAYGUARD, "load", "collect", "--source", spec, "--interval", "2",
                            "--count", "3", "--db", db, "--json"],
                           capture_output=True, text=True, timeout=120)
        check(r.returncode == 0, (r.returncode, r.stderr))
        rows = per_vm(db)
        check(set(rows) == {vm for g in GROUPS.values() for vm in g}, rows)
        check(all(rows[vm][0] >= 3 for vm in rows), rows)
        check(all(80 < rows[vm][1] < 90 for vm in GROUPS["cpu"]), rows)  # 1.7 s/s on 2 vCPUs: 85 %
        check(all(rows[vm][1] < 10 for vm in GROUPS["idle"]), rows)
        check(all(38000 < rows[vm][2] < 44000 for vm in GROUPS["disk"]), rows)  # 40 MiB/s = 40,960 KB/s

        # 1b. the node_exporter preset: VMs by instance, CPU from the idle share,
        # memory from MemAvailable/MemTotal, the loopback device left out
        db2 = storeq.fresh_store("node", os.path.join(work, "node.db"))
        r = subprocess.run([PAYGUARD, "load", "collect", "--source",
                            "prometheus:%s,exporter=node,step=1,window=5" % url, "--interval", "2",
                            "--count", "3", "--db", db2], capture_output=True, text=True, timeout=120)
        check(r.returncode == 0, (r.returncode, r.stderr))
        rows = per_vm(db2)
        check(set(rows) == {vm for g in GROUPS.values() for vm in g}, rows)
        check(all(80 < rows[vm][1] < 90 for vm in GROUPS["cpu"]), rows)  # idle share 15 %
        check(all(rows[vm][1] < 10 for vm in GROUPS["idle"]), rows)
        check(all(38000 < rows[vm][2] < 44000 for vm in GROUPS["disk"]), rows)
        check(all(abs(rows[vm][3] - 25) < 1 for vm in rows), rows)
        check(all(rows[vm][4] < 10 for vm in rows), rows)  # 2 KB/s on eth0; lo's 200 MB/s left out

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
        if os.environ.get("PG_KEEP"):
            print("kept", work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
