"""Reportable decisions (issue 15): with `pos serve --report
undetermined,unregistered` every stored transaction with one of those
decisions is a payguard.pos.decision_reported event in the outbox, written
with it; in-place and moved ones are not (moved ones raise alerts instead);
an unknown decision name is refused with exit 2 before anything starts."""
import json

from posutil import Env, check, run, scenario_message, message, SCENARIOS

p = run("serve", "--port", "0", "--report", "undetermined,nope", check_rc=False)
check(p.returncode == 2 and "'nope' is no decision" in p.stderr,
      "an unknown decision is refused (exit %d: %s)" % (p.returncode, p.stderr.strip()))

env = Env("report")
try:
    env.import_sample()
    env.start("--report", "undetermined,unregistered")
    sent = [scenario_message("stay", 10), scenario_message("unknown", 11), scenario_message("move2km", 12),
            message("T0000099", SCENARIOS["stay"][1], [], 13), scenario_message("unknown", 14)]
    answers = env.send(sent)
    check(len(answers) == 5 and all(a.get("39") for a in answers), "five answers")
    env.stop()
    txn = [tuple(r) for r in env.rows("SELECT tid, stan, decision FROM pos_txn ORDER BY stan")]
    print("stored:", txn)
    ev = [json.loads(b) for (b,) in env.rows(
        "SELECT body FROM event_outbox WHERE type = 'payguard.pos.decision_reported' ORDER BY seq")]
    got = [(e["subject"], e["data"]["stan"], e["data"]["decision"]) for e in ev]
    print("reported:", got)
    want = [(t, s, d) for (t, s, d) in txn if d in ("undetermined", "unregistered")]
    check(len(want) == 3, "the run stored two undetermined and one unregistered transaction")
    check(sorted(got) == sorted(want), "exactly the stored undetermined and unregistered transactions are reported")
    rc_of = {m["11"]: a["39"] for m, a in zip(sent, answers)}
    for e in ev:
        check(e["specversion"] == "1.0" and e["type"] == "payguard.pos.decision_reported"
              and e["data"]["terminal"] == e["subject"] and e["data"]["rc"] == rc_of[e["data"]["stan"]]
              and isinstance(e["data"]["ts_ms"], int), "event %s has the CloudEvents shape and its data" % e["id"])
    check(env.rows("SELECT count(*) FROM event_outbox WHERE type = 'payguard.pos.alert_opened'")[0][0] == 0,
          "no alert yet at --alert-n 3 (so moved transactions reported nothing)")
finally:
    env.cleanup()
