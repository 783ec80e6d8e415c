"""The daemon's secure-element side (issue 9): the SE OS service with three
simulated SEs (T=1, SWP, SPI) and the two demo VSEs the hypervisor
announces, all authenticated with SCP03 keys diversified from the data
directory's master key; a VSE created through the API without keys is
authenticated too; the live APDU log carries the wallet's and the NFC
switch's exchanges, with no secret-bearing command data; the NFC switch
routes to the SE OS's SEs, a reader's SELECT of a VSE's payment AID answered
by that VSE (issue 16)."""
import os
import stat
import sys

from serveutil import Daemon


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def authenticated(d):
    s, v = d.get("/api/seos/ses")
    if s != 200:
        return None
    return {x["name"]: x for x in v["ses"] if x["state"] == "authenticated"}


def main():
    d = Daemon()
    try:
        s, svcs = d.get("/api/services")
        check("seos" in [x["name"] for x in svcs], svcs)
        want = {"ese-t1": "t1", "uicc-swp": "swp", "ese-spi": "spi",
                "demo-pay": "t1", "demo-transit": "swp"}
        ses = d.wait("5 authenticated SEs in the SE OS",
                     lambda: (lambda a: a if a and set(want) <= set(a) else None)(authenticated(d)), 90)
        for name, link in want.items():
            check(ses[name]["link"] == link, ses[name])
            check(len(ses[name]["id"]) > 0 and ses[name]["reason"] == "", ses[name])

        # the master key is on disk, 0600, and never in an answer
        kp = os.path.join(d.dir, "seos", "master.key")
        st = os.stat(kp)
        check(st.st_size == 16 and stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode))
        key_hex = open(kp, "rb").read().hex().upper()
        s, v = d.get("/api/vses")
        check(s == 200 and {"demo-pay", "demo-transit"} <= {x["name"] for x in v["vses"]}, v)
        check(key_hex not in str(v) and key_hex.lower() not in str(v), "master key in /api/vses")

        # a VSE made from the API with no keys gets the master key and reaches the SE OS
        s, v = d.request("POST", "/api/vses", {"name": "wallet-x", "arena": "256K", "pmem": "64K",
                                                "applets": ["test", "aram"], "expose": {"link": "spi"}})
        check(s == 201 and v["vse"]["state"] == "running", v)
        check(v["vse"]["request"]["keys"]["mode"] == "diversified", v)
        d.wait("wallet-x authenticated by the SE OS",
               lambda: "wallet-x" in (authenticated(d) or {}), 60)

        # the NFC switch follows the SE OS's list live: wallet-x comes behind it, leaves
        # when the VSE stops (the SE OS detaches it) and is back once it runs again
        def switch_ses():
            s, v = d.get("/api/se/ses")
            return {x["name"]: x for x in v["ses"]} if s == 200 else {}
        d.wait("wallet-x behind the NFC switch", lambda: switch_ses().get("wallet-x", {}).get("state") == "up", 30)
        s, v = d.request("POST", "/api/vses/wallet-x", {"action": "stop"})
        check(s == 200, v)
        d.wait("wallet-x off the switch once the SE OS detached it", lambda: "wallet-x" not in switch_ses()
               and "wallet-x" not in (authenticated(d) or {}), 30)
        s, v = d.request("POST", "/api/vses/wallet-x", {"action": "start"})
        check(s == 200, v)
        d.wait("wallet-x back behind the switch", lambda: switch_ses().get("wallet-x", {}).get("state") == "up", 60)

        # the live APDU log: the wallet's SELECT + ECHO through the SE OS, the switch's SELECTs
        def rows():
            s, v = d.get("/api/se/apdus?limit=500")
            check(s == 200, v)
            return v["apdus"]
        d.wait("APDUs of the SE OS and the NFC switch in the log",
               lambda: {"seos", "nfcswitch"} <= {r["source"] for r in rows()}, 60)
        d.wait("an echo on wallet-x", lambda: any(r["se"] == "wallet-x" and r["capdu"].startswith("8010")
                                                  and r["sw"] == "9000" for r in rows()), 30)
        log = rows()
        check(len(log) <= 500 and log == sorted(log, key=lambda r: -r["id"]), "newest first")
        for r in log:
            check(len(r["capdu"]) >= 8 and r["sw"] and len(r["sw"]) == 4, r)
            if r["source"] == "seos" and r["capdu"].startswith("80") and r["sw"] == "9000":
                # ECHO: the answer is the command's data
                lc = int(r["capdu"][8:10], 16)
                check(r["rapdu"][:-4] == r["capdu"][10:10 + 2 * lc], r)
            check(r["capdu"][2:4] not in ("50", "82", "D8", "E2") or r["capdu"].endswith(".."), r)
        # the NFC switch routes to the SE OS's SEs (issue 16): every SELECT it logged
        # went to an SE the SE OS authenticated
        names = set(authenticated(d))
        sel = [r for r in log if r["source"] == "nfcswitch"]
        check(all(r["capdu"].startswith("00A40400") and r["se"] in names for r in sel), sel[:3])
        # ... among them a VSE: a reader's SELECT of demo-pay's payment AID (F0 "PGPAY" 01,
        # the only SE holding it) answered by that VSE, its FCI naming the AID
        pay = "F0504750415901"
        hit = d.wait("the switch's SELECT of the VSE's payment AID in the log", lambda: [
            r for r in rows() if r["source"] == "nfcswitch" and r["capdu"] == "00A4040007" + pay + "00"
            and r["sw"] == "9000"], 60)
        check(all(r["se"] == "demo-pay" and r["link"] == "t1" and ("84" + "07" + pay) in r["rapdu"]
                  for r in hit), hit[:3])
        s, v = d.get("/api/se/routes")
        check(s == 200 and [x["se"] for x in v["routes"] if x["aid"] == pay] == ["demo-pay"], v)
        s, v = d.get("/api/se/apdus?limit=0")
        check(s == 400, v)
        s, v = d.get("/api/se/apdus?limit=2")
        check(s == 200 and len(v["apdus"]) == 2, v)

        text = d.metrics_text()
        check('payguard_seos_exchanges_total{result="ok"}' in text and "payguard_seos_ses" in text, text)
        check(d.metric('payguard_seos_exchanges_total{result="ok"}') > 0, text)

        rc = d.stop()
        check(rc == 0, d.log()[-2000:])
        check(key_hex not in d.log(), "the master key reached the log")
        print("serve SE side: ok")
    finally:
        d.cleanup()


if __name__ == "__main__":
    sys.exit(main())
