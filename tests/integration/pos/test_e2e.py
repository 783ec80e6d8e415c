"""End to end (seed 4): import a cell file and a merchant file, drive the
server with terminals that stay put, move 2 km, move 50 km, report an
unknown cell and a foreign MCC; check each decision, response code and
stored alert, then the alert life cycle."""
import json
import sys

from posutil import Env, check, run, scenario_message, message, SCENARIOS

env = Env("e2e")
try:
    c, m = env.import_sample()
    check(c["rows"] == 10 and c["imported"] == 7 and c["bad"] == 3, "cell import counts bad rows: %s" % c)
    check([b["line"] for b in c["first_bad"]] == [9, 10, 11], "bad cell rows reported by line")
    check(m["imported"] == 5 and m["bad"] == 1, "merchant import: %s" % m)
    env.start("--alert-n", "2", "--window-s", "3600", "--decline", "59")

    echo = env.send([{"0": "0800", "7": "1125120000", "11": "000001", "70": "301"}])[0]
    check(echo["0"] == "0810" and echo["39"] == "00" and echo["70"] == "301", "0800 -> 0810 00")

    want = {  # scenario -> [(rc, field 44) for the two transactions]
        "stay": [("00", "IN_PLACE"), ("00", "IN_PLACE")],
        "move2km": [("59", "MOVED"), ("59", "MOVED ALERT")],
        "move50km": [("59", "MOVED"), ("59", "MOVED ALERT")],
        "unknown": [("00", "UNDETERMINED"), ("00", "UNDETERMINED")],
        "foreign": [("59", "MOVED ALERT"), ("59", "MOVED ALERT")],
    }
    stan = 100
    for name, expect in want.items():
        for k, (rc, text) in enumerate(expect):
            stan += 1
            r = env.send([scenario_message(name, stan)])[0]
            check(r["0"] == "0210" and r["11"] == "%06d" % stan and r["41"] == SCENARIOS[name][0],
                  "%s #%d: 0210 echoes STAN and terminal" % (name, k + 1))
            check(r["39"] == rc and r["44"] == text, "%s #%d: rc %s, %s (got %s %s)" % (name, k + 1, rc, text,
                                                                                     r["39"], r["44"]))
    # 0100 authorization, unregistered terminal, missing cell data
    r = env.send([message("T0000001", SCENARIOS["stay"][1], [], 200, mti="0100")])[0]
    check(r["0"] == "0110" and r["39"] == "00" and r["44"] == "IN_PLACE", "0100 -> 0110 in place")
    r = env.send([message("T0000099", SCENARIOS["stay"][1], [], 201)])[0]
    check(r["39"] == "03" and r["44"] == "UNREGISTERED", "unregistered terminal -> 03")
    r = env.send([message("T0000001", None, [], 202)])[0]
    check(r["39"] == "00" and r["44"] == "UNDETERMINED", "no cell data -> undetermined")
    env.stop()

    rows = env.rows("SELECT tid, stan, decision, reason, rc, alert_id, distance_m FROM pos_txn ORDER BY id")
    check(len(rows) == 13, "13 transactions stored (%d)" % len(rows))
    byst = {r[1]: r for r in rows}
    check(byst["000101"][2] == "in_place" and byst["000101"][6] < 200, "stay stored in place")
    check(byst["000103"][2] == "moved" and 1800 < byst["000103"][6] < 2300, "2 km stored with its distance")
    check(byst["000105"][2] == "moved" and 49000 < byst["000105"][6] < 51000, "50 km stored with its distance")
    check(byst["000107"][2] == "undetermined" and byst["000107"][3] == "unknown_cell", "unknown cell stored")
    check(byst["000109"][3] == "country" and byst["000109"][5] is not None, "foreign MCC stored with its alert")
    check(byst["000201"][2] == "unregistered" and byst["000201"][4] == "03", "unregistered stored")

    alerts = json.loads(run("alerts", "--db", env.db, "--json").stdout)
    check(len(alerts) == 3, "three alerts")
    by = {a["terminal"]: a for a in alerts}
    check(set(by) == {"T0000002", "T0000003", "T0000005"}, "alerts for 2 km, 50 km and foreign MCC only")
    for tid, reason, lo, hi in (("T0000002", "distance", 1800, 2300), ("T0000003", "distance", 49000, 51000),
                                ("T0000005", "country", 100000, 200000)):
        a = by[tid]
        check(a["state"] == "open" and a["reason"] == reason and a["transactions"] == 2, "%s alert: %s, 2 txns" % (tid, reason))
        ev = a["evidence"]
        check(lo < ev["distance_m"] < hi and ev["estimate"]["confidence"] == "high", "%s evidence distance %.0f" % (tid, ev["distance_m"]))
    # life cycle
    aid = str(by["T0000002"]["id"])
    run("ack", aid, "--db", env.db, "--note", "called the merchant")
    p = run("ack", aid, "--db", env.db, check_rc=False)
    check(p.returncode == 1 and "already" in p.stderr, "acknowledging twice is refused")
    run("close", aid, "--db", env.db)
    p = run("close", "999", "--db", env.db, check_rc=False)
    check(p.returncode == 4, "closing an unknown alert: exit 4")
    st = {a["id"]: a["state"] for a in json.loads(run("alerts", "--db", env.db, "--json").stdout)}
    check(st[int(aid)] == "closed" and list(st.values()).count("open") == 2, "life cycle open -> acknowledged -> closed")
    # a closed alert does not swallow new evidence: the next moves open a new one
    env.start("--alert-n", "2", "--decline", "59")
    r = env.send([scenario_message("move2km", 300)])[0]
    check(r["44"] == "MOVED ALERT", "strikes before the restart still count (window rebuilt)")
    env.stop()
    alerts = json.loads(run("alerts", "--db", env.db, "--state", "open", "--json").stdout)
    check(sum(1 for a in alerts if a["terminal"] == "T0000002") == 1, "a new alert after the closed one")
    # batch mode replays the same kind of traffic from a file
    msgs = [scenario_message(n, 400 + i) for i, n in enumerate(["stay", "move50km", "unknown"])]
    hexes = []
    for i, mm in enumerate(msgs):
        p = run("encode", "--framing", "bin2", "-", input=json.dumps(mm))
        hexes.append(p.stdout.strip())
    with open(env.path("batch.bin"), "wb") as f:
        f.write(bytes.fromhex("".join(hexes)))
    out = json.loads(run("check", env.path("batch.bin"), "--db", env.db, "--dry-run", "--json").stdout)
    check([r["decision"] for r in out["results"]] == ["in_place", "moved", "undetermined"], "pos check replays a framed file")
    check(out["messages"] == 3 and out["rejected"] == 0 and out["in_place"] == 1 and
          out["moved"] == 1 and out["undetermined"] == 1, "pos check counts: %s" % out)
    # hex mode (pg_pos_check_batch): one message a line, an empty line skipped,
    # a line that is no message counted rejected (exit 3), the rest still decided
    bodies = [run("encode", "--framing", "none", "-", input=json.dumps(mm)).stdout.strip() for mm in msgs]
    with open(env.path("batch.hex"), "w") as f:
        f.write(bodies[0] + "\n\nZZ not hex\n" + bodies[1] + "\n")
    p = run("check", "--hex", env.path("batch.hex"), "--db", env.db, "--dry-run", "--json", check_rc=False)
    out = json.loads(p.stdout)
    check(p.returncode == 3 and out["messages"] == 3 and out["rejected"] == 1 and
          [r["n"] for r in out["results"]] == [1, 3], "hex batch: %s %s" % (p.returncode, out))
    check("message 2 rejected" in p.stderr, p.stderr)
    # a framing error stops the batch: nothing after it can be found
    with open(env.path("cut.bin"), "wb") as f:
        f.write(bytes.fromhex(hexes[0] + hexes[1][:12]))
    p = run("check", env.path("cut.bin"), "--db", env.db, "--dry-run", "--summary", check_rc=False)
    check(p.returncode != 0 and "message 2 at offset %d" % (len(hexes[0]) // 2) in p.stderr,
          (p.returncode, p.stderr))
    p = run("check", env.path("batch.bin"), "--db", env.db, "--dry-run", "--summary")
    check(p.stdout.startswith("3 messages (0 rejected): 1 in place, 1 moved, 1 undetermined") and
          "(dry run)" in p.stdout, p.stdout)
    print("PASS")
finally:
    env.cleanup()
