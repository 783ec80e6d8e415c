"""`payguard pos serve` (issue 13, items 4 and 13): it prints its address
once bound, with the real port for --port 0; and --port-file never replaces
anything but a regular file, nor follows a symlink (a FIFO, a directory, a
symlink, a dangling symlink and a character device stay what they were)."""
import os
import re
import stat
import subprocess
import time

from posutil import PAYGUARD, Env, check


def kind(path):
    m = os.lstat(path).st_mode
    for name, f in (("link", stat.S_ISLNK), ("dir", stat.S_ISDIR), ("fifo", stat.S_ISFIFO),
                    ("chr", stat.S_ISCHR), ("file", stat.S_ISREG)):
        if f(m):
            return name
    return "other"


def main():
    env = Env("portfile")
    try:
        env.import_sample()
        # the address line comes after the bind and names the port the kernel chose
        port = env.start()
        deadline = time.time() + 10
        line = None
        while time.time() < deadline and line is None:
            m = re.search(r"pos server on 127\.0\.0\.1:(\d+) \(", env.server_log())
            line = m and int(m.group(1))
            time.sleep(0.05)
        check(line == port and port != 0, "pos serve prints its bound port (%s, port file %d)"
              % (line, port))
        check(oct(stat.S_IMODE(os.stat(env.path("port")).st_mode)) in ("0o600", "0o644"),
              "port file is a plain file")
        env.stop()

        target = env.write("target", "keep\n")
        cases = []
        p = env.path("fifo")
        os.mkfifo(p)
        cases.append((p, "fifo"))
        p = env.path("adir")
        os.mkdir(p)
        cases.append((p, "dir"))
        p = env.path("link")
        os.symlink(target, p)
        cases.append((p, "link"))
        p = env.path("dangling")
        os.symlink(env.path("absent"), p)
        cases.append((p, "link"))
        p = env.path("null")
        try:
            os.mknod(p, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
            cases.append((p, "chr"))
        except PermissionError:
            print("(not root: the character-device case runs in the unit test only)")
        for path, k in cases:
            try:
                r = subprocess.run([PAYGUARD, "pos", "serve", "--port", "0", "--port-file", path,
                                    "--db", env.db], capture_output=True, text=True, timeout=30)
                rc, err = r.returncode, r.stderr
            except subprocess.TimeoutExpired:
                rc, err = None, "still serving after 30 s"
            check(rc not in (None, 0) and ("refusing to replace '%s'" % path) in err,
                  "--port-file at a %s refused (%s: %s)" % (k, rc, err.strip()[-200:]))
            check(kind(path) == k, "%s is still a %s" % (path, k))
            check("pos server on" not in err, "no address printed when it did not start")
        check(open(target).read() == "keep\n", "the symlink's target is untouched")
        check(not os.path.exists(env.path("absent")), "the dangling symlink was not followed")
    finally:
        env.cleanup()
    print("pos portfile: ok")


if __name__ == "__main__":
    main()
