"""The HTTP API's route table (issue 16, item 4: routes[] in src/serve/api.c
is the one source of dispatch, GET /api and the 405 Allow answers).

- GET /api lists every route: each with its method, path pattern, a
  one-line description and whether it changes state (only POST rows do);
  the listing is exactly the routes docs/api.md has a section for;
- each listed route answers its own method (never 405 or "no route"), and
  every other method on it gets 405 with an Allow header made of the
  methods the listing gives that path (GET also answers HEAD)."""
import os
import re
import sys

from serveutil import Daemon
from test_errors import req

DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "docs",
                    "api.md")
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]
# a URL each pattern matches (pathmatch.c: {id} 1.., {n} digits, {name} the
# rest, {page} a dashboard file)
CONCRETE = {"{n}": "1", "{id}": "1", "{name}": "x", "{page}": ""}


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def norm(path):
    """A pattern with its parameters unnamed: /api/pos/alerts/{}."""
    return re.sub(r"\{[a-z]+\}", "{}", path)


def documented():
    """(method, pattern) of each route section of docs/api.md: headings
    such as ### `GET /api/pos/alerts[?state=...]` or ### `POST /api/vses/{name}`."""
    out = set()
    with open(DOCS) as f:
        for line in f:
            m = re.match(r"### `(GET|POST) (/[^`?\[]*)", line)
            if m:
                out.add((m.group(1), norm(m.group(2))))
    return out


def main():
    d = Daemon(demo=False)
    try:
        s, v = d.get("/api")
        check(s == 200 and isinstance(v.get("routes"), list), v)
        rows = v["routes"]
        for x in rows:
            check(set(x) == {"method", "path", "description", "changes_state"}, x)
            check(x["method"] in ("GET", "POST") and x["path"].startswith("/"), x)
            check(isinstance(x["description"], str) and 5 <= len(x["description"]) <= 80, x)
            check(x["changes_state"] == (x["method"] == "POST"), x)
        listed = [(x["method"], x["path"]) for x in rows]
        check(len(set(listed)) == len(listed), ("a route listed twice", listed))
        check(len({x["description"] for x in rows}) == len(rows),
              ("each route says what it is", rows))
        # the listing and docs/api.md name the same routes
        got = {(m, norm(p)) for m, p in listed}
        docs = documented()
        check(got == docs, ("GET /api vs docs/api.md", sorted(got - docs), sorted(docs - got)))
        for want in [("GET", "/api"), ("GET", "/metrics"), ("POST", "/api/vses/{name}"),
                     ("GET", "/{page}"), ("POST", "/api/images/{id}/upgrade")]:
            check(want in listed, (want, listed))

        # every route, every method: its own answer, or 405 with its Allow
        for x in rows:
            url = x["path"]
            for k, c in CONCRETE.items():
                url = url.replace(k, c)
            url = url or "/"
            takes = {m for m, p in listed if p == x["path"]}
            if "GET" in takes:
                takes.add("HEAD")
            allow = ", ".join(m for m in ["GET", "HEAD", "POST"] if m in takes)
            for m in METHODS:
                body = b"{}" if m in ("POST", "PUT", "PATCH") else b""
                st, h, text = req(d.port, m, url.encode(), body=body)
                if m in takes:
                    check(st != 405 and b"no route" not in text, (m, url, st, text[:200]))
                    check("allow" not in h, (m, url, h))
                else:
                    check(st == 405, (m, url, st, text[:200]))
                    check(h.get("allow") == allow, (m, url, h.get("allow"), allow))
        # a path of no route is 404, not 405, whatever the method
        for m in ["GET", "DELETE"]:
            st, h, text = req(d.port, m, b"/api/nope")
            check(st == 404 and "allow" not in h and b"no route" in text, (m, st, h, text))
        rc = d.stop()
        check(rc == 0, "exit code %s: %s" % (rc, d.log()[-2000:]))
        print("serve routes: %d routes listed, documented and answered" % len(rows))
    finally:
        d.cleanup()


if __name__ == "__main__":
    sys.exit(main())
