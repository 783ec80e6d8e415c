"""Image schema v6 upgrade path (issue 15): a store written before
image_finding_state existed (image schema v5, made here by dropping the v6
table and setting the recorded version back, which is what the previous
release left: v1..v5 are unchanged) opens with the new binary, which adds
the table and keeps the stored images, packages and advisories. Opening
emits nothing; the first sync that covers an image (its rescan, or an
advisory import for every image) reports each of its existing findings
once as finding_found; later no-ops emit nothing. On SQLite and, with a
fixture URL argument, on PostgreSQL.

usage: test_finding_upgrade.py [POSTGRES_FIXTURE_URL_FILE]"""
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import urllib.parse

PAYGUARD = os.environ["PAYGUARD"]
here = os.path.dirname(os.path.abspath(__file__))
OUTBOX = os.path.join(here, "..", "events", "outbox.py")
DOWNGRADE = ("DROP TABLE image_finding_state;"
             " UPDATE pg_schema SET version = 5 WHERE area = 'image';")


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
    return [tuple(line.split(" ", 2)[:2]) for line in p.stdout.splitlines()]


def sql(store, q):
    """Runs q on the store; returns the first column of the rows as text."""
    if store.startswith("postgresql:"):
        p = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", store,
                            "-c", q], capture_output=True, text=True, timeout=60)
        check(p.returncode == 0, "psql %s: %s" % (q, p.stderr))
        return [line for line in p.stdout.splitlines() if line]
    db = sqlite3.connect(store)
    try:
        if ";" in q.strip().rstrip(";"):
            db.executescript(q)
            return []
        return [str(r[0]) for r in db.execute(q).fetchall()]
    finally:
        db.commit()
        db.close()


work = tempfile.mkdtemp(prefix="image-up-")
os.environ["PAYGUARD_DATA_DIR"] = os.path.join(work, "data")
try:
    if len(sys.argv) > 1:
        base = open(sys.argv[1]).read().strip()
        q = urllib.parse.parse_qs(urllib.parse.urlparse(base).query)
        host, user = q["host"][0], q["user"][0]
        adm = ["psql", "-X", "-q", "-h", host, "-U", user, "-d", "payguard", "-c"]
        subprocess.run(adm + ["DROP DATABASE IF EXISTS image_uptest"], check=True, timeout=60)
        subprocess.run(adm + ["CREATE DATABASE image_uptest"], check=True, timeout=60)
        store = "postgresql:///image_uptest?host=%s&user=%s" % (host, user)
    else:
        store = os.path.join(work, "store.db")
    demo = os.path.join(work, "demo")
    pg("demo", "--dir", demo)
    imgs = [os.path.join(work, "a.raw"), os.path.join(work, "b.raw")]
    for img in imgs:
        shutil.copy(os.path.join(demo, "demo-disk.img"), img)
        pg("scan", "--db", store, img)
    osv = os.path.join(demo, "DEBIAN-DEMO-2026-0001.json")
    pg("advisories", "--db", store, "import", osv)
    check(len(outbox(store)) == 2, "setup: %s" % outbox(store))

    # back to the previous release's schema, with its data and no finding events
    sql(store, DOWNGRADE)
    sql(store, "DELETE FROM event_outbox")
    check(sql(store, "SELECT version FROM pg_schema WHERE area = 'image'") == ["5"], "downgrade")

    # opening migrates to v6 and keeps the data; reading findings emits nothing
    out = pg("findings", "--db", store)
    check(out.count("DEBIAN-DEMO-2026-0001") == 2, "findings after the upgrade:\n" + out)
    check(sql(store, "SELECT version FROM pg_schema WHERE area = 'image'") == ["6"],
          "image schema not at v6 after opening")
    check(sql(store, "SELECT count(*) FROM image_finding_state") == ["0"], "state not empty")
    check(outbox(store) == [], "opening emitted %s" % outbox(store))
    print("ok: a v5 store opens as v6 with its images and findings")

    # the first rescan of image 1 reports its existing finding once; image 2 untouched
    pg("scan", "--db", store, imgs[0])
    check(outbox(store) == [("payguard.image.finding_found", "image-1")],
          "first rescan: %s" % outbox(store))
    pg("scan", "--db", store, imgs[0])
    check(len(outbox(store)) == 1, "second rescan: %s" % outbox(store))
    # an advisory import covers every image: image 2's finding now, image 1's not again
    pg("advisories", "--db", store, "import", osv)
    check(outbox(store) == [("payguard.image.finding_found", "image-1"),
                            ("payguard.image.finding_found", "image-2")],
          "import after the upgrade: %s" % outbox(store))
    pg("advisories", "--db", store, "import", osv)
    pg("scan", "--db", store, imgs[1])
    check(len(outbox(store)) == 2, "no-ops after the upgrade: %s" % outbox(store))
    print("ok: existing findings reported once after the upgrade, then nothing")
finally:
    shutil.rmtree(work, ignore_errors=True)
