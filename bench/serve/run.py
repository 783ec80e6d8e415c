#!/usr/bin/python3
"""API stall benchmark (issue 13, item 7): /api/health latency of `payguard
serve --demo` while the API is under each of the loads the review found:

  idle        nothing else
  slowheader  64 connections that send a request line and then one header line
              a second, never finishing their headers
  hypervisor  the VSE hypervisor hangs (its worker process SIGSTOPped) while a
              client keeps calling GET /api/vses (each call waits for the
              hypervisor until its 5 s timeout)
  scrape      50 clients scraping /metrics back to back (each on a kept-alive
              connection, as Prometheus does)

A probe process (its own interpreter, so the load's threads do not hold its
GIL) asks for /api/health every 10 ms on a new connection and records the time
until it is answered; a refused or dropped connection is retried until an
answer comes (at most --cap seconds), so a lockout shows as latency. Each
binary given runs the same scenarios in the same run, old first: e.g. main
built from its commit with --old-rev, and this tree.

  /usr/bin/python3 bench/serve/run.py [--build DIR] [--old-rev REV] [--samples N]
                                      [--seconds S] [--json FILE]

Prints p50, p99 and max per scenario and binary, and the load average; writes
everything as JSON to bench/results/serve.json (or --json). Target: p99 under
20 ms in every scenario. Not a test: the figures depend on the machine.
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def build(src, bdir):
    subprocess.run(["cmake", "-S", src, "-B", bdir, "-DCMAKE_BUILD_TYPE=Release",
                    "-DBUILD_TESTING=OFF"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", bdir, "-j2", "--target", "payguard"], check=True,
                   stdout=subprocess.DEVNULL)
    return os.path.join(bdir, "src", "payguard")


def old_binary(rev, bdir):
    """Builds `rev` of this repository (git archive, no worktree) in bdir."""
    src = os.path.join(bdir, "src-" + rev)
    if not os.path.isdir(src):
        os.makedirs(src)
        arch = subprocess.run(["git", "-C", ROOT, "archive", rev], check=True,
                              capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", src], input=arch, check=True)
    return build(src, os.path.join(bdir, "build-" + rev))


# ---- the probe (run as a child process) ----

def probe(port, samples, seconds, cap):
    lat, failures = [], 0
    end = time.monotonic() + seconds
    # the Host a browser sends: the daemon answers loopback names with its port only
    req = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % port
    while len(lat) < samples and time.monotonic() < end:
        t0 = time.monotonic()
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=cap) as s:
                    s.sendall(req)
                    data = b""
                    while b"\r\n\r\n" not in data:
                        b = s.recv(4096)
                        if not b:
                            break
                        data += b
                if data.startswith(b"HTTP/1.1 200"):
                    break
            except OSError:
                pass
            failures += 1
            if time.monotonic() - t0 > cap:
                break
            time.sleep(0.01)
        lat.append(time.monotonic() - t0)
        time.sleep(0.01)
    print(json.dumps({"lat": lat, "failures": failures}))


def run_probe(port, samples, seconds, cap):
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--probe", str(port),
                          str(samples), str(seconds), str(cap)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


# ---- the loads ----

class SlowHeaders:
    """n connections that never finish their headers (one line a second)."""

    def __init__(self, port, n=64):
        self.stop = threading.Event()
        self.socks = []
        for _ in range(n):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port)
                self.socks.append(s)
            except OSError:
                pass
        self.t = threading.Thread(target=self.trickle, daemon=True)
        self.t.start()

    def trickle(self):
        i = 0
        while not self.stop.wait(1.0):
            i += 1
            for s in self.socks:
                try:
                    s.sendall(b"X-Slow-%d: 1\r\n" % i)
                except OSError:
                    pass

    def close(self):
        self.stop.set()
        self.t.join()
        for s in self.socks:
            s.close()


class Loop:
    """n threads calling fn back to back."""

    def __init__(self, n, fn):
        self.stop = threading.Event()
        self.calls = 0
        self.ts = [threading.Thread(target=self.run, args=(fn,), daemon=True) for _ in range(n)]
        for t in self.ts:
            t.start()

    def run(self, fn):
        while not self.stop.is_set():
            try:
                fn()
            except OSError:
                time.sleep(0.01)
            self.calls += 1

    def close(self):
        self.stop.set()
        for t in self.ts:
            t.join(timeout=15)


def get(port, path, timeout=30):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
            r.read()
    except urllib.error.HTTPError as e:
        e.read()


class Scraper:
    """GET /metrics on one kept-alive connection per thread, as Prometheus does."""

    def __init__(self, port):
        self.port = port
        self.local = threading.local()

    def __call__(self):
        c = getattr(self.local, "c", None)
        if c is None:
            c = self.local.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request("GET", "/metrics")
            c.getresponse().read()
        except (OSError, http.client.HTTPException):
            c.close()
            self.local.c = None


# ---- one daemon ----

class Daemon:
    def __init__(self, exe):
        self.dir = tempfile.mkdtemp(prefix="pg-serve-bench-")
        pf = os.path.join(self.dir, "http.port")
        self.log = open(os.path.join(self.dir, "daemon.log"), "w")
        self.proc = subprocess.Popen([exe, "serve", "--data", self.dir, "--port", "0",
                                      "--port-file", pf, "--demo"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while not os.path.exists(pf):
            if self.proc.poll() is not None or time.time() > deadline:
                raise SystemExit("daemon did not start: " + open(self.log.name).read())
            time.sleep(0.05)
        time.sleep(0.1)
        self.port = int(open(pf).read())
        # the workers up, and some POS rows for /metrics to count
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/api/services" % self.port,
                                            timeout=10) as r:
                    svcs = json.load(r)
                if all(s["pid"] > 0 for s in svcs):
                    self.svcs = {s["name"]: s["pid"] for s in svcs}
                    break
            except OSError:
                pass
            time.sleep(0.2)
        time.sleep(3)

    def close(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def scenarios(exe, a):
    d = Daemon(exe)
    res = {}
    try:
        def measure(name, load=None):
            t0 = time.time()
            r = run_probe(d.port, a.samples, a.seconds, a.cap)
            lat = r["lat"]
            res[name] = {"n": len(lat), "p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3,
                         "max_ms": max(lat) * 1e3 if lat else float("nan"),
                         "failed_attempts": r["failures"], "seconds": time.time() - t0,
                         "loadavg": os.getloadavg()[0]}
            if load is not None:
                res[name]["load_calls"] = getattr(load, "calls", None)

        measure("idle")
        sh = SlowHeaders(d.port, 64)
        time.sleep(0.5)
        measure("slowheader")
        res["slowheader"]["held"] = len(sh.socks)
        sh.close()
        time.sleep(1)
        vse = d.svcs.get("vse")
        os.kill(vse, signal.SIGSTOP)
        try:
            hv = Loop(1, lambda: get(d.port, "/api/vses"))
            time.sleep(0.5)
            measure("hypervisor", hv)
            hv.stop.set()
        finally:
            os.kill(vse, signal.SIGCONT)
        hv.close()
        sc = Loop(50, Scraper(d.port))
        time.sleep(0.5)
        measure("scrape", sc)
        sc.close()
    finally:
        d.close()
    return res


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--probe":
        probe(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--exe", help="a payguard binary to use instead of building --build")
    ap.add_argument("--old-rev", help="also run this git revision (built under --build)")
    ap.add_argument("--old-exe", help="an old payguard binary to run first")
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=40, help="at most this long per scenario")
    ap.add_argument("--cap", type=float, default=40, help="give up on one answer after this")
    ap.add_argument("--json", default=os.path.join(ROOT, "bench", "results", "serve.json"))
    a = ap.parse_args()
    runs = []
    if a.old_exe:
        runs.append(("old", a.old_exe))
    elif a.old_rev:
        runs.append(("old " + a.old_rev, old_binary(a.old_rev, os.path.join(a.build, "old"))))
    runs.append(("new", a.exe or build(ROOT, a.build)))
    out = {"loadavg_start": os.getloadavg(), "cpus": os.cpu_count(), "runs": {}}
    for name, exe in runs:
        out["runs"][name] = scenarios(exe, a)
    out["loadavg_end"] = os.getloadavg()
    print("loadavg at start %.2f %.2f %.2f, at end %.2f %.2f %.2f, %d CPUs" %
          (*out["loadavg_start"], *out["loadavg_end"], out["cpus"]))
    print("%-12s %-16s %6s %10s %10s %10s %8s %7s" %
          ("scenario", "binary", "n", "p50 ms", "p99 ms", "max ms", "retries", "load1"))
    for sc in ["idle", "slowheader", "hypervisor", "scrape"]:
        for name, _ in runs:
            r = out["runs"][name][sc]
            print("%-12s %-16s %6d %10.2f %10.2f %10.2f %8d %7.2f" %
                  (sc, name, r["n"], r["p50_ms"], r["p99_ms"], r["max_ms"],
                   r["failed_attempts"], r["loadavg"]))
    os.makedirs(os.path.dirname(a.json), exist_ok=True)
    with open(a.json, "w") as f:
        json.dump(out, f, indent=2)
    print("written to", a.json)


if __name__ == "__main__":
    main()
