"""Helpers for the event tests (issue 15): a private data directory, the
store URL (a SQLite file, or $PAYGUARD_STORE on the PostgreSQL pass), the
NATS fixture's URLs, and the npm `nats` consumer installed from its lock
file. Every process started here is stopped here."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

PAYGUARD = os.environ.get("PAYGUARD", "payguard")
HERE = os.path.dirname(os.path.abspath(__file__))


def check(cond, what):
    if not cond:
        print("FAIL:", what, flush=True)
        sys.exit(1)
    print("ok:", what, flush=True)


class Env:
    def __init__(self, name):
        os.umask(0o077)
        self.dir = tempfile.mkdtemp(prefix="pg-events-%s-" % name)
        self.data = os.path.join(self.dir, "data")
        os.mkdir(self.data, 0o700)
        self.store = os.environ.get("PAYGUARD_STORE") or os.path.join(self.data, "payguard.db")
        self.env = dict(os.environ, PAYGUARD_DATA_DIR=self.data, PAYGUARD_LOG="info")

    def run(self, *args, check_rc=True, timeout=120):
        p = subprocess.run([PAYGUARD, "events", *args, "--db", self.store] if args[0] in ("emit", "relay")
                           else [PAYGUARD, "events", *args], capture_output=True, text=True,
                           env=self.env, timeout=timeout)
        if check_rc and p.returncode != 0:
            print(p.stdout, p.stderr, file=sys.stderr)
            raise SystemExit("FAIL: payguard events %s exited %d" % (args[0], p.returncode))
        return p

    def popen(self, *args, **kw):
        return subprocess.Popen([PAYGUARD, "events", *args, "--db", self.store], env=self.env, **kw)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def nats_urls():
    state = os.environ.get("PG_NATS_STATE") or os.path.join(os.environ["PG_BUILD_DIR"], "nats-fixture")
    with open(os.path.join(state, "nats.urls")) as f:
        return f.read().strip()


def npm_consumer():
    """The directory holding consume.mjs beside node_modules/nats."""
    d = os.path.join(os.environ.get("PG_BUILD_DIR", tempfile.gettempdir()), "events-npm")
    os.makedirs(d, exist_ok=True)
    for f in ("package.json", "package-lock.json"):
        shutil.copy(os.path.join(HERE, "npm", f), d)
    shutil.copy(os.path.join(HERE, "consume.mjs"), d)
    if not os.path.exists(os.path.join(d, "node_modules", "nats", "package.json")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=d, check=True,
                       stdout=subprocess.DEVNULL)
    return d


def consume(urls, stream="PAYGUARD", delete=False):
    d = npm_consumer()
    args = ["node", os.path.join(d, "consume.mjs"), urls, stream] + (["--delete"] if delete else [])
    p = subprocess.run(args, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        print(p.stdout, p.stderr, file=sys.stderr)
        raise SystemExit("FAIL: the npm nats consumer exited %d" % p.returncode)
    return json.loads(p.stdout)
