"""HTTP errors and the listen socket of `payguard serve` (issue 13, "Smaller"):

- 405 answers carry Allow with the methods of the resource;
- the errors the daemon answers (400, 404, 405, 413, 414, 431, 505) are JSON;
- a %00 in the URL (path or query) is refused with 400;
- reals print in their shortest round-trip form (52.52, through the API and a
  CLI --json output);
- --listen localhost (and ::1 where the machine has IPv6) is loopback;
- a port in use fails at once with a clear message and a non-zero exit, and
  leaves nothing behind: no run/ files, no worker processes."""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

from serveutil import PAYGUARD, Daemon, alive


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def raw(port, data, host="127.0.0.1"):
    """Sends data on a new connection; (status, headers dict, body bytes)."""
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), hdrs, body


def req(port, method, target, extra=b"", body=b"", version=b"HTTP/1.1"):
    # the Host the guard takes: loopback with the daemon's port (guard.c)
    m = (method.encode() + b" " + target + b" " + version +
         b"\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n" % port)
    if body:
        m += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
    elif method not in ("GET", "HEAD"):
        # the guard answers 415 to a change without it, before routing
        m += b"Content-Type: application/json\r\n"
    return raw(port, m + extra + b"\r\n" + body)


def json_error(port, method, target, code, **kw):
    st, h, body = req(port, method, target, **kw)
    check(st == code, (method, target[:80], st, body[:200]))
    check(h.get("content-type") == "application/json", (target[:80], h, body[:200]))
    v = json.loads(body)
    check(v["error"]["status"] == code and v["error"]["message"], v)
    return h, v


def serve_api(d):
    p = d.port
    # 405 + Allow, per resource
    for method, target, allow in [
        ("DELETE", b"/api/health", "GET, HEAD"),
        ("POST", b"/metrics", "GET, HEAD"),
        ("PUT", b"/", "GET, HEAD"),
        ("PUT", b"/api/vses", "GET, HEAD, POST"),
        ("GET", b"/api/vses/x", "POST"),
        ("PATCH", b"/api/pos/alerts/1", "GET, HEAD, POST"),
        ("POST", b"/api/images/1", "GET, HEAD"),
        ("GET", b"/api/images/1/upgrade", "POST"),
    ]:
        h, v = json_error(p, method, target, 405)
        check(h.get("allow") == allow, (target, h))
        check(method in v["error"]["message"], v)
    # the other errors, all JSON
    json_error(p, "GET", b"/nope", 404)
    json_error(p, "GET", b"/api/pos/alerts?state=bogus", 400)
    json_error(p, "POST", b"/api/pos/alerts/1", 413, body=b'{"note":"' + b"x" * 10000 + b'"}')
    json_error(p, "GET", b"/api/" + b"a" * 5000, 414)
    json_error(p, "GET", b"/api/health", 431, extra=b"X-Big: " + b"b" * 20000 + b"\r\n")
    json_error(p, "GET", b"/api/health", 505, version=b"HTTP/1.2")
    # %00: the decoded URL would be cut short at the NUL; refused instead
    for target in [b"/api/health%00", b"/api/health%00.html", b"/api/pos/alerts?state=open%00x",
                   b"/%00"]:
        h, v = json_error(p, "GET", target, 400)
        check("%00" in v["error"]["message"], v)
    st, h, _ = req(p, "GET", b"/api/health")
    check(st == 200, "a plain request still works")

    # 52.52 as 52.52: the demo's Cafe Mitte is at 52.5200, 13.4050
    d.wait("POS terminals", lambda: d.get("/api/pos/terminals")[1])
    st, ct, text = d.request("GET", "/api/pos/terminals", raw=True)
    check(st == 200 and b'"lat":52.52,' in text and b'"lon":13.405,' in text, text[:400])
    check(b"52.520000000000003" not in text and b"13.404999" not in text, text[:400])


def cli_json():
    with tempfile.TemporaryDirectory() as t:
        m = os.path.join(t, "m.csv")
        with open(m, "w") as f:
            f.write("52.52,1\n52.52,1\n")
        out = subprocess.run([PAYGUARD, "load", "kmeans", "--k", "1", "--json", "--data", m],
                             capture_output=True, text=True, check=True).stdout
        check("52.52," in out and "52.520000000000003" not in out, out)
        check(json.loads(out)["centers"] == [[52.52, 1.0]], out)


def listen_names():
    d = Daemon("--listen", "localhost", demo=False)
    try:
        check(d.get("/api/health")[0] == 200, "localhost is 127.0.0.1")
        check("http://localhost:%d/" % d.port in d.log(), d.log())
        check(d.stop() == 0, "stop")
    finally:
        d.cleanup()
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
    except OSError:
        print("no IPv6 loopback on this machine: ::1 not tried")
        return
    d = Daemon("--listen", "::1", demo=False)
    try:
        st, h, body = raw(d.port, b"GET /api/health HTTP/1.1\r\nHost: [::1]:%d\r\nConnection: close\r\n\r\n" % d.port,
                          host="::1")
        check(st == 200 and json.loads(body)["status"] == "ok", body)
        check("http://[::1]:%d/" % d.port in d.log(), d.log())
        check(d.stop() == 0, "stop")
    finally:
        d.cleanup()
    # not loopback without a token: refused before anything starts
    r = subprocess.run([PAYGUARD, "serve", "--data", tempfile.mkdtemp(prefix="pg-serve-test-"),
                        "--listen", "::", "--port", "0"], capture_output=True, text=True, timeout=30)
    check(r.returncode != 0 and "token" in r.stderr, (r.returncode, r.stderr))
    r = subprocess.run([PAYGUARD, "serve", "--data", tempfile.mkdtemp(prefix="pg-serve-test-"),
                        "--listen", "example.org", "--port", "0"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode != 0 and "listen address" in r.stderr, (r.returncode, r.stderr))


def workers_of(data_dir):
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if data_dir.encode() in args and alive(int(p)):
            pids.append(int(p))
    return pids


def port_in_use():
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    data = tempfile.mkdtemp(prefix="pg-serve-test-")
    try:
        t0 = time.monotonic()
        r = subprocess.run([PAYGUARD, "serve", "--data", data, "--port", str(port), "--demo"],
                           capture_output=True, text=True, timeout=60)
        took = time.monotonic() - t0
        check(r.returncode == 1, (r.returncode, r.stdout, r.stderr))
        check("127.0.0.1 port %d" % port in r.stderr and "in use" in r.stderr, r.stderr)
        check(took < 10, "failed at once (%.1f s)" % took)
        check(not os.path.exists(os.path.join(data, "run")), os.listdir(data))
        check(os.listdir(data) == [], "nothing made in the data directory: %s" % os.listdir(data))
        check(workers_of(data) == [], "no worker left: %s" % workers_of(data))
    finally:
        busy.close()
        os.rmdir(data) if not os.listdir(data) else None


def main():
    d = Daemon()
    try:
        serve_api(d)
        check(d.stop() == 0, "clean stop")
    finally:
        d.cleanup()
    cli_json()
    listen_names()
    port_in_use()
    print("ok")


if __name__ == "__main__":
    main()
