"""Live load collection in the daemon (issue 9, seed 3): without --demo, the
load service polls the configured load_source every period and estimates
from the samples it collected. The source here is the cgroup v2 collector on
a cgroup tree laid out in a temporary folder (this machine may not let a
test create real cgroups; tests/integration/load/cgroup_test.sh tests both):
nine VMs, three busy on CPU, three reading from disk, three idle, whose
counters a thread advances as the kernel would; the estimate must find the
three groups. Also: a trace or unknown
source is refused at start, and SIGHUP switches the source."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from serveutil import Daemon, PAYGUARD


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def lay_out(root, vms):
    for vm in vms:
        d = os.path.join(root, vm)
        os.makedirs(d)
        for name, text in [("cpu.stat", "usage_usec 0\n"), ("cpu.max", "max 100000\n"),
                           ("memory.current", "268435456\n"), ("memory.max", "1073741824\n"),
                           ("io.stat", "8:0 rbytes=0 wbytes=0 rios=0 wios=0 dbytes=0 dios=0\n")]:
            with open(os.path.join(d, name), "w") as f:
                f.write(text)


def put(path, text):
    with open(path + ".new", "w") as f:
        f.write(text)
    os.rename(path + ".new", path)


CPU = ["vm-cpu1", "vm-cpu2", "vm-cpu3"]
DISK = ["vm-disk1", "vm-disk2", "vm-disk3"]
IDLE = ["vm-idle1", "vm-idle2", "vm-idle3"]


def advance(root, stop):
    """CPU VMs burn 0.8 CPU; disk VMs read 20 MiB/s with a little CPU; idle ones nothing."""
    t0 = time.time()
    while not stop.is_set():
        t = time.time() - t0
        for vm in CPU:
            put(os.path.join(root, vm, "cpu.stat"), "usage_usec %d\n" % int(t * 800000))
        for vm in DISK:
            put(os.path.join(root, vm, "io.stat"),
                "8:0 rbytes=%d wbytes=0 rios=%d wios=0 dbytes=0 dios=0\n" % (int(t * 20 * (1 << 20)), int(t * 100)))
            put(os.path.join(root, vm, "cpu.stat"), "usage_usec %d\n" % int(t * 50000))
        time.sleep(0.05)


def main():
    work = tempfile.mkdtemp(prefix="pg-serve-load-")
    root = os.path.join(work, "machine.slice")
    vms = CPU + DISK + IDLE
    lay_out(root, vms)
    stop = threading.Event()
    th = threading.Thread(target=advance, args=(root, stop), daemon=True)
    th.start()

    # refused at start, with the key named
    for spec, word in [("bitbrains:/tmp", "trace"), ("nosuch:x", "unknown collector")]:
        d0 = tempfile.mkdtemp(prefix="pg-serve-load-bad-")
        with open(os.path.join(d0, "serve.json"), "w") as f:
            json.dump({"load_source": spec}, f)
        r = subprocess.run([PAYGUARD, "serve", "--data", d0, "--port", "0"], capture_output=True,
                           text=True, timeout=30)
        check(r.returncode == 3 and word in r.stderr and "load_source" in r.stderr, (spec, r.returncode, r.stderr))
        r = subprocess.run([PAYGUARD, "serve", "--data", d0, "--port", "0", "--load-source", spec],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 2 and word in r.stderr, (spec, r.returncode, r.stderr))
        shutil.rmtree(d0, ignore_errors=True)

    d = Daemon(demo=False, period_ms=300, conf={"load_source": "cgroup:" + root})
    try:
        def est():
            s, v = d.get("/api/load/vms")
            return v if s == 200 and len(v["vms"]) == 9 and min(x["samples"] for x in v["vms"]) >= 8 else None
        v = d.wait("an estimate over the 9 collected VMs", est, 60)
        by = {x["name"]: x for x in v["vms"]}
        check(set(by) == set(vms), by)
        # no type is shared by two groups. A group may take two of the k2
        # types: the thread that advances the counters runs late under load,
        # so one CPU VM's rate can stray from its twins' and k-means gives
        # it a type of its own
        types = [{by[x]["type"] for x in g} for g in (CPU, DISK, IDLE)]
        check(all(not (a & b) for a, b in ((types[0], types[1]), (types[0], types[2]), (types[1], types[2]))), by)
        check(min(by[x]["features"][0] for x in CPU) > max(by[x]["features"][0] for x in IDLE), by)
        check(min(by[x]["features"][2] for x in DISK) > max(by[x]["features"][2] for x in IDLE), by)
        check(min(by[x]["load"] for x in CPU) > max(by[x]["load"] for x in IDLE), by)
        s, h = d.get("/api/load/history?vm=vm-cpu1")
        check(s == 200 and len(h["history"]) >= 1, h)
        # the samples are in the store too (load area's table)
        n = d.rows("SELECT COUNT(DISTINCT vm) FROM load_samples")[0][0]
        check(n == 9, "%s VMs in the store" % n)
        s, v = d.get("/api/pos/terminals")
        check(s == 200 and v == [], "no demo data without --demo: %s" % v)

        # SIGHUP with a new source: the load worker restarts on purpose onto it
        root2 = os.path.join(work, "other.slice")
        lay_out(root2, ["vm-new1", "vm-new2"])
        with open(os.path.join(d.dir, "serve.json"), "w") as f:
            json.dump({"load_source": "cgroup:" + root2}, f)
        d.proc.send_signal(1)
        d.wait("an estimate over the new source's VMs",
               lambda: (lambda s, v: s == 200 and {x["name"] for x in v["vms"]} == {"vm-new1", "vm-new2"})(*d.get("/api/load/vms")), 60)
        s, svcs = d.get("/api/services")
        check(next(x for x in svcs if x["name"] == "load")["restarts"] == 0, svcs)
        rc = d.stop()
        check(rc == 0, d.log()[-2000:])
        print("serve load source: ok")
    finally:
        stop.set()
        d.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
