"""The API's request guard (issue 13, item 1): cross-site requests, DNS
rebinding, the security headers and the dashboard's token login.

Every state-changing route of src/serve/api.c is tried the way a hostile web
page (or a rebound DNS name) would reach it; afterwards the API must show
that nothing changed. On the code before the guard, the issue's example
(Origin evil.example, text/plain) acknowledged the alert with 200.
Uses http.client so every header is ours and redirects are not followed."""
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile

from serveutil import PAYGUARD, Daemon

CSP_MUST = ["default-src 'self'", "frame-ancestors 'none'"]


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def call(d, method, path, body=None, headers=None, host=None):
    """One request; returns (status, headers dict lower-cased, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=15)
    h = {"Host": host if host is not None else "127.0.0.1:%d" % d.port}
    h.update(headers or {})
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    c.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for k, v in h.items():
        c.putheader(k, v)
    if data is not None:
        c.putheader("Content-Length", str(len(data)))
    c.endheaders(data)
    r = c.getresponse()
    out = (r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    c.close()
    return out


def error_json(status, hdrs, text):
    check(hdrs.get("content-type") == "application/json", (status, hdrs))
    v = json.loads(text)
    check(v["error"]["status"] == status and v["error"]["message"], v)
    return v


def security_headers(what, hdrs):
    csp = hdrs.get("content-security-policy", "")
    check(all(x in csp for x in CSP_MUST) and "unsafe-inline" not in csp and
          "unsafe-eval" not in csp, (what, "CSP", csp))
    check(hdrs.get("x-frame-options") == "DENY", (what, hdrs))
    check(hdrs.get("x-content-type-options") == "nosniff", (what, hdrs))
    check(hdrs.get("referrer-policy") == "no-referrer", (what, hdrs))


def state(d):
    """What the hostile requests must not change."""
    _, alerts = d.get("/api/pos/alerts?limit=10000")
    _, vses = d.get("/api/vses")
    _, jobs = d.get("/api/images/jobs")
    return ({a["id"]: a["state"] for a in alerts},
            sorted((v["name"], v["state"]) for v in vses["vses"]),
            sorted(j["id"] for j in jobs))


def hostile(d, alert_id, img_id):
    """Every state-changing route, each with the bodies a page could send."""
    port = d.port
    routes = [
        ("POST", "/api/pos/alerts/%d" % alert_id, {"action": "acknowledge"}),
        ("POST", "/api/pos/alerts/%d" % alert_id, {"action": "close", "note": "x"}),
        ("POST", "/api/vses", {"name": "evil", "arena": "256K", "pmem": "64K",
                               "applets": ["test"], "expose": {"link": "t1"}}),
        ("POST", "/api/vses/demo-pay", {"action": "stop"}),
        ("POST", "/api/vses/demo-pay", {"action": "destroy"}),
        ("POST", "/api/vses/demo-transit", {"action": "stop"}),
        ("POST", "/api/images/%d/upgrade" % img_id, {"fix": True}),
        ("PUT", "/api/pos/alerts/%d" % alert_id, {"action": "close"}),
        ("DELETE", "/api/vses/demo-pay", None),
        ("PATCH", "/api/pos/alerts/%d" % alert_id, {"action": "close"}),
    ]
    cross = [
        # the curl example: a page's text/plain form post
        ({"Origin": "http://evil.example", "Content-Type": "text/plain"}, 403),
        ({"Origin": "http://evil.example", "Content-Type": "application/json"}, 403),
        # another loopback origin (the browser test's hostile page)
        ({"Origin": "http://127.0.0.2:%d" % port, "Content-Type": "application/json"}, 403),
        ({"Origin": "http://127.0.0.1:%d" % (port + 1 if port < 65535 else 1),
          "Content-Type": "application/json"}, 403),
        ({"Origin": "null", "Content-Type": "application/json"}, 403),
        ({"Origin": "http://127.0.0.1:%d.evil.example" % port,
          "Content-Type": "application/json"}, 403),
        ({"Origin": "http://127.0.0.1:%d/x" % port, "Content-Type": "application/json"}, 403),
        # no Origin, but the browser says where the request came from
        ({"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}, 403),
        ({"Sec-Fetch-Site": "same-site", "Content-Type": "application/json"}, 403),
        # what a form or a no-cors fetch can declare, even from our own origin
        ({"Origin": "http://127.0.0.1:%d" % port, "Content-Type": "text/plain"}, 415),
        ({"Content-Type": "text/plain;charset=UTF-8"}, 415),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ({"Content-Type": "multipart/form-data; boundary=x"}, 415),
        ({"Content-Type": "application/jsonp"}, 415),
        ({}, 415),
    ]
    n = 0
    for method, path, body in routes:
        for hdrs, want in cross:
            h = dict(hdrs)
            if d.token:
                h["Authorization"] = "Bearer " + d.token
            s, rh, text = call(d, method, path, body if body is not None else b"", h)
            check(s == want, (method, path, hdrs, s, text[:300]))
            error_json(s, rh, text)
            security_headers("%d answer" % s, rh)
            n += 1
    return n


def main():
    d = Daemon()
    try:
        d.wait("POS transactions", lambda: (d.metric("payguard_pos_transactions_total") or 0) > 5)
        alerts = d.wait("an open POS alert", lambda: d.get("/api/pos/alerts?state=open")[1], 120)
        a = alerts[0]["id"]
        _, imgs = d.get("/api/images")
        check(imgs, "the demo has images")
        img = imgs[0]["id"]
        d.wait("the demo VSEs", lambda: len(d.get("/api/vses")[1].get("vses", [])) == 2, 60)
        before = state(d)
        check(before[0][a] == "open", before)

        # ---- cross-site requests: refused before anything acts ----
        n = hostile(d, a, img)
        after = state(d)
        check(after[0][a] == "open", ("the alert changed", after[0][a]))
        check(after[1] == before[1], ("the VSEs changed", before[1], after[1]))
        check(after[2] == before[2], ("an upgrade job appeared", before[2], after[2]))
        print("  %d cross-site requests refused, nothing changed" % n)

        # our own pages' requests, and scripts without Origin, still act
        port = d.port
        s, h, t = call(d, "POST", "/api/pos/alerts/%d" % a, {"action": "acknowledge"},
                       {"Origin": "http://127.0.0.1:%d" % port,
                        "Content-Type": "application/json", "Sec-Fetch-Site": "same-origin"})
        check(s == 200 and json.loads(t)["state"] == "acknowledged", (s, t))
        s, h, t = call(d, "POST", "/api/pos/alerts/%d" % a, {"action": "close"},
                       {"Origin": "http://localhost:%d" % port,
                        "Content-Type": "application/json; charset=utf-8"},
                       host="localhost:%d" % port)
        check(s == 200 and json.loads(t)["state"] == "closed", (s, t))
        s, v = d.request("POST", "/api/vses/demo-transit", {"action": "stop"})
        check(s == 200, v)
        # a JSON POST to a read-only route is still 405, not 415
        s, h, t = call(d, "POST", "/api/health", {}, {"Content-Type": "application/json"})
        check(s == 405, (s, t))

        # ---- DNS rebinding: a Host the daemon does not answer to ----
        for host in ["evil.example:%d" % port, "evil.example", "127.0.0.1:%d" % (port ^ 1),
                     "localhost", "127.0.0.1", "localhost.evil.example:%d" % port,
                     "[::2]:%d" % port, "127.0.0.1:%d:1" % port, "127.0.0.1:0%d0" % port, ""]:
            for method, path, body, hdrs in [
                    ("GET", "/api/health", None, {}), ("GET", "/", None, {}),
                    ("GET", "/metrics", None, {}), ("GET", "/static/app.js", None, {}),
                    ("POST", "/api/pos/alerts/%d" % a, {"action": "close"},
                     {"Content-Type": "application/json",
                      "Origin": "http://%s" % host})]:
                s, h, t = call(d, method, path, body, hdrs, host=host)
                check(s == 421, (host, method, path, s, t[:200]))
                error_json(s, h, t)
                security_headers("421", h)
        for host in ["127.0.0.1:%d" % port, "localhost:%d" % port, "LOCALHOST:%d" % port,
                     "127.1.2.3:%d" % port, "[::1]:%d" % port]:
            s, h, t = call(d, "GET", "/api/health", host=host)
            check(s == 200, (host, s, t))

        # ---- security headers on pages, files and API answers ----
        pages = ["/", "/se", "/images", "/load", "/pos", "/health"]
        for p in pages + ["/static/app.js", "/static/app.css", "/static/pos.js", "/api/health",
                          "/api/vses", "/metrics", "/nope"]:
            s, h, t = call(d, "GET", p)
            check(s in (200, 404), (p, s))
            security_headers(p, h)
        # the pages work under that CSP: no inline script, handler or style attribute
        for p in pages:
            s, h, t = call(d, "GET", p)
            html = t.decode()
            scripts = re.findall(r"<script\b([^>]*)>", html)
            check(scripts and all('src="/static/' in x for x in scripts), (p, scripts))
            check(not re.search(r"\sstyle\s*=", html), (p, "style attribute"))
            check(not re.search(r"\son[a-z]+\s*=", html), (p, "inline handler"))
            for src in re.findall(r'src="(/static/[^"]+)"', html):
                s2, _, _ = call(d, "GET", src)
                check(s2 == 200, (p, src, s2))
        check(d.stop() == 0, d.log()[-2000:])
    finally:
        d.cleanup()

    with tempfile.TemporaryDirectory(prefix="pg-serve-guard-") as tmp:
        # ---- allowed host names: option, config key, bad names refused ----
        for bad in ["evil/x", "http://a", "a:80", "", "[zz]", "-a"]:
            r = subprocess.run([PAYGUARD, "serve", "run", "--data", tmp, "--port", "0",
                                "--allow-host", bad], capture_output=True, text=True, timeout=30)
            check(r.returncode == 2 and "allow" in r.stderr, (bad, r.returncode, r.stderr))
        conf = os.path.join(tmp, "bad.json")
        with open(conf, "w") as f:
            json.dump({"allowed_hosts": ["ok.example", "no way"]}, f)
        r = subprocess.run([PAYGUARD, "serve", "run", "--data", tmp, "--port", "0",
                            "--config", conf], capture_output=True, text=True, timeout=30)
        check(r.returncode == 3 and "allowed host" in r.stderr, (r.returncode, r.stderr))

        tok = os.path.join(tmp, "token")
        secret = "guard-token-0123456789abcdef"
        with open(tok, "w") as f:
            f.write(secret + "\n")
        os.chmod(tok, 0o600)
        d = Daemon("--token-file", tok, "--allow-host", "pg.example", demo=False,
                   conf={"allowed_hosts": ["from-conf.example"]})
        try:
            port = d.port
            # the option wins over the file's allowed_hosts
            for host, want in [("pg.example", 401), ("PG.Example:443", 401),
                               ("pg.example:%d" % port, 401), ("from-conf.example", 421),
                               ("evil.example:%d" % port, 421)]:
                s, h, t = call(d, "GET", "/api/health", host=host)
                check(s == want, (host, s, t))
            # ---- the token login ----
            s, h, t = call(d, "GET", "/?token=wrong-" + secret)
            check(s == 401 and "set-cookie" not in h, (s, h))
            s, h, t = call(d, "GET", "/")
            check(s == 401 and b"?token=" in t, (s, t))
            s, h, t = call(d, "GET", "/se?token=" + secret)
            check(s == 303 and h.get("location") == "/se", (s, h))
            security_headers("303", h)
            cookie = h.get("set-cookie", "")
            m = re.fullmatch(r"pg_session=([0-9a-f]{64}); HttpOnly; SameSite=Strict; Path=/",
                             cookie)
            check(m, ("cookie attributes", cookie))
            sid = m.group(1)
            check(secret not in cookie and secret not in h.get("location", ""), h)
            # a second login is another session
            s, h, t = call(d, "GET", "/api/health?token=" + secret)
            check(s == 303 and h.get("location") == "/", (s, h))
            sid2 = h["set-cookie"].split(";")[0].split("=")[1]
            check(sid2 != sid, "sessions are random")
            ck = {"Cookie": "pg_session=" + sid}
            for p in ["/", "/se", "/static/se.js", "/api/health", "/metrics"]:
                s, h, t = call(d, "GET", p, headers=ck)
                check(s == 200, (p, s, t[:200]))
            s, h, t = call(d, "GET", "/api/health", headers={"Cookie": "other=1; pg_session=" + sid2})
            check(s == 200, (s, t))
            for bad in [sid[:-1] + ("0" if sid[-1] != "0" else "1"), sid[:32], sid + "00", "",
                        secret]:
                s, h, t = call(d, "GET", "/api/health", headers={"Cookie": "pg_session=" + bad})
                check(s == 401, (bad, s))
            # a cookie is no way around the origin and content-type checks
            own = "http://127.0.0.1:%d" % port
            s, h, t = call(d, "POST", "/api/pos/alerts/1", {"action": "close"},
                           dict(ck, **{"Origin": own, "Content-Type": "application/json"}))
            check(s == 404, (s, t))  # authenticated, routed: there is no alert 1
            s, h, t = call(d, "POST", "/api/pos/alerts/1", {"action": "close"},
                           dict(ck, **{"Origin": "http://evil.example",
                                       "Content-Type": "application/json"}))
            check(s == 403, (s, t))
            s, h, t = call(d, "POST", "/api/pos/alerts/1", {"action": "close"},
                           dict(ck, **{"Origin": own, "Content-Type": "text/plain"}))
            check(s == 415, (s, t))
            s, h, t = call(d, "POST", "/api/pos/alerts/1", {"action": "close"},
                           {"Origin": own, "Content-Type": "application/json"})
            check(s == 401, (s, t))
            # scripts keep the Bearer header
            s, h, t = call(d, "GET", "/api/health", headers={"Authorization": "Bearer " + secret})
            check(s == 200, (s, t))
            check("Set-Cookie" not in d.log() and sid not in d.log() and secret not in d.log(),
                  "no secret in the log")
            check(d.stop() == 0, d.log()[-2000:])
        finally:
            d.cleanup()
    print("serve guard: ok")


if __name__ == "__main__":
    sys.exit(main())
