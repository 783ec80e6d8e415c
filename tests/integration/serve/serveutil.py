"""Helpers for the serve integration tests (issue 9): start `payguard serve`
(the README's form: the verb `run` implied) on 127.0.0.1 with a free port and its own data directory, talk to its
HTTP API with urllib, and stop everything started here. Its store is the
data directory's payguard.db; on the PostgreSQL pass (issue 14,
tests/fixtures/with_pg_store.sh sets PAYGUARD_STORE) each daemon gets a fresh
database through --store, once the daemon takes --store."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "fixtures"))
import storeq  # noqa: E402

PAYGUARD = os.environ.get("PAYGUARD", "payguard")
_takes_store = None


def serve_takes_store():
    """Whether `payguard serve` has --store (the daemon on the store API)."""
    global _takes_store
    if _takes_store is None:
        p = subprocess.run([PAYGUARD, "serve", "run", "--help"], capture_output=True, text=True, timeout=30)
        _takes_store = "--store" in p.stdout + p.stderr
    return _takes_store


class Daemon:
    def __init__(self, *extra, demo=True, period_ms=500, conf=None):
        self.dir = tempfile.mkdtemp(prefix="pg-serve-test-")
        if conf is not None:
            with open(os.path.join(self.dir, "serve.json"), "w") as f:
                f.write(conf if isinstance(conf, str) else json.dumps(conf))
        self.portfile = os.path.join(self.dir, "http.port")
        args = [PAYGUARD, "serve", "--data", self.dir, "--port", "0",
                "--port-file", self.portfile]
        if period_ms is not None:
            args += ["--load-period-ms", str(period_ms)]
        if demo:
            args.append("--demo")
        args += list(extra)
        # the daemon's store: its data directory's, or on the PostgreSQL pass a
        # database of its own (unless the test names a store itself)
        self.store = os.path.join(self.dir, "payguard.db")
        named = "--store" in extra or (isinstance(conf, dict) and "store" in conf)
        if os.environ.get("PAYGUARD_STORE") and not named and serve_takes_store():
            self.store = storeq.fresh_store("serve", self.store)
            args += ["--store", self.store]
        self.out = open(os.path.join(self.dir, "daemon.log"), "w+")
        self.proc = subprocess.Popen(args, stdout=self.out, stderr=subprocess.STDOUT)
        self.token = None
        deadline = time.time() + 30
        while not os.path.exists(self.portfile):
            if self.proc.poll() is not None:
                raise AssertionError("daemon exited early (%d): %s" % (self.proc.returncode, self.log()))
            if time.time() > deadline:
                raise AssertionError("daemon did not publish its port: " + self.log())
            time.sleep(0.05)
        self.port = int(open(self.portfile).read())
        self.base = "http://127.0.0.1:%d" % self.port

    @property
    def engine(self):
        """The daemon's store engine as /api/cluster names it."""
        return "postgres" if storeq.is_postgres(self.store) else "sqlite"

    @property
    def overlays(self):
        """Where the daemon's upgrade jobs write overlays: on PostgreSQL the
        daemon is a cluster node and they go to the shared image folder
        (docs/cluster.md), on SQLite to DIR/overlays."""
        sub = ("images", "overlays") if self.engine == "postgres" else ("overlays",)
        return os.path.join(self.dir, *sub)

    def rows(self, sql):
        """Rows of sql on the daemon's store (either engine), typed."""
        return storeq.rows(self.store, sql)

    def log(self):
        self.out.flush()
        with open(os.path.join(self.dir, "daemon.log")) as f:
            return f.read()

    def request(self, method, path, body=None, headers=None, raw=False):
        h = dict(headers or {})
        if self.token and "Authorization" not in h:
            h["Authorization"] = "Bearer " + self.token
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, ctype, text = r.status, r.headers.get("Content-Type"), r.read()
        except urllib.error.HTTPError as e:
            status, ctype, text = e.code, e.headers.get("Content-Type"), e.read()
        if raw:
            return status, ctype, text
        assert ctype == "application/json", (path, ctype, text[:200])
        return status, json.loads(text)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def metric(self, name):
        s, ct, text = self.request("GET", "/metrics", raw=True)
        assert s == 200 and ct.startswith("text/plain"), (s, ct)
        for line in text.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return None

    def metrics_text(self):
        s, ct, text = self.request("GET", "/metrics", raw=True)
        assert s == 200
        return text.decode()

    def wait(self, what, fn, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = fn()
            if v:
                return v
            time.sleep(0.2)
        raise AssertionError("timed out waiting for " + what + "\n" + self.log()[-3000:])

    def stop(self):
        rc = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("daemon did not stop on SIGTERM")
        else:
            rc = self.proc.returncode
        return rc

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not alive for our purpose
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False
    return True
