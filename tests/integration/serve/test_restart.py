"""Supervision in `payguard serve run --demo` (issue 9): SIGKILL one worker;
the supervisor restarts it (new pid, restart counted in /api/services and
/metrics) while the API and the other workers keep answering throughout."""
import os
import signal
import sys
import time

from serveutil import Daemon, alive


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def svc(d, name):
    s, v = d.get("/api/services")
    check(s == 200, v)
    return [x for x in v if x["name"] == name][0]


def main():
    d = Daemon()
    try:
        d.wait("POS transactions", lambda: (d.metric("payguard_pos_transactions_total") or 0) > 5)
        d.wait("a load estimate", lambda: (d.metric("payguard_load_estimates_total") or 0) >= 1)

        # 1. kill the load worker: POS keeps deciding transactions meanwhile
        load = svc(d, "load")
        pos_pid = svc(d, "pos")["pid"]
        os.kill(load["pid"], signal.SIGKILL)
        tx0 = d.metric("payguard_pos_transactions_total")
        deadline = time.time() + 30
        while True:
            # every poll must answer: the API never stops
            now = svc(d, "load")
            if now["pid"] > 0 and now["pid"] != load["pid"] and now["restarts"] == 1:
                break
            check(time.time() < deadline, "load worker not restarted: %s" % now)
            time.sleep(0.1)
        check("signal 9" in now["last_exit"], now)
        check(not alive(load["pid"]), "old worker still there")
        check(svc(d, "pos")["pid"] == pos_pid, "the pos worker must not have been touched")
        d.wait("POS transactions during the load restart",
               lambda: d.metric("payguard_pos_transactions_total") > tx0, 30)
        est0 = d.metric("payguard_load_estimates_total")
        d.wait("an estimate by the restarted load worker",
               lambda: d.metric("payguard_load_estimates_total") > est0, 30)
        check("payguard_service_restarts_total{service=\"load\"} 1" in d.metrics_text(), "metric")

        # 2. kill the POS server: it comes back on the same store and traffic resumes
        pos = svc(d, "pos")
        os.kill(pos["pid"], signal.SIGKILL)
        d.wait("pos restarted", lambda: svc(d, "pos")["restarts"] == 1 and svc(d, "pos")["pid"] not in (0, pos["pid"]), 30)
        tx1 = d.metric("payguard_pos_transactions_total")
        d.wait("POS transactions after the pos restart",
               lambda: d.metric("payguard_pos_transactions_total") > tx1 + 5, 40)
        check(svc(d, "load")["restarts"] == 1, "load untouched by the pos restart")
        s, v = d.get("/api/health")
        check(s == 200, v)
        rc = d.stop()
        check(rc == 0, "exit %s" % rc)
        print("serve restart: ok")
    finally:
        d.cleanup()


if __name__ == "__main__":
    sys.exit(main())
