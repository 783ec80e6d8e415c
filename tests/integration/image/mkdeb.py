#!/usr/bin/python3
"""Builds a new version of a package installed in a root folder with
dpkg-deb --build: same files as installed (owners, modes, symlinks), one
changed file, one added file, one dropped file; version + "+pg1".
usage: mkdeb.py ROOT PKG OUTDIR [--change-conffile PATH]"""
import os, shutil, subprocess, sys, stat

root, pkg, outdir = sys.argv[1], sys.argv[2], sys.argv[3]
change_conf = sys.argv[5] if len(sys.argv) > 5 and sys.argv[4] == "--change-conffile" else None
info = os.path.join(root, "var/lib/dpkg/info")
admindir = os.path.join(root, "var/lib/dpkg")
status = subprocess.run(["dpkg-query", "--admindir=" + admindir, "-s", pkg],
                        check=True, capture_output=True, text=True).stdout
lines, skip = [], False
for l in status.splitlines():
    if l.startswith((" ", "\t")):
        if not skip:
            lines.append(l)
        continue
    key = l.split(":", 1)[0]
    skip = key in ("Status", "Conffiles", "Config-Version")
    if skip:
        continue
    if key == "Version":
        version = l.split(":", 1)[1].strip() + "+pg1"
        l = "Version: " + version
    lines.append(l)
stage = os.path.join(outdir, pkg + ".stage")
shutil.rmtree(stage, ignore_errors=True)
os.makedirs(os.path.join(stage, "DEBIAN"))
listf = os.path.join(info, pkg + ".list")
if not os.path.exists(listf):
    listf = os.path.join(info, pkg + ":amd64.list")
paths = [p.rstrip("\n") for p in open(listf) if p.strip() not in ("/.", "")]
regular = [p for p in paths if stat.S_ISREG(os.lstat(root + p).st_mode)]
conffiles = []
cf = listf[:-5] + ".conffiles"
if os.path.exists(cf):
    conffiles = [l.strip() for l in open(cf) if l.strip()]
# drop one non-conffile regular file (tests removal of obsolete files)
dropped = next((p for p in reversed(regular) if p not in conffiles and "/doc/" in p), None)
for p in paths:
    if p == dropped:
        continue
    src, dst = root + p, stage + p
    st = os.lstat(src)
    # merged /usr: packages ship ./bin/ as a directory that is a symlink in
    # the installed root; dpkg follows it, so the package keeps a directory
    as_dir = stat.S_ISDIR(st.st_mode) or (
        stat.S_ISLNK(st.st_mode) and os.path.isdir(src) and any(q.startswith(p + "/") for q in paths))
    if as_dir:
        st = os.stat(src)
        os.makedirs(dst, exist_ok=True)
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    else:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)
    os.lchown(dst, st.st_uid, st.st_gid)
added = "/usr/share/doc/%s/payguard-upgraded" % pkg
os.makedirs(os.path.dirname(stage + added), exist_ok=True)
open(stage + added, "w").write("upgraded offline by payguard's test\n")
if change_conf:
    with open(stage + change_conf, "a") as f:
        f.write("# new in %s\n" % version)
control = "\n".join(lines) + "\n"
open(os.path.join(stage, "DEBIAN/control"), "w").write(control)
if conffiles:
    open(os.path.join(stage, "DEBIAN/conffiles"), "w").write("\n".join(conffiles) + "\n")
for s in ("preinst", "postinst", "prerm", "postrm"):
    f = listf[:-5] + "." + s
    if os.path.exists(f):
        shutil.copy2(f, os.path.join(stage, "DEBIAN", s))
        os.chmod(os.path.join(stage, "DEBIAN", s), 0o755)
out = os.path.join(outdir, "%s_%s.deb" % (pkg, version.replace(":", "%3a")))
subprocess.run(["dpkg-deb", "-Zxz", "--build", stage, out], check=True, capture_output=True)
shutil.rmtree(stage)
print(out, version, dropped or "-")
