"""Image upgrades from the API (issue 9): POST /api/images/{id}/upgrade
validates its body, queues a job and runs it in a one-shot worker; the job
reaches "done" with progress 1.0 and the original image is untouched. Then
SIGTERM to the daemon in the middle of a large upgrade: the daemon stops
cleanly, the job is marked "interrupted", no overlay (final or partial) is
left, and the original image is byte-identical. The overlay is checked with
`qemu-img check`."""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

from serveutil import Daemon


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def build_big(work):
    """A bare ext4 image with a dpkg database naming bigdata 1.0, and
    bigdata 2.0 as an uncompressed .deb carrying a 384 MiB file."""
    root = os.path.join(work, "root")
    os.makedirs(os.path.join(root, "var/lib/dpkg/info"))
    os.makedirs(os.path.join(root, "etc"))
    with open(os.path.join(root, "etc/os-release"), "w") as f:
        f.write('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
                'VERSION_ID="12"\nID=debian\n')
    with open(os.path.join(root, "var/lib/dpkg/status"), "w") as f:
        f.write("Package: bigdata\nStatus: install ok installed\nPriority: optional\n"
                "Section: misc\nMaintainer: t <t@example.org>\nArchitecture: all\n"
                "Version: 1.0\nDescription: big data\n test package\n\n")
    img = os.path.join(work, "big.img")
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "big", "-d", root, img, "640M"], check=True)
    pkg = os.path.join(work, "pkg")
    os.makedirs(os.path.join(pkg, "DEBIAN"))
    os.makedirs(os.path.join(pkg, "usr/share/bigdata"))
    with open(os.path.join(pkg, "DEBIAN/control"), "w") as f:
        f.write("Package: bigdata\nVersion: 2.0\nArchitecture: all\n"
                "Maintainer: t <t@example.org>\nDescription: big data\n test package\n")
    with open(os.path.join(pkg, "usr/share/bigdata/blob"), "wb") as f:
        for _ in range(384):
            f.write(os.urandom(1 << 20))
    deb = os.path.join(work, "bigdata_2.0_all.deb")
    subprocess.run(["dpkg-deb", "-Znone", "--root-owner-group", "--build", pkg, deb],
                   check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(pkg)
    return img, deb


def job_of(d, job):
    s, jobs = d.get("/api/images/jobs")
    check(s == 200, jobs)
    return next((j for j in jobs if j["id"] == job), None)


def part_fix(d):
    imgs = d.wait("the demo images", lambda: (lambda v: v if len(v) >= 2 else None)(d.get("/api/images")[1]), 120)
    img = next(i for i in imgs if i["path"].endswith("/image-demo/demo-disk.img"))
    s, pk = d.get("/api/images/%d/packages" % img["id"])
    check(s == 200 and any(p["name"] == "demo-tool" and p["version"] == "1.0-1" for p in pk), pk)
    s, v = d.get("/api/images/%d" % img["id"])
    check(s == 200 and v["id"] == img["id"], v)
    before = sha256(img["path"])
    path = "/api/images/%d/upgrade" % img["id"]
    for body, code, word in [
        (b'{"fix": true', 400, "malformed JSON"),
        (b'[]', 400, "object"),
        (b'{}', 400, "either"),
        (b'{"fix": true, "packages": ["a.deb"]}', 400, "either"),
        (b'{"fix": "yes"}', 400, "fix"),
        (b'{"packages": ["../../etc/passwd.deb"]}', 400, "no path"),
        (b'{"packages": [".hidden.deb"]}', 400, "no path"),
        (b'{"packages": ["x.rpm"]}', 400, "no path"),
        (b'{"packages": []}', 400, "packages"),
        (b'{"fix": true, "x": 1}', 400, "unknown field"),
        (b'{"packages": ["' + b"a" * 5000 + b'.deb"]}', 413, "larger"),
    ]:
        s, v = d.request("POST", path, body)
        check(s == code and word in v["error"]["message"], (body[:50], s, v))
    s, v = d.request("POST", "/api/images/999999/upgrade", {"fix": True})
    check(s == 404, v)
    s, v = d.get(path)
    check(s == 405, v)
    s, v = d.get("/api/images/999999/packages")
    check(s == 404, v)

    s, v = d.request("POST", path, {"fix": True})
    check(s == 202 and v["state"] == "queued" and v["image_id"] == img["id"], v)
    job = v["job"]
    j = d.wait("the fix job to finish",
               lambda: (lambda j: j if j and j["state"] not in ("queued", "running") else None)(job_of(d, job)), 120)
    check(j["state"] == "done" and j["progress"] == 1.0, j)
    check(sha256(img["path"]) == before, "the original image changed")
    ov = j["overlay"]
    check(ov.startswith(d.overlays + os.sep) and os.path.exists(ov), j)
    r = subprocess.run(["qemu-img", "check", ov], capture_output=True, text=True)
    check(r.returncode == 0, r.stdout + r.stderr)

    # a package that is not in the repository: the job fails with a message
    s, v = d.request("POST", path, {"packages": ["missing_1.0_all.deb"]})
    check(s == 202, v)
    j = d.wait("the failing job", lambda: (lambda j: j if j and j["state"] not in ("queued", "running") else None)(job_of(d, v["job"])), 60)
    check(j["state"] == "failed" and "missing_1.0_all.deb" in (j["log"] or ""), j)
    # /metrics counts the store at most once a second (issue 13): wait for it
    d.wait("the done job in /metrics",
           lambda: (d.metric('payguard_image_upgrades{state="done"}') or 0) >= 1, 10)


def part_sigterm(d, work):
    img, deb = build_big(work)
    shutil.copy(deb, os.path.join(d.dir, "repo"))
    # moved in whole, as an operator would: the image service scans it
    tmp = os.path.join(d.dir, "big.img.tmp")
    shutil.copy(img, tmp)
    dst = os.path.join(d.dir, "images", "big.img")
    os.rename(tmp, dst)
    before = sha256(dst)
    big = d.wait("the big image in the inventory",
                 lambda: next((i for i in d.get("/api/images")[1] if i["path"] == dst), None), 120)
    s, v = d.request("POST", "/api/images/%d/upgrade" % big["id"],
                     {"packages": ["bigdata_2.0_all.deb"]})
    check(s == 202, v)
    job = v["job"]
    j = d.wait("the big upgrade under way",
               lambda: (lambda j: j if j and j["state"] == "running" and (j["progress"] or 0) > 0 else None)(job_of(d, job)), 60)
    check(j["progress"] < 1.0, j)
    t0 = time.time()
    rc = d.stop()
    check(rc == 0, "daemon exit %s: %s" % (rc, d.log()[-2000:]))
    print("SIGTERM at progress %.2f; daemon stopped in %.2f s" % (j["progress"], time.time() - t0))
    state, progress = d.rows("SELECT state, progress FROM image_job WHERE id = %d" % int(job))[0]
    check(state == "interrupted", (state, progress))
    check(sha256(dst) == before, "the original image changed")
    left = [f for f in os.listdir(d.overlays) if "job%d." % job in f]
    check(left == [], left)


def main():
    work = tempfile.mkdtemp(prefix="pg-serve-upgrade-")
    d = Daemon()
    try:
        part_fix(d)
        part_sigterm(d, work)
        print("serve upgrades: ok")
    finally:
        d.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
