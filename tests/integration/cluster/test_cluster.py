"""Cluster test (issue 14 acceptance, docs/cluster.md): PostgreSQL and three
`payguard serve --store URL --node nX` daemons on loopback, each with its own
data directory and ports the daemons pick (--port 0 --port-file). The three
share a live load source (a cgroup v2 tree in a temporary folder whose
counters a thread advances, as tests/integration/serve/test_loadsource.py
does) and the POS cells and merchants imported once into the store. ISO 8583
traffic (`payguard pos load`, the templates of tests/integration/pos/posutil.py)
goes to all three nodes at once.

During the traffic the node leading the load estimator is killed outright
(SIGKILL to its whole process group, as a machine that dies). Then:
- another node leads the load estimator within 10 s (seen in /api/cluster),
  runs the load worker and new estimates appear in the shared store;
- the killed node shows "down" on the others;
- every transaction a terminal got an answer for (not 96) is stored exactly
  once with its decision and response code; no two open alerts share a
  terminal and reason;
- the killed node, started again with its name, rejoins (shows "up" on the
  others with its new pid) and serves POS traffic again;
- exactly one node leads each singleton at every look.

A VSE made through n2's API runs on n2 (its persistent memory is on n2's
disk); every node's API lists it with its node, and a stop or start sent to
another node is forwarded to n2 and done there.

Then an image upgrade (a real GPT/ext4 image with a dpkg database and a
96 MiB package, built by tests/integration/image/helpers.sh, in an image
folder every node shares) is queued through the API; the node that took the
job is killed mid-unpack. Another node takes the job over when its lease
expires and finishes it: the job is `done` on another node with the
take-over in its log, exactly one overlay file of the job and no partial
one is left, and the original image is byte-identical.

The database is one of its own in the PostgreSQL fixture's server
(FIXTURES_REQUIRED postgres): created here, dropped at the end."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pos"))
from posutil import CELLS, MERCHANTS, scenario_message  # noqa: E402

PAYGUARD = os.environ.get("PAYGUARD", "payguard")
STATE = sys.argv[1]  # the PostgreSQL fixture's state folder
TAKEOVER_S = 10.0
ROOT = tempfile.mkdtemp(prefix="pg-cluster-test-")
os.chmod(ROOT, 0o755)


def check(cond, what):
    if not cond:
        print("FAIL:", what, flush=True)
        raise SystemExit(1)
    print("ok:", what, flush=True)


# ---- the database: one of our own in the fixture's server ----

fixture_url = open(os.path.join(STATE, "postgres.url")).read().strip()
q = urllib.parse.parse_qs(urllib.parse.urlparse(fixture_url).query)
PGHOST, PGUSER = q["host"][0], q["user"][0]
DBNAME = "cluster_%d" % os.getpid()
URL = "postgresql:///%s?host=%s&user=%s" % (DBNAME, PGHOST, PGUSER)


def psql(sql, db=None):
    p = subprocess.run(["psql", "-X", "-A", "-t", "-F", "|", "-h", PGHOST, "-U", PGUSER, "-d", db or DBNAME,
                        "-c", sql], capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, "psql %s: %s" % (sql[:60], p.stderr.strip()))
    return [l.split("|") for l in p.stdout.splitlines() if l]


def payguard(*args, input=None):
    p = subprocess.run([PAYGUARD, *args], capture_output=True, text=True, input=input, timeout=120)
    check(p.returncode == 0, "payguard %s (%s)" % (" ".join(args[:3]), p.stderr.strip()[-300:]))
    return p


# ---- a live load source every node reads ----

VMS = ["vm-cpu1", "vm-cpu2", "vm-cpu3", "vm-disk1", "vm-disk2", "vm-disk3", "vm-idle1", "vm-idle2", "vm-idle3"]
CG = os.path.join(ROOT, "machine.slice")


def put(path, text):
    with open(path + ".new", "w") as f:
        f.write(text)
    os.rename(path + ".new", path)


def lay_out():
    for vm in VMS:
        d = os.path.join(CG, vm)
        os.makedirs(d)
        for name, text in [("cpu.stat", "usage_usec 0\n"), ("cpu.max", "max 100000\n"),
                           ("memory.current", "268435456\n"), ("memory.max", "1073741824\n"),
                           ("io.stat", "8:0 rbytes=0 wbytes=0 rios=0 wios=0 dbytes=0 dios=0\n")]:
            put(os.path.join(d, name), text)


def advance(stop):
    t0 = time.time()
    while not stop.is_set():
        t = time.time() - t0
        for vm in VMS:
            if vm.startswith("vm-cpu"):
                put(os.path.join(CG, vm, "cpu.stat"), "usage_usec %d\n" % int(t * 800000))
            elif vm.startswith("vm-disk"):
                put(os.path.join(CG, vm, "io.stat"), "8:0 rbytes=%d wbytes=0 rios=%d wios=0 dbytes=0 dios=0\n"
                    % (int(t * 20 * (1 << 20)), int(t * 100)))
                put(os.path.join(CG, vm, "cpu.stat"), "usage_usec %d\n" % int(t * 50000))
        time.sleep(0.1)


# ---- the nodes ----

SHARED = os.path.join(ROOT, "shared")  # the folder every node mounts as DATA/images
REPO = os.path.join(ROOT, "repo")  # the packages upgrades take, the same on every node


def make_image():
    """A GPT disk with an ext4 root whose dpkg database lists bigdata 1.0, and bigdata 2.0 (96 MiB)."""
    os.makedirs(os.path.join(SHARED, "images"))
    os.makedirs(REPO)
    helpers = os.path.join(HERE, "..", "image", "helpers.sh")
    p = subprocess.run(["bash", "-c", '. "$0"; make_small_root "$work/root"; make_gpt_image "$work/root" "$1" 320;'
                        ' make_big_deb "$2" 96 none random; rm -f "$2.blob"', helpers,
                        os.path.join(SHARED, "images", "disk.img"), os.path.join(REPO, "big.deb")],
                       capture_output=True, text=True, timeout=300)
    check(p.returncode == 0, "a test image and a 96 MiB package (%s)" % p.stderr.strip()[-300:])


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


class Node:
    def __init__(self, name):
        self.name = name
        self.dir = os.path.join(ROOT, name)
        os.makedirs(self.dir, mode=0o700)
        # the shared image folder and package repository, as a mount would give them
        os.symlink(os.path.join(SHARED, "images"), os.path.join(self.dir, "images"))
        os.symlink(REPO, os.path.join(self.dir, "repo"))
        self.proc = None
        self.out = None

    def start(self):
        pf = os.path.join(self.dir, "http.port")
        # a killed node leaves its ports' files: never read the dead ones
        for f in (pf, os.path.join(self.dir, "run", "pos.port")):
            if os.path.exists(f):
                os.unlink(f)
        self.out = open(os.path.join(self.dir, "daemon.log"), "a")
        self.proc = subprocess.Popen(
            [PAYGUARD, "--log-level", "info", "serve", "--store", URL, "--node", self.name, "--data", self.dir,
             "--port", "0", "--port-file", pf, "--load-source", "cgroup:" + CG, "--load-period-ms", "500"],
            stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while not os.path.exists(pf):
            if self.proc.poll() is not None or time.time() > deadline:
                print(self.log()[-3000:])
                raise SystemExit("node %s did not start" % self.name)
            time.sleep(0.05)
        self.port = int(open(pf).read())
        return self

    def log(self):
        with open(os.path.join(self.dir, "daemon.log")) as f:
            return f.read()

    def get(self, path, body=None, headers=None):
        data = None if body is None else json.dumps(body).encode()
        h = dict(headers or {})
        if data:
            h["Content-Type"] = "application/json"
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), data=data, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def cluster(self):
        s, v = self.get("/api/cluster")
        if s != 200:
            check(False, "%s: GET /api/cluster answered %d" % (self.name, s))
        return v

    def pos_port(self):
        pf = os.path.join(self.dir, "run", "pos.port")
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                p = int(open(pf).read())
                if p > 0:
                    return p
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise SystemExit("node %s: no POS port" % self.name)

    def kill(self):
        """The machine dies: supervisor and workers at once."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.out:
            self.out.close()
            self.out = None


def wait(what, fn, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    check(False, "timed out (%ds) waiting for %s" % (timeout, what))


def states(view):
    return {n["name"]: n["state"] for n in view["nodes"]}


def leader(view, singleton):
    for l in view["leaders"]:
        if l["singleton"] == singleton:
            return l
    return None


def one_leader_each(nodes):
    """Every live node's services: each singleton's worker runs on at most one."""
    running = {}
    for n in nodes:
        s, svc = n.get("/api/services")
        for w in svc:
            if w["name"] in ("load", "image") and w["state"] == "running":
                running.setdefault(w["name"], []).append(n.name)
    return running


def traffic(node, stan_base, seconds, log):
    tpl = os.path.join(ROOT, "tpl.jsonl")
    if not os.path.exists(tpl):
        with open(tpl, "w") as f:
            for n in ("stay", "move2km", "move50km", "unknown", "foreign"):
                f.write(json.dumps(scenario_message(n, 0)) + "\n")
    return subprocess.Popen([PAYGUARD, "pos", "load", "--port", str(node.pos_port()), "--conns", "4",
                             "--duration-ms", str(int(seconds * 1000)), "--stan-base", str(stan_base),
                             "--log", log, "--json", tpl],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def answers(log):
    return [l.split("|") for l in open(log).read().splitlines() if l.count("|") == 3]


nodes = []
stop = threading.Event()
try:
    psql("CREATE DATABASE %s" % DBNAME, db="payguard")
    cells = os.path.join(ROOT, "cells.csv")
    merchants = os.path.join(ROOT, "merchants.csv")
    open(cells, "w").write(CELLS)
    open(merchants, "w").write(MERCHANTS)
    payguard("pos", "cells", "import", cells, "--db", URL, "--json")
    payguard("pos", "merchants", "import", merchants, "--db", URL, "--json")
    lay_out()
    threading.Thread(target=advance, args=(stop,), daemon=True).start()
    make_image()
    disk = os.path.join(SHARED, "images", "disk.img")
    disk_sha = sha256(disk)

    nodes = [Node("n1").start()]
    # the first node leads every singleton; the next ones join as standbys
    wait("n1 leads the load estimator", lambda: (leader(nodes[0].cluster(), "load") or {}).get("node") == "n1", 30)
    nodes += [Node("n2").start(), Node("n3").start()]
    for n in nodes:
        wait("%s sees three nodes up" % n.name,
             lambda n=n: states(n.cluster()) == {"n1": "up", "n2": "up", "n3": "up"}, 30)
    views = [n.cluster() for n in nodes]
    check(all(leader(v, s)["node"] == "n1" for v in views for s in ("load", "retention", "image-watch")),
          "every node's /api/cluster says n1 leads load, retention and image-watch")
    check(all(v["engine"] == "postgres" for v in views), "the cluster runs on PostgreSQL")
    wait("the load worker runs on n1 only",
         lambda: one_leader_each(nodes).get("load") == ["n1"], 30)
    svc2 = {w["name"]: w["state"] for w in nodes[1].get("/api/services")[1]}
    check(svc2.get("load") == "standby" and svc2.get("image") == "standby" and svc2.get("pos") == "running",
          "n2 runs POS and keeps load and the image watcher on standby (%s)" % svc2)
    est0 = wait("a first load estimate", lambda: (lambda r: r[0] == 200 and r[1])(nodes[1].get("/api/load/vms")), 60)
    check(len(est0["vms"]) == len(VMS), "the estimate covers the nine VMs of the live source")

    # traffic on all three, then the load leader dies mid-run
    logs = [os.path.join(ROOT, "answers-%s.log" % n.name) for n in nodes]
    loads = [traffic(n, 100000 * (i + 1), 14.0, logs[i]) for i, n in enumerate(nodes)]
    time.sleep(4.0)
    before = [len(answers(l)) for l in logs]
    check(all(b > 20 for b in before), "every node answers POS traffic before the kill (%s)" % before)
    victim = nodes[0]
    t_kill = time.time()
    kill_ms = int(t_kill * 1000)
    victim.kill()
    print("killed %s at %.3f" % (victim.name, t_kill), flush=True)
    survivors = nodes[1:]

    def moved():
        v = survivors[0].cluster()
        l = leader(v, "load")
        return l and l["node"] != victim.name and states(v).get(l["node"]) == "up" and l["node"]

    new_leader = wait("another node leads the load estimator", moved, 30)
    took = time.time() - t_kill
    check(took <= TAKEOVER_S, "the load estimator moved to %s %.1f s after the kill (<= %.0f s)"
          % (new_leader, took, TAKEOVER_S))
    nl = [n for n in survivors if n.name == new_leader][0]
    wait("the load worker runs on %s" % new_leader,
         lambda: {w["name"]: w["state"] for w in nl.get("/api/services")[1]}.get("load") == "running", 10)
    check(time.time() - t_kill <= TAKEOVER_S + 2, "... and its worker runs %.1f s after the kill"
          % (time.time() - t_kill))
    wait("retention and the image watcher moved too, in every survivor's view",
         lambda: all(leader(n.cluster(), s)["node"] in ("n2", "n3") for n in survivors
                     for s in ("retention", "image-watch")), 10)
    check(time.time() - t_kill <= TAKEOVER_S, "... within %.0f s of the kill" % TAKEOVER_S)
    est = wait("a load estimate made after the kill",
               lambda: (lambda r: r[0] == 200 and r[1]["at_ms"] > kill_ms and r[1])(survivors[1].get("/api/load/vms")),
               30)
    print("first estimate after the kill: %.1f s" % (est["at_ms"] / 1000 - t_kill), flush=True)
    wait("%s shows down on the others" % victim.name,
         lambda: all(states(n.cluster()).get(victim.name) == "down" for n in survivors), 15)
    running = one_leader_each(survivors)
    check(running.get("load") == [new_leader] and len(running.get("image", [])) == 1,
          "one load worker and one image watcher run in the cluster (%s)" % running)

    for i, ld in enumerate(loads):
        out, err = ld.communicate(timeout=120)
        print("traffic %s: %s %s" % (nodes[i].name, out.strip(), err.strip()[-200:]), flush=True)
    after = [len(answers(l)) for l in logs]
    check(after[1] > before[1] and after[2] > before[2], "the surviving nodes kept answering (%s)" % after)

    # the killed node comes back under its name and rejoins
    old_pid = [n for n in survivors[0].cluster()["nodes"] if n["name"] == victim.name][0]["pid"]
    victim.start()
    wait("%s shows up again on the others with its new pid" % victim.name,
         lambda: all((lambda x: x and x[0]["state"] == "up" and x[0]["pid"] != old_pid)(
             [m for m in n.cluster()["nodes"] if m["name"] == victim.name]) for n in survivors), 30)
    check(leader(victim.cluster(), "load")["node"] == new_leader,
          "the rejoined node does not take the load estimator back (%s leads)" % new_leader)
    rlog = os.path.join(ROOT, "answers-rejoined.log")
    out, err = traffic(victim, 700000, 2.0, rlog).communicate(timeout=60)
    check(len(answers(rlog)) > 20, "the rejoined node answers POS traffic (%d)" % len(answers(rlog)))
    logs.append(rlog)

    # ---- VSEs stay on their node; any node lists them and forwards actions ----
    vreq = {"name": "pay-c", "arena": "256K", "pmem": "64K", "applets": ["test"], "expose": {"link": "t1"}}
    owner = nodes[1]
    wait("n2's VSE hypervisor", lambda: owner.get("/api/vses")[0] == 200, 60)
    s, v = owner.get("/api/vses", vreq)
    check(s == 201 and v["vse"]["state"] == "running" and v["vse"].get("node") == owner.name,
          "a VSE made through n2's API runs on n2 (%s)" % v)
    for n in nodes:
        wait("%s lists the VSE with its node" % n.name,
             lambda n=n: [x.get("node") for x in n.get("/api/vses")[1].get("vses", []) if x["name"] == "pay-c"]
             == [owner.name], 30)
    s, v = nodes[2].get("/api/vses/pay-c", {"action": "stop"})
    check(s == 200 and v["vse"]["state"] == "stopped", "a stop sent to n3 is done on n2 (%s %s)" % (s, v))
    check([x["state"] for x in owner.get("/api/vses")[1]["vses"] if x["name"] == "pay-c"] == ["stopped"],
          "n2's hypervisor has it stopped")
    s, v = nodes[0].get("/api/vses/pay-c", {"action": "start"})
    check(s == 200 and v["vse"]["state"] == "running" and v["vse"]["pid"],
          "a start sent to n1 is done on n2 (%s %s)" % (s, v))
    check("forwarded to node n2" in nodes[2].log(), "n3's log says it forwarded the action")
    # a request another node forwarded is never forwarded again: the hypervisor refuses a VSE not its own
    s, v = nodes[2].get("/api/vses/pay-c", {"action": "stop"}, {"X-Payguard-Forwarded-By": "n1"})
    check(s == 409 and "runs on node n2" in v["error"]["message"],
          "a forwarded request is answered where it lands, not forwarded on (%s %s)" % (s, v))

    # ---- an image upgrade whose node dies mid-unpack ----
    img = wait("the image watcher scanned the shared image",
               lambda: [i for i in nodes[1].get("/api/images")[1] if i["path"].endswith("/disk.img")], 120)[0]
    s, q = nodes[2].get("/api/images/%d/upgrade" % img["id"], {"packages": ["big.deb"]})
    check(s == 202, "an upgrade queued through n3's API (%s)" % q)
    jid = q["job"]

    def job():
        return [j for j in nodes[1].get("/api/images/jobs")[1] if j["id"] == jid][0]

    j = wait("a node runs job %d past 10 %%" % jid,
             lambda: (lambda j: j["state"] == "running" and (j.get("progress") or 0) > 0.1 and j)(job()), 120)
    runner = [n for n in nodes if n.name == j["node"]][0]
    runner.kill()
    print("killed %s, which ran job %d at %.0f %%" % (runner.name, jid, 100 * j["progress"]), flush=True)
    others = [n for n in nodes if n is not runner]
    j = wait("job %d done on another node" % jid, lambda: (lambda j: j["state"] in ("done", "failed") and j)(
        [x for x in others[0].get("/api/images/jobs")[1] if x["id"] == jid][0]), 180)
    check(j["state"] == "done" and j["node"] != runner.name,
          "the upgrade finished on %s (%s)" % (j["node"], j["state"]))
    check("taken over by node %s" % j["node"] in (j.get("log") or ""), "the job's log tells the take-over")
    ovdir = os.path.join(SHARED, "images", "overlays")
    mine = [f for f in os.listdir(ovdir) if "job%d." % jid in f]
    check(mine == [os.path.basename(j["overlay"])], "exactly one overlay of the job and no partial (%s)" % mine)
    q = subprocess.run(["qemu-img", "check", j["overlay"]], capture_output=True, text=True)
    check(q.returncode == 0, "qemu-img check of the overlay (%s)" % q.stdout.strip()[-200:])
    check(sha256(disk) == disk_sha, "the original image is byte-identical")

    # the VSE's node down: an action on it is refused with the node named
    if owner.proc.poll() is None:
        owner.kill()
    rest = [n for n in nodes if n.proc.poll() is None]
    wait("n2 shows down", lambda: states(rest[0].cluster()).get(owner.name) == "down", 15)
    s, v = rest[0].get("/api/vses/pay-c", {"action": "stop"})
    check(s == 503 and "node n2, which is not up" in v["error"]["message"],
          "an action on a VSE whose node is down is 503 naming the node (%s %s)" % (s, v))

    for n in nodes:
        n.stop()

    # every answered transaction is stored exactly once
    stored = {}
    for tid, stan, rc, dec in psql("SELECT tid, stan, rc, decision FROM pos_txn"):
        stored.setdefault((tid, stan), []).append((rc, dec))
    names = {"IN_PLACE": "in_place", "MOVED": "moved", "UNDETERMINED": "undetermined"}
    total = missing = dup = wrong = 0
    for log in logs:
        for l in answers(log):
            if l[2] == "96":
                continue
            total += 1
            s = stored.get((l[0], l[1]), [])
            missing += not s
            dup += len(s) > 1
            wrong += bool(s) and (s[0][0] != l[2] or s[0][1] != names.get(l[3].split()[0], "?"))
    check(total > 200, "%d answered transactions to check" % total)
    check(missing == 0, "every answered transaction is stored (%d missing)" % missing)
    check(dup == 0, "... exactly once (%d more than once)" % dup)
    check(wrong == 0, "... with its decision and response code (%d differ)" % wrong)
    alerts = psql("SELECT tid, reason, count(*) FROM pos_alerts WHERE state = 'open' GROUP BY 1, 2")
    check(len(alerts) > 0, "the traffic opened alerts (%s)" % alerts)
    check(all(int(a[2]) == 1 for a in alerts), "no two open alerts share a terminal and reason (%s)" % alerts)
finally:
    stop.set()
    for n in nodes:
        n.stop()
    for n in nodes:
        try:
            print("---- %s log tail ----\n%s" % (n.name, n.log()[-2500:]))
        except OSError:
            pass
    subprocess.run(["psql", "-X", "-q", "-h", PGHOST, "-U", PGUSER, "-d", "payguard", "-c",
                    "DROP DATABASE IF EXISTS %s WITH (FORCE)" % DBNAME], capture_output=True, timeout=60)
    if os.environ.get("PG_KEEP") is None:
        shutil.rmtree(ROOT, ignore_errors=True)
