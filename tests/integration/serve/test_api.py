"""API tests of `payguard serve run --demo` (issue 9): every route, the
alert actions and their state machine, malformed and oversized bodies,
unknown routes and methods, /metrics, and a clean SIGTERM stop."""
import json
import sys

from serveutil import Daemon, alive


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main():
    d = Daemon()
    try:
        s, v = d.get("/api")
        check(s == 200 and {"method": "GET", "path": "/metrics", "changes_state": False,
                            "description": "Prometheus text metrics"} in v["routes"], v)
        s, v = d.get("/api/health")
        check(s == 200 and v["status"] == "ok" and v["data_dir"] == d.dir, v)
        s, svcs = d.get("/api/services")
        check(s == 200 and sorted(x["name"] for x in svcs) ==
              ["events", "image", "load", "nfcswitch", "pos", "pos-traffic", "seos", "vse"], svcs)
        # on PostgreSQL the singletons (load, image, pos-traffic, events)
        # start once this node has won their election, a moment after the
        # port is out
        svcs = d.wait("every service running", lambda: (lambda l: l if all(
            x["state"] == "running" and x["pid"] > 0 for x in l) else None)(d.get("/api/services")[1]), 15)

        # live data: transactions flow, the taxi that drives to Potsdam raises an alert
        d.wait("POS transactions", lambda: (d.metric("payguard_pos_transactions_total") or 0) > 20)
        alerts = d.wait("an open POS alert", lambda: d.get("/api/pos/alerts?state=open")[1], 90)
        a = alerts[0]
        check(a["state"] == "open" and a["terminal"].startswith("T"), a)

        s, terms = d.get("/api/pos/terminals")
        check(s == 200 and len(terms) == 8, terms)
        check(sum(t["transactions"] for t in terms) > 0, terms)
        # the taxi drives to Potsdam in about 40 % of its transactions
        taxi = d.wait("the taxi to move", lambda: [t for t in d.get("/api/pos/terminals")[1]
                                                  if t["name"] == "Taxi 17" and t["moved"] > 0], 60)[0]
        check(taxi["terminal"] == "T0000002", taxi)

        s, v = d.get("/api/pos/alerts")
        check(s == 200 and any(x["id"] == a["id"] for x in v), v)
        s, v = d.get("/api/pos/alerts?state=bogus")
        check(s == 400 and "state" in v["error"]["message"], v)
        s, v = d.get("/api/pos/alerts?limit=0")
        check(s == 400, v)
        s, v = d.get("/api/pos/alerts/%d" % a["id"])
        check(s == 200 and v["id"] == a["id"], v)
        s, v = d.get("/api/pos/alerts/99999999")
        check(s == 404 and v["error"]["status"] == 404, v)
        s, v = d.get("/api/pos/alerts/abc")
        check(s == 404, v)

        path = "/api/pos/alerts/%d" % a["id"]
        # bad bodies first: nothing may change
        for body, code, word in [
            (b'{"action": "acknowledge"', 400, "malformed JSON"),
            (b'not json at all', 400, "malformed JSON"),
            (b'', 400, "empty"),
            (b'["acknowledge"]', 400, "object"),
            (b'{"action": "delete"}', 400, "action"),
            (b'{"action": 7}', 400, "action"),
            (b'{"action": "close", "extra": 1}', 400, "unknown field"),
            (b'{"action": "close", "note": 5}', 400, "note"),
            (b'{"action": "close", "note": "' + b"x" * 300 + b'"}', 400, "note"),
            (b'{"action": "close", "action": "close"}', 400, "malformed JSON"),
            (b'{"action": "close", "note": "' + b"y" * 100000 + b'"}', 413, "larger"),
        ]:
            s, v = d.request("POST", path, body)
            check(s == code and word in v["error"]["message"], (body[:60], s, v))
        s, v = d.get(path)
        check(v["state"] == "open", v)

        s, v = d.request("POST", path, {"action": "acknowledge", "note": "driver called"})
        check(s == 200 and v["state"] == "acknowledged", v)
        s, v = d.request("POST", path, {"action": "acknowledge"})
        check(s == 409 and "already" in v["error"]["message"], v)
        s, v = d.request("POST", path, {"action": "close"})
        check(s == 200 and v["state"] == "closed", v)
        s, v = d.request("POST", "/api/pos/alerts/99999999", {"action": "close"})
        check(s == 404, v)

        # load: the estimator's latest output and one VM's history
        d.wait("two load estimates", lambda: (d.metric("payguard_load_estimates_total") or 0) >= 2)
        s, v = d.get("/api/load/vms")
        check(s == 200 and len(v["vms"]) == 48, v)
        vm = v["vms"][0]
        check(0 <= vm["load"] <= 100 and vm["samples"] == 240, vm)
        s, t = d.get("/api/load/types")
        check(s == 200 and 2 <= len(t["types"]) <= 10, t)
        check(sum(x["count"] for x in t["types"]) == 48, t)
        check(all(0 <= x["type"] < len(t["types"]) for x in v["vms"]), v)
        s, h = d.get("/api/load/history?vm=" + vm["name"])
        check(s == 200 and len(h["history"]) >= 2, h)
        s, h = d.get("/api/load/history")
        check(s == 400, h)
        s, h = d.get("/api/load/history?vm=no-such-vm")
        check(s == 404, h)

        s, v = d.get("/api/se/links")
        check(s == 200 and {"t0", "t1", "swp"} <= {x["name"] for x in v}, v)

        # SEs behind the NFC switch: the SE OS's (issue 16), with their links and live
        # APDU counts, reached through the SE OS's ports; its routing table
        sims = {"ese-t1": "t1", "uicc-swp": "swp", "ese-spi": "spi"}
        v = d.wait("the SE OS's simulated SEs behind the switch", lambda: (lambda r: r[1] if r[0] == 200
                   and set(sims) <= {x["name"] for x in r[1]["ses"]} else None)(d.get("/api/se/ses")), 60)
        s, os_ses = d.get("/api/seos/ses")
        auth = {x["name"]: x for x in os_ses["ses"] if x["state"] == "authenticated"}
        for x in v["ses"]:
            check(x["name"] in auth and x["link"] == auth[x["name"]]["link"]
                  and x["addr"] == auth[x["name"]]["addr"], (x, auth))
            check(x["port"].endswith("/seos/ports/%s.sock" % x["name"]), x)
        check(all(x["state"] == "up" and x["apdus"] > 0 for x in v["ses"]), v)
        check({x["name"]: x["link"] for x in v["ses"] if x["name"] in sims} == sims, v)
        s, v = d.get("/api/se/routes")
        check(s == 200 and v["policy"] == "priority", v)
        # the simulated SEs' echo applet at A0000000041010 is routed to one of them
        check({x["se"] for x in v["routes"] if x["aid"] == "A0000000041010"} == set(sims), v)
        sel0 = d.metric("payguard_nfcsw_selects_total")
        d.wait("more SELECTs through the switch",
               lambda: d.metric("payguard_nfcsw_selects_total") > sel0, 10)

        # images: the generated demo disk scanned into the store, its finding
        imgs = d.wait("the demo image in the inventory", lambda: d.get("/api/images")[1], 90)
        check(any(i["path"].endswith("/image-demo/demo-disk.img") for i in imgs), imgs)
        s, f = d.get("/api/images/findings")
        check(s == 200 and any(x["advisory"] == "DEBIAN-DEMO-2026-0001" for x in f), f)
        s, j = d.get("/api/images/jobs")
        check(s == 200 and isinstance(j, list), j)

        # VSEs through the hypervisor: create, list, stop, start, destroy
        req = {"name": "pay-1", "arena": "256K", "pmem": "64K", "applets": ["test"],
               "keys": {"master": "000102030405060708090A0B0C0D0E0F", "kvn": 48},
               "expose": {"link": "t1"}}
        d.wait("the VSE hypervisor and the demo's two VSEs",
               lambda: d.get("/api/vses")[0] == 200 and
               len(d.get("/api/vses")[1]["vses"]) == 2, 60)
        s, v = d.request("POST", "/api/vses", req)
        check(s == 201 and v["vse"]["name"] == "pay-1" and v["vse"]["state"] == "running", v)
        check(alive(v["vse"]["pid"]), "the VSE process runs")
        s, v = d.request("POST", "/api/vses", req)
        check(s == 409, (s, v))
        s, v = d.get("/api/vses")
        # the demo's two VSEs and ours
        check(s == 200 and sorted(x["name"] for x in v["vses"]) ==
              ["demo-pay", "demo-transit", "pay-1"], v)
        check("master" not in json.dumps(v), "no key material in answers")
        for body, code in [({"name": "../x", "arena": "256K", "pmem": "64K", "applets": ["test"]}, 400),
                           (b'{"name": ', 400), (b'[]', 400),
                           (dict(req, name="big", arena="1G"), 400)]:
            s, v = d.request("POST", "/api/vses", body)
            check(s == code and "error" in v, (body, s, v))
        s, v = d.request("POST", "/api/vses/pay-1", {"action": "stop"})
        check(s == 200 and v["vse"]["state"] == "stopped", v)
        s, v = d.request("POST", "/api/vses/pay-1", {"action": "start"})
        check(s == 200 and v["vse"]["state"] == "running", v)
        for body in [{"action": "explode"}, {"action": "stop", "x": 1}, b'nope']:
            s, v = d.request("POST", "/api/vses/pay-1", body)
            check(s == 400, (body, s, v))
        s, v = d.request("POST", "/api/vses/nope", {"action": "stop"})
        check(s == 404, v)
        s, v = d.request("POST", "/api/vses/pay-1", {"action": "destroy"})
        check(s == 200, v)
        s, v = d.get("/api/vses")
        check(sorted(x["name"] for x in v["vses"]) == ["demo-pay", "demo-transit"], v)
        s, v = d.get("/api/vses/pay-1")
        check(s == 405, v)

        # the cluster (docs/cluster.md): alone on its store (SQLite, or a
        # PostgreSQL database of its own) this daemon is the one node and
        # leads every singleton, demo traffic included (--demo)
        s, v = d.get("/api/cluster")
        check(s == 200 and v["engine"] == d.engine and len(v["nodes"]) == 1, v)
        check(v["nodes"][0]["state"] == "up" and v["nodes"][0]["self"] and v["nodes"][0]["name"] == v["node"], v)
        check(v["nodes"][0]["address"] == "127.0.0.1:%d" % d.port, v)
        check({l["singleton"]: l["node"] for l in v["leaders"]} ==
              {k: v["node"] for k in ("load", "retention", "image-watch", "pos-traffic", "events")}, v)
        check({x["name"] for x in v["nodes"][0]["services"]} == {x["name"] for x in d.get("/api/services")[1]}, v)

        # unknown routes and methods
        # GET /api is the route table: each row's method, path and whether
        # it changes state (only the POST rows do)
        s, v = d.get("/api")
        listed = {(x["method"], x["path"]) for x in v["routes"]}
        check(len(v["routes"]) == 27 and len(listed) == 27, v)
        check(all(x["changes_state"] == (x["method"] == "POST") for x in v["routes"]), v)
        check({x["path"] for x in v["routes"] if x["changes_state"]} ==
              {"/api/pos/alerts/{n}", "/api/vses", "/api/vses/{name}",
               "/api/images/{id}/upgrade"}, v)
        # every listed read-only resource answers GET and refuses DELETE with
        # an Allow made of the methods the listing gives that path
        concrete = {"{n}": "1", "{id}": "1", "{name}": "x", "{page}": ""}
        for x in v["routes"]:
            path = x["path"]
            for k, c in concrete.items():
                path = path.replace(k, c)
            want = ", ".join(sorted({m for (m, p) in listed if p == x["path"]}, key=["GET", "POST"].index))
            want = want.replace("GET", "GET, HEAD")
            s2, e = d.request("DELETE", path, headers={"Content-Type": "application/json"})
            check(s2 == 405 and want in e["error"]["message"], (path, s2, e, want))
        for p in ["/nope", "/api/", "/api/pos", "/api/se", "/api/images/1/x", "/api/images/0", "/api/images/01/packages", "/api/pos/alerts/1/x", "/metrics/x"]:
            s, v = d.get(p)
            check(s == 404 and v["error"]["status"] == 404, (p, s, v))
        s, v = d.request("POST", "/api/health", {"a": 1})
        check(s == 405, v)
        s, v = d.request("DELETE", path, headers={"Content-Type": "application/json"})
        check(s == 405, v)

        text = d.metrics_text()
        for name in ["payguard_http_requests_total{code=\"4xx\"}", "payguard_pos_transactions_total",
                     "payguard_pos_decisions_total{decision=\"moved\"}",
                     "payguard_load_estimates_total", "payguard_service_restarts_total{service=\"pos\"}",
                     "payguard_se_apdus_total{se=\"ese-t1\"}"]:
            check(name in text, name)
        check(d.metric("payguard_pos_transactions_total") > 20, text)

        s, ct, html = d.request("GET", "/", raw=True)
        check(s == 200 and ct.startswith("text/html") and b'src="/static/index.js"' in html, ct)
        s, ct, js = d.request("GET", "/static/index.js", raw=True)
        check(s == 200 and ct.startswith("text/javascript") and b"/api/pos/alerts" in js, ct)
        check(b"http://" not in html and b"https://" not in html, "dashboard loads nothing external")

        pids = [x["pid"] for x in d.get("/api/services")[1]]
        rc = d.stop()
        check(rc == 0, "exit code %s: %s" % (rc, d.log()[-2000:]))
        check(not any(alive(p) for p in pids), "a worker outlived the daemon")
        check("did not stop" not in d.log(), "every worker stops on SIGTERM: " + d.log()[-2000:])
        print("serve API: ok")
    finally:
        d.cleanup()


if __name__ == "__main__":
    sys.exit(main())
