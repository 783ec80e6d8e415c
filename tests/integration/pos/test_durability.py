"""Durability (seed 4 server): SIGKILL the server while 32 connections load
it; every transaction that had been answered must be in the store with its
decision and response code, and every answer that announced an alert must
have its alert stored. Then the server restarts on the same store."""
import json
import os
import signal
import subprocess
import time

from posutil import Env, check, run, scenario_message, PAYGUARD

env = Env("durability")
try:
    env.import_sample()
    env.start("--alert-n", "2")
    tpl = env.write("tpl.jsonl", "".join(json.dumps(scenario_message(n, 0)) + "\n"
                                         for n in ("stay", "move2km", "move50km", "unknown", "foreign")))
    log = env.path("answered.log")
    load = subprocess.Popen([PAYGUARD, "pos", "load", "--port", str(env.port), "--conns", "32",
                             "--duration-ms", "8000", "--log", log, "--json", tpl],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    env.server.send_signal(signal.SIGKILL)
    env.server.wait()
    out, err = load.communicate(timeout=60)
    stats = json.loads(out)
    print("load:", stats)
    lines = [l.split("|") for l in open(log).read().splitlines()]
    check(len(lines) > 500 and len(lines) == stats["answered"], "%d transactions answered before the kill" % len(lines))
    check(stats["errors"] > 0, "the load generator saw the connections die")

    stored = {}
    for tid, stan, rc, decision, alert_id in env.rows("SELECT tid, stan, rc, decision, alert_id FROM pos_txn"):
        stored[(tid, stan)] = (rc, decision, alert_id)
    alerts = {r[0]: r[1] for r in env.rows("SELECT id, state FROM pos_alerts")}
    missing = wrong = noalert = 0
    names = {"IN_PLACE": "in_place", "MOVED": "moved", "UNDETERMINED": "undetermined"}
    for tid, stan, rc, text in lines:
        s = stored.get((tid, stan))
        if s is None:
            missing += 1
            continue
        dec = text.split()[0]
        if s[0] != rc or s[1] != names[dec]:
            wrong += 1
        if text.endswith("ALERT") and (s[2] is None or s[2] not in alerts):
            noalert += 1
    check(missing == 0, "every answered transaction is stored (%d missing)" % missing)
    check(wrong == 0, "stored decision and response code match the answer (%d differ)" % wrong)
    check(noalert == 0, "every announced alert is stored (%d lost)" % noalert)
    check(len(stored) >= len(lines), "store holds %d >= %d answered" % (len(stored), len(lines)))
    check(any(t.endswith("ALERT") for _, _, _, t in lines), "alerts were raised under load")

    # restart on the same store and keep serving
    env.start("--alert-n", "2")
    r = env.send([scenario_message("stay", 999999)])[0]
    check(r["39"] == "00" and r["44"] == "IN_PLACE", "server restarts on the store and answers")
    env.stop()
    print("PASS")
finally:
    env.cleanup()
