"""The image area on the PostgreSQL engine (issue 14): the same verbs (scan,
list, show, advisories import, findings, queue, upgrade --job and --fix,
jobs, commit, rollback) once on a SQLite file and once on the PostgreSQL
server of the CTest fixture (tests/fixtures/postgres.sh), in a database of
its own. Every answer must be the same on both engines once timestamps and
each run's own folder are set aside; the PostgreSQL rows are read back with
psql, the server's own client. The image, package and advisory come from
`payguard image demo --dir` (mkfs.ext4 -d, dpkg-deb --build); the upgraded
overlays are checked with qemu-img check, and the original must stay
byte-identical."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

PAYGUARD = os.environ["PAYGUARD"]
state = os.path.join(os.environ["PG_BUILD_DIR"], "postgres-fixture", "postgres.url")
base_url = open(state).read().strip()
q = urllib.parse.parse_qs(urllib.parse.urlparse(base_url).query)
host, user = q["host"][0], q["user"][0]


def check(cond, msg):
    if not cond:
        print("FAIL: " + msg, file=sys.stderr)
        sys.exit(1)


def psql(db, sql):
    p = subprocess.run(["psql", "-X", "-A", "-t", "-F", "|", "-h", host, "-U", user, "-d", db, "-c", sql],
                       capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, "psql %s: %s" % (sql, p.stderr))
    return [l.split("|") for l in p.stdout.splitlines() if l]


def pg(*args, ok=True, env=None):
    p = subprocess.run([PAYGUARD, "image"] + list(args), capture_output=True, text=True, timeout=300,
                       env=env)
    if ok:
        check(p.returncode == 0, "payguard image %s: exit %d\n%s%s" % (" ".join(args), p.returncode,
                                                                        p.stdout, p.stderr))
    return p


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


work = tempfile.mkdtemp(prefix="image-pg-")
env = dict(os.environ, PAYGUARD_DATA_DIR=os.path.join(work, "data"))
os.environ["PAYGUARD_DATA_DIR"] = env["PAYGUARD_DATA_DIR"]
demo = os.path.join(work, "demo")
pg("demo", "--dir", demo)
disk = os.path.join(demo, "demo-disk.img")
deb = os.path.join(demo, "demo-tool_1.0-2_amd64.deb")
osv = os.path.join(demo, "DEBIAN-DEMO-2026-0001.json")
disk_sha = sha(disk)
# several ranges and ecosystems: the Debian ordering (epochs, tildes) and
# the release match decide, as in tests/integration/image/demo.sh
multi = os.path.join(work, "multi.json")
with open(multi, "w") as f:
    json.dump([
        {"id": "DEBIAN-TEST-1", "summary": "two ranges",
         "affected": [{"package": {"ecosystem": "Debian:12", "name": "libdemo"},
                       "ranges": [{"type": "ECOSYSTEM", "events": [
                           {"introduced": "0"}, {"fixed": "1.0-1~"},
                           {"introduced": "1:0"}, {"fixed": "1:2.0"}]}]}]},
        {"id": "DEBIAN-TEST-2", "summary": "tilde boundary",
         "affected": [{"package": {"ecosystem": "Debian:12", "name": "libdemo"},
                       "ranges": [{"type": "ECOSYSTEM", "events": [
                           {"introduced": "1.0-1~"}, {"fixed": "1.0-1+b1"}]}]}]},
        {"id": "DEBIAN-TEST-3", "summary": "any release, open range",
         "affected": [{"package": {"ecosystem": "Debian", "name": "demo"},
                       "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0.9"}]}]}]},
        {"id": "OTHER-ECO", "affected": [{"package": {"ecosystem": "Debian:11", "name": "libdemo"},
                                          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]}],
        f)

TIMES = {"scanned_at", "started_at", "finished_at", "imported_at", "log"}


def norm(v, base):
    """Drops timestamps and logs; the run's own folder reads as <RUN>."""
    if isinstance(v, dict):
        return {k: norm(x, base) for k, x in v.items() if k not in TIMES}
    if isinstance(v, list):
        return [norm(x, base) for x in v]
    if isinstance(v, str):
        return v.replace(base, "<RUN>")
    return v


def session(db, base):
    """Runs the verbs against one store; returns every answer, normalised."""
    os.makedirs(base)
    repo = os.path.join(base, "repo")
    os.makedirs(repo)
    shutil.copy(deb, repo)
    j = lambda *a: json.loads(pg(*a).stdout)
    out = {}
    out["scan"] = j("scan", "--json", "--db", db, disk)
    out["import"] = pg("advisories", "--db", db, "import", osv, multi).stdout
    out["list"] = j("list", "--json", "--db", db)
    out["show"] = j("show", "--json", "--db", db, "1")
    out["findings"] = j("findings", "--json", "--db", db)
    out["findings1"] = j("findings", "--json", "--db", db, "1")
    # by sha256 prefix, as the CLI allows
    out["show_sha"] = j("show", "--json", "--db", db, out["list"][0]["sha256"][:12])["id"]
    queued = j("queue", "--json", "--db", db, disk)
    out["queued"] = queued
    out["upgrade_job"] = j("upgrade", "--json", "--db", db, "--job", str(queued["job"]), "--deb", deb,
                           "--output", os.path.join(base, "job.qcow2"))
    # a job taken once is not taken again
    again = pg("upgrade", "--db", db, "--job", str(queued["job"]), "--deb", deb,
               "--output", os.path.join(base, "again.qcow2"), ok=False)
    out["again"] = (again.returncode, "not queued" in again.stderr)
    out["upgrade_fix"] = j("upgrade", "--json", "--db", db, "--fix", "--repo", repo,
                           "--output", os.path.join(base, "fix.qcow2"), "1")
    for ov in ("job.qcow2", "fix.qcow2"):
        r = subprocess.run(["qemu-img", "check", os.path.join(base, ov)], capture_output=True)
        check(r.returncode == 0, "qemu-img check %s" % ov)
    out["scan_fix"] = j("scan", "--json", "--db", db, "--backing-dir", demo, os.path.join(base, "fix.qcow2"))
    out["findings_fix"] = j("findings", "--json", "--db", db, str(out["scan_fix"][0]["id"]))
    out["commit"] = j("commit", "--json", "--db", db, "--output", os.path.join(base, "flat.img"),
                      str(queued["job"]))
    out["rollback"] = pg("rollback", "--db", db, str(out["upgrade_fix"]["job"])).returncode
    out["jobs"] = j("jobs", "--json", "--db", db)
    out["list_end"] = j("list", "--json", "--db", db)
    bad = pg("show", "--db", db, "999", ok=False)
    out["missing"] = (bad.returncode, "no image '999'" in bad.stderr)
    check(sha(disk) == disk_sha, "the original image changed")
    out = norm(out, base)
    # an overlay's bytes hold the time it was written (ext4 inode times)
    for img in out["scan_fix"] + out["list_end"]:
        if img["path"].startswith("<RUN>/"):
            img.pop("sha256", None)
    return out


lite = session(os.path.join(work, "lite.db"), os.path.join(work, "run-lite"))

dbname = "image_pgtest"
psql("payguard", "DROP DATABASE IF EXISTS %s" % dbname)
# byte order for text as SQLite compares (docs/image.md)
psql("payguard", "CREATE DATABASE %s TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'" % dbname)
pg_url = "postgresql:///%s?host=%s&user=%s" % (dbname, host, user)
post = session(pg_url, os.path.join(work, "run-pg"))

# the answers must not be trivially equal: the story happened on both
check(len(lite["findings1"]) >= 3, "too few findings on SQLite: %s" % lite["findings1"])
got = sorted((x["package"], x["advisory"]) for x in lite["findings1"])
check(("demo-tool", "DEBIAN-DEMO-2026-0001") in got and ("libdemo1", "DEBIAN-TEST-2") in got
      and ("libdemo1", "DEBIAN-TEST-1") not in got and all(a != "OTHER-ECO" for _, a in got),
      "findings on SQLite: %s" % got)
check(not any(x["advisory"] == "DEBIAN-DEMO-2026-0001" for x in lite["findings_fix"]),
      "--fix overlay still affected")
check(lite["again"] == (lite["again"][0], True) and lite["again"][0] != 0, "job taken twice: %s" % (lite["again"],))
check(lite["missing"][0] != 0 and lite["missing"][1], "unknown image on SQLite")
states = sorted(x["state"] for x in lite["jobs"])
check(states == ["committed", "rolledback"], "job states: %s" % states)

for k in lite:
    if lite[k] != post[k]:
        print("SQLite:     %s" % json.dumps(lite[k], sort_keys=True)[:3000], file=sys.stderr)
        print("PostgreSQL: %s" % json.dumps(post[k], sort_keys=True)[:3000], file=sys.stderr)
        check(False, "'%s' differs between SQLite and PostgreSQL" % k)

# what PostgreSQL holds, read with psql
rows = psql(dbname, "SELECT count(*) FROM image_package WHERE image_id = 1")
check(int(rows[0][0]) == len(lite["show"]["packages"]), "packages in PostgreSQL: %s" % rows)
rows = psql(dbname, "SELECT state FROM image_job ORDER BY id")
check([r[0] for r in rows] == [x["state"] for x in lite["jobs"]], "jobs in PostgreSQL: %s" % rows)
rows = psql(dbname, "SELECT version FROM pg_schema WHERE area = 'image'")
check(rows == [["6"]], "image schema version in PostgreSQL: %s" % rows)
psql("payguard", "DROP DATABASE IF EXISTS %s" % dbname)
shutil.rmtree(work)
print("image on PostgreSQL: %d answers identical to SQLite (%d findings, %d jobs)"
      % (len(lite), len(lite["findings"]), len(lite["jobs"])))
