"""Image finding events (issue 15): the findings of each image are kept in
image_finding_state and every change of them writes payguard.image.
finding_found / finding_fixed into the outbox in the same transaction, on
SQLite and (with a fixture URL argument) on PostgreSQL. Steps: a scan with
no advisories emits nothing; importing the demo advisory emits one
finding_found; a rescan and a re-import of the same advisory emit nothing;
`upgrade --fix`, `commit` and a rescan of the committed image at the same
path emit one finding_fixed with the new version; an advisory import whose
fixed version is already installed emits nothing for that image.

usage: test_finding_events.py [POSTGRES_FIXTURE_URL_FILE]"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

PAYGUARD = os.environ["PAYGUARD"]
here = os.path.dirname(os.path.abspath(__file__))
OUTBOX = os.path.join(here, "..", "events", "outbox.py")


def check(cond, msg):
    if not cond:
        print("FAIL: " + msg, file=sys.stderr)
        sys.exit(1)


def pg(*args):
    p = subprocess.run([PAYGUARD, "image"] + list(args), capture_output=True, text=True, timeout=300)
    check(p.returncode == 0, "payguard image %s: exit %d\n%s%s" % (" ".join(args), p.returncode,
                                                                    p.stdout, p.stderr))
    return p.stdout


def outbox(store):
    p = subprocess.run(["/usr/bin/python3", OUTBOX, store, "payguard.image.finding"],
                       capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, "outbox.py: %s" % p.stderr)
    out = []
    for line in p.stdout.splitlines():
        typ, subj, data = line.split(" ", 2)
        out.append((typ, subj, json.loads(data)))
    return out


work = tempfile.mkdtemp(prefix="image-ev-")
os.environ["PAYGUARD_DATA_DIR"] = os.path.join(work, "data")
try:
    if len(sys.argv) > 1:
        base = open(sys.argv[1]).read().strip()
        q = urllib.parse.parse_qs(urllib.parse.urlparse(base).query)
        host, user = q["host"][0], q["user"][0]
        adm = ["psql", "-X", "-q", "-h", host, "-U", user, "-d", "payguard", "-c"]
        subprocess.run(adm + ["DROP DATABASE IF EXISTS image_evtest"], check=True, timeout=60)
        subprocess.run(adm + ["CREATE DATABASE image_evtest"], check=True, timeout=60)
        store = "postgresql:///image_evtest?host=%s&user=%s" % (host, user)
    else:
        store = os.path.join(work, "store.db")
    demo = os.path.join(work, "demo")
    pg("demo", "--dir", demo)
    img = os.path.join(work, "img.raw")
    shutil.copy(os.path.join(demo, "demo-disk.img"), img)
    osv = os.path.join(demo, "DEBIAN-DEMO-2026-0001.json")

    pg("scan", "--db", store, img)
    check(outbox(store) == [], "a scan without advisories emitted %s" % outbox(store))
    pg("advisories", "--db", store, "import", osv)
    ev = outbox(store)
    check(len(ev) == 1, "import: want one finding_found, got %s" % ev)
    typ, subj, d = ev[0]
    check(typ == "payguard.image.finding_found" and subj == "image-1", "import: %s %s" % (typ, subj))
    check(d["advisory"] == "DEBIAN-DEMO-2026-0001" and d["package"] == "demo-tool"
          and d["version"] == "1.0-1" and d["fixed"] == "1.0-2" and d["image_id"] == 1
          and d["image"] == img and d["source"] == "demo", "finding_found data: %s" % d)
    st = outbox(store)
    # no-ops: the same image rescanned, the same advisory imported again
    pg("scan", "--db", store, img)
    pg("advisories", "--db", store, "import", osv)
    check(outbox(store) == st, "a rescan / re-import emitted %s" % outbox(store)[len(st):])
    print("ok: finding_found on import, nothing on a rescan or re-import")

    # fixed: upgrade --fix, commit, the committed image rescanned at the same path
    repo = os.path.join(work, "repo")
    os.makedirs(repo)
    shutil.copy(os.path.join(demo, "demo-tool_1.0-2_amd64.deb"), repo)
    up = json.loads(pg("upgrade", "--json", "--db", store, "--fix", "--repo", repo, "--output",
                       os.path.join(work, "fix.qcow2"), img))
    check(outbox(store) == st, "the upgrade alone changed findings: %s" % outbox(store)[len(st):])
    flat = os.path.join(work, "flat.img")
    pg("commit", "--db", store, "--output", flat, str(up["job"]))
    shutil.copy(flat, img)
    pg("scan", "--db", store, img)
    ev = outbox(store)[len(st):]
    check(len(ev) == 1, "rescan after the fix: want one finding_fixed, got %s" % ev)
    typ, subj, d = ev[0]
    check(typ == "payguard.image.finding_fixed" and subj == "image-1", "fixed: %s %s" % (typ, subj))
    check(d["advisory"] == "DEBIAN-DEMO-2026-0001" and d["package"] == "demo-tool"
          and d["was_version"] == "1.0-1" and d["version"] == "1.0-2" and d["image_id"] == 1
          and d["since"], "finding_fixed data: %s" % d)
    st = outbox(store)
    pg("scan", "--db", store, img)
    pg("advisories", "--db", store, "import", osv)
    check(outbox(store) == st, "after the fix a rescan emitted %s" % outbox(store)[len(st):])
    print("ok: finding_fixed after upgrade, commit and rescan; nothing after")
finally:
    shutil.rmtree(work, ignore_errors=True)
