"""The API does not stall (issue 13, item 7): liveness checks, not timings.

- 64 connections that never finish their headers (one header line a second)
  do not lock /api/health out (today's main refused every connection for as
  long as they were held: its 64-connection limit was full);
- one client address gets at most 128 connections: more are refused, the
  refusals are logged rate-limited with a count, and another address
  (127.0.0.2) is still answered;
- a connection that sends nothing is closed after the 10 s idle timeout, and
  one that trickles header lines (never idle) once its head is 15 s overdue;
- while the VSE hypervisor hangs (its worker SIGSTOPped), calls to it wait for
  their timeout but /api/health answers at once, and more than half the API's
  threads never wait for it at the same time (the rest get 503 at once);
- 50 clients scraping /metrics do not hold /api/health back.
Bounds are generous (seconds); bench/serve/run.py measures the latencies."""
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

from serveutil import Daemon


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def health(port, source="127.0.0.1", timeout=5):
    """Seconds until /api/health answered 200 on a new connection from source,
    or None when the connection was refused or not answered within timeout."""
    t0 = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                      source_address=(source, 0)) as s:
            s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % port)
            data = b""
            while b"\r\n\r\n" not in data:
                b = s.recv(4096)
                if not b:
                    break
                data += b
    except OSError:
        return None
    return time.monotonic() - t0 if data.startswith(b"HTTP/1.1 200") else None


class SlowHeaders:
    def __init__(self, port, n, source="127.0.0.1"):
        self.socks, self.stop, self.source = [], threading.Event(), source
        self.add(port, n)
        self.t = threading.Thread(target=self.trickle, daemon=True)
        self.t.start()

    def add(self, port, n):
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=5,
                                         source_address=(self.source, 0))
            s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port)
            self.socks.append(s)

    def trickle(self):
        i = 0
        while not self.stop.wait(1.0):
            i += 1
            for s in list(self.socks):
                try:
                    s.sendall(b"X-Slow-%d: 1\r\n" % i)
                except OSError:
                    pass

    def closed_by_server(self):
        n = 0
        for s in self.socks:
            s.setblocking(False)
            try:
                if s.recv(100) == b"":
                    n += 1
            except BlockingIOError:
                pass
            except OSError:
                n += 1
        return n

    def close(self):
        self.stop.set()
        self.t.join()
        for s in self.socks:
            s.close()


def main():
    d = Daemon()
    try:
        check(health(d.port) is not None, "health before the load")
        # from another address: trickling heads, cut once 15 s overdue
        trick = SlowHeaders(d.port, 16, "127.0.0.3")
        t_trick = time.monotonic()

        # 64 slow-header connections: health still answered
        sh = SlowHeaders(d.port, 64)
        time.sleep(1.5)
        for _ in range(5):
            t = health(d.port)
            check(t is not None and t < 5, "health with 64 slow-header connections held: %r" % t)
        check(sh.closed_by_server() == 0, "the 64 were refused")

        # the per-client limit: 150 from 127.0.0.1, so 22 or so over 128
        sh.add(d.port, 86)
        time.sleep(1.5)
        refused = sh.closed_by_server()
        check(refused >= 150 - 128 - 2 * 8 and refused <= 150 - 128,
              "connections over the per-client limit closed: %d" % refused)
        check(health(d.port, "127.0.0.2") is not None, "another client address is answered")
        check(health(d.port, "127.0.0.1") is None, "127.0.0.1 is at its limit")
        sh.close()
        t = d.wait("127.0.0.1 answered again", lambda: health(d.port), 15)
        d.wait("the refusals logged", lambda: "refused" in d.log(), 15)
        lines = [l for l in d.log().splitlines() if "http: refused" in l]
        check(1 <= len(lines) <= 3, "refusals logged at most once per 10 s: %s" % lines)
        check("127.0.0.1 has 128 connections open" in lines[0], lines)

        # the idle timeout: a silent connection is closed within 10 s (+ slack)
        s = socket.create_connection(("127.0.0.1", d.port))
        s.settimeout(20)
        t0 = time.monotonic()
        try:
            got = s.recv(100)
        except socket.timeout:
            got = None
        waited = time.monotonic() - t0
        s.close()
        check(got == b"" and waited < 15, "silent connection closed after %.1f s (%r)" % (waited, got))
        check(trick.closed_by_server() == 0 or time.monotonic() - t_trick > 15,
              "trickling heads cut before their time")
        time.sleep(max(0, t_trick + 19 - time.monotonic()))
        cut = trick.closed_by_server()
        trick.close()
        check(cut == 16, "trickling heads cut after 15 s: %d of 16" % cut)
        d.wait("the cut logged", lambda: "had not sent a whole request head" in d.log(), 15)

        # a hung hypervisor
        s, svcs = d.get("/api/services")
        vse = [x["pid"] for x in svcs if x["name"] == "vse"][0]
        os.kill(vse, signal.SIGSTOP)
        results = []
        try:
            def call():
                t0 = time.monotonic()
                st, v = d.request("GET", "/api/vses")
                results.append((st, time.monotonic() - t0, v))

            ts = [threading.Thread(target=call) for _ in range(6)]
            for th in ts:
                th.start()
                time.sleep(0.05)
            time.sleep(0.5)
            for _ in range(5):
                t = health(d.port, timeout=10)
                check(t is not None and t < 2, "health while the hypervisor hangs: %r" % t)
            for th in ts:
                th.join()
        finally:
            os.kill(vse, signal.SIGCONT)
        check(all(st == 503 for st, _, _ in results), results)
        waited = [r for r in results if r[1] > 4]
        quick = [r for r in results if r[1] < 1]
        check(len(waited) == 4 and len(quick) == 2, "4 calls wait for it, 2 refused at once: %r" % results)
        check(all("already" in r[2]["error"]["message"] for r in quick), quick)

        # 50 clients scraping /metrics
        stop = threading.Event()
        scrapes = [0]

        def scrape():
            while not stop.is_set():
                try:
                    with urllib.request.urlopen(d.base + "/metrics", timeout=30) as r:
                        r.read()
                    scrapes[0] += 1
                except OSError:
                    pass

        ts = [threading.Thread(target=scrape) for _ in range(50)]
        for th in ts:
            th.start()
        try:
            time.sleep(1)
            for _ in range(5):
                t = health(d.port, timeout=10)
                check(t is not None and t < 5, "health under 50 scrapers: %r" % t)
        finally:
            stop.set()
            for th in ts:
                th.join()
        check(scrapes[0] > 50, "scrapes answered: %d" % scrapes[0])
        check(d.stop() == 0, "clean stop")
    finally:
        d.cleanup()
    print("ok")


if __name__ == "__main__":
    main()
