"""Issue 13 item 3 in the daemon: the image worker watches DIR/images with
the same backing-file rule as `payguard image scan`. A qcow2 whose backing
file is /etc/shadow, or a disk in another folder, is refused (not in
/api/images); serve.json's image_backing_dirs names folders that are
allowed too, and bad values are refused at start with the key named."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from serveutil import PAYGUARD, Daemon


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def images(d):
    s, body = d.get("/api/images")
    check(s == 200, (s, body))
    rows = body if isinstance(body, list) else body.get("images", [])
    return {os.path.basename(r["path"]): r for r in rows}


def run(tmp, conf):
    """A daemon whose images folder holds ok.qcow2 (backing file in
    tmp/bases) and shadow.qcow2 (backing file /etc/shadow); returns the
    images it stored once it has seen both."""
    d = Daemon(period_ms=None, conf=conf, demo=False)
    try:
        imgdir = os.path.join(d.dir, "images")
        d.wait("the images folder", lambda: os.path.isdir(imgdir), 30)
        time.sleep(0.5)  # the watcher is set up right after the folder
        for name, backing in (("shadow.qcow2", "/etc/shadow"),
                              ("ok.qcow2", os.path.join(tmp, "bases", "disk.img"))):
            # made beside the folder and moved in whole, as images are dropped
            tmpimg = os.path.join(d.dir, name)
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", backing,
                            "-F", "raw", tmpimg, "64M"], check=True)
            os.rename(tmpimg, os.path.join(imgdir, name))
        d.wait("the watcher to refuse shadow.qcow2", lambda: "shadow.qcow2" in d.log(), 30)
        d.wait("the watcher to take ok.qcow2", lambda: "ok.qcow2" in d.log() or
               "ok.qcow2" in images(d), 30)
        time.sleep(0.5)
        got = images(d)
        log = d.log()
        check(d.stop() == 0, "clean stop")
        return got, log
    finally:
        d.cleanup()


def main():
    with tempfile.TemporaryDirectory(prefix="pg-serve-backing-") as tmp:
        subprocess.run([PAYGUARD, "image", "demo", "--dir", os.path.join(tmp, "demo")],
                       check=True, capture_output=True, env=dict(os.environ, PAYGUARD_DATA_DIR=tmp))
        os.mkdir(os.path.join(tmp, "bases"))
        shutil.copy(os.path.join(tmp, "demo", "demo-disk.img"), os.path.join(tmp, "bases", "disk.img"))

        for conf, word in [({"image_backing_dirs": "/srv"}, "image_backing_dirs"),
                           ({"image_backing_dirs": ["relative/dir"]}, "absolute path"),
                           ({"image_backing_dirs": [os.path.join(tmp, "nosuch")]}, "not a folder")]:
            d = tempfile.mkdtemp(dir=tmp)
            with open(os.path.join(d, "serve.json"), "w") as f:
                json.dump(conf, f)
            r = subprocess.run([PAYGUARD, "serve", "run", "--data", d, "--port", "0"],
                               capture_output=True, text=True, timeout=30)
            check(r.returncode == 3 and word in r.stderr, (conf, r.returncode, r.stderr))

        # default: only each image's own folder
        got, log = run(tmp, None)
        check("shadow.qcow2" not in got and "ok.qcow2" not in got, got)
        check("outside the image's folder" in log, log[-2000:])
        # image_backing_dirs allows tmp/bases, and nothing else
        got, log = run(tmp, {"image_backing_dirs": [os.path.join(tmp, "bases")]})
        check("ok.qcow2" in got and "shadow.qcow2" not in got, got)
        check(got["ok.qcow2"]["packages"] == 3, got["ok.qcow2"])
    print("serve image backing: /etc/shadow refused, image_backing_dirs allows its folders only")


if __name__ == "__main__":
    main()
