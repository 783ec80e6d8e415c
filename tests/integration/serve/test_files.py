"""Files of `payguard serve` (issue 13, items 2 and 4): whatever umask it is
started with, its data directory is 0700 and every file it makes there 0600;
it refuses a data directory or store others can read, with the chmod to run;
and --port-file never replaces anything but a regular file, nor follows a
symlink (a FIFO, a directory, a symlink, a character device, and /dev/null
itself inside a private mount namespace stay what they were)."""
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time

from serveutil import PAYGUARD, Daemon


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what if isinstance(what, str) else what[0], flush=True)


def run_daemon(data, *extra, timeout=60):
    """Starts the daemon expecting it to refuse; returns (rc, output)."""
    p = subprocess.Popen([PAYGUARD, "serve", "--data", data, "--port", "0", *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        return None, out
    return p.returncode, out


def kind(path):
    m = os.lstat(path).st_mode
    for name, f in (("link", stat.S_ISLNK), ("dir", stat.S_ISDIR), ("fifo", stat.S_ISFIFO),
                    ("chr", stat.S_ISCHR), ("file", stat.S_ISREG)):
        if f(m):
            return name
    return "other"


def umask_and_modes():
    old = os.umask(0)
    try:
        d = Daemon(demo=False)
    finally:
        os.umask(old)
    try:
        s, v = d.get("/api/health")
        check(s == 200, ("daemon up", s, v))
        check(d.stop() == 0, "daemon stopped")
        bad = []
        for root, dirs, files in os.walk(d.dir):
            for n in dirs:
                m = stat.S_IMODE(os.lstat(os.path.join(root, n)).st_mode)
                if m & 0o077:
                    bad.append((os.path.join(root, n), oct(m)))
            for n in files:
                p = os.path.join(root, n)
                if p == os.path.join(d.dir, "daemon.log"):  # the test's own file
                    continue
                m = stat.S_IMODE(os.lstat(p).st_mode)
                if m & 0o077:
                    bad.append((p, oct(m)))
        check(stat.S_IMODE(os.stat(d.dir).st_mode) == 0o700, "data dir 0700")
        check(os.path.exists(os.path.join(d.dir, "payguard.db")), "store made")
        check(not bad, ("under umask 0, nothing in the data dir open to others", bad))
    finally:
        d.cleanup()


def refused_dirs(tmp):
    data = os.path.join(tmp, "open")
    os.mkdir(data)
    os.chmod(data, 0o755)
    rc, out = run_daemon(data)
    check(rc == 5 and ("permissions 0755 for '%s' are too open; run: chmod 700 '%s'" % (data, data))
          in out, ("0755 data dir refused with the chmod", rc, out))
    check(not os.path.exists(os.path.join(data, "payguard.db")), "nothing made in it")
    os.chmod(data, 0o700)
    db = os.path.join(data, "payguard.db")
    with open(db, "wb"):
        pass
    os.chmod(db, 0o644)
    rc, out = run_daemon(data)
    check(rc == 5 and ("permissions 0644 for '%s' are too open; run: chmod 600 '%s'" % (db, db))
          in out, ("0644 store refused with the chmod", rc, out))


def port_files(tmp):
    data = os.path.join(tmp, "data")
    os.mkdir(data, 0o700)
    target = os.path.join(tmp, "target")
    with open(target, "w") as f:
        f.write("keep\n")
    cases = []
    p = os.path.join(tmp, "fifo")
    os.mkfifo(p)
    cases.append((p, "fifo"))
    p = os.path.join(tmp, "adir")
    os.mkdir(p)
    cases.append((p, "dir"))
    p = os.path.join(tmp, "link")
    os.symlink(target, p)
    cases.append((p, "link"))
    p = os.path.join(tmp, "dangling")
    os.symlink(os.path.join(tmp, "absent"), p)
    cases.append((p, "link"))
    p = os.path.join(tmp, "null")
    try:
        os.mknod(p, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        cases.append((p, "chr"))
    except PermissionError:
        print("(not root: the character-device case runs in the unit test only)")
    for path, k in cases:
        rc, out = run_daemon(data, "--port-file", path)
        check(rc not in (None, 0) and ("refusing to replace '%s'" % path) in out,
              ("--port-file at a %s refused" % k, rc, out[-400:]))
        check(kind(path) == k, "%s still a %s" % (path, k))
    check(open(target).read() == "keep\n", "the symlink's target untouched")
    check(not os.path.exists(os.path.join(tmp, "absent")), "the dangling link not followed")


def dev_null(tmp):
    """The reported case: --port-file /dev/null as root. Run in a private mount
    namespace whose /dev is a fresh tmpfs holding a real null device node."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        print("(not root or no unshare: /dev/null case not run; the unit test and the "
              "cases above cover character devices)")
        return
    data = os.path.join(tmp, "nulldata")
    os.mkdir(data, 0o700)
    script = ('mount --make-rprivate / && mount -t tmpfs -o mode=755 pgdev /dev && '
              'mknod -m 666 /dev/null c 1 3 && '
              '{ timeout 60 "$0" serve --data "$1" --port 0 --port-file /dev/null; echo "rc=$?"; '
              'stat -c "kind=%F" /dev/null; }')
    r = subprocess.run(["unshare", "-m", "bash", "-c", script, PAYGUARD, data],
                       capture_output=True, text=True, timeout=120)
    if "mount" in r.stderr and "rc=" not in r.stdout:
        print("(cannot make a mount namespace here: %s)" % r.stderr.strip())
        return
    check("kind=character special file" in r.stdout and "rc=0" not in r.stdout
          and "rc=124" not in r.stdout,
          ("--port-file /dev/null leaves it a character device", r.stdout, r.stderr[-400:]))
    check(os.path.exists("/dev/null") and stat.S_ISCHR(os.stat("/dev/null").st_mode),
          "the host's /dev/null untouched")


def main():
    umask_and_modes()
    with tempfile.TemporaryDirectory(prefix="pg-serve-files-") as tmp:
        refused_dirs(tmp)
        port_files(tmp)
        dev_null(tmp)
    print("serve files: ok")


if __name__ == "__main__":
    main()
