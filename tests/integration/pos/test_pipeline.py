"""Pipelined requests (issue 18): a concentrator keeps many requests
outstanding on one connection. 50 requests in one write must come back as
50 answers in order (STAN by STAN), none of them before its transaction is
committed, and every one stored. The store is held write-locked while the
requests arrive: an answer that arrives then was sent before its commit.
Then `pos load --inflight` against the server (every answer matched and
stored, also when the server is SIGKILLed mid-run) and against a fake server
that answers out of order, which the load generator must report."""
import json
import signal
import socket
import sqlite3
import subprocess
import threading
import time

from posutil import Env, check, run, scenario_message, PAYGUARD

N = 50
NAMES = ("stay", "move2km", "move50km", "unknown", "foreign")


def frames(sock, want, timeout):
    """Reads bin2 frames until `want` of them or timeout seconds pass."""
    out, data, end = [], b"", time.monotonic() + timeout
    while len(out) < want:
        left = end - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
        while len(data) >= 2 and len(data) >= 2 + int.from_bytes(data[:2], "big"):
            n = int.from_bytes(data[:2], "big")
            out.append(data[:2 + n])
            data = data[2 + n:]
    return out


class StoreLock:
    """Holds the store's write lock until release(): SQLite's RESERVED lock
    (BEGIN IMMEDIATE), or an EXCLUSIVE lock on pos_txn in a psql session."""

    def __init__(self, db):
        self.db, self.con, self.psql = db, None, None
        if db.startswith("postgres"):
            self.psql = subprocess.Popen(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            self.psql.stdin.write("BEGIN;\nLOCK TABLE pos_txn IN EXCLUSIVE MODE;\n\\echo locked\n")
            self.psql.stdin.flush()
            check(self.psql.stdout.readline().strip() == "locked", "psql holds pos_txn locked")
        else:
            self.con = sqlite3.connect(db, isolation_level=None, timeout=10)
            self.con.execute("BEGIN IMMEDIATE")

    def release(self):
        if self.con:
            self.con.execute("ROLLBACK")
            self.con.close()
        if self.psql:
            self.psql.stdin.write("ROLLBACK;\n")
            self.psql.stdin.close()
            self.psql.wait(30)


def pipelined(env):
    reqs = [scenario_message(NAMES[i % len(NAMES)], 500000 + i) for i in range(N)]
    wire = b"".join(bytes.fromhex(run("encode", "--framing", "bin2", "-", input=json.dumps(m)).stdout.strip())
                    for m in reqs)
    s = socket.create_connection(("127.0.0.1", env.port), timeout=10)
    lock = StoreLock(env.db)
    s.sendall(wire)  # 50 requests in one write: the server reads them together
    early = frames(s, N, 1.5)
    lock.release()
    check(not early, "no answer while the store cannot commit (%d came early)" % len(early))
    got = frames(s, N, 30)
    s.close()
    check(len(got) == N, "%d answers to %d pipelined requests" % (len(got), N))
    answers = []
    for f in got:
        p = subprocess.run([PAYGUARD, "pos", "decode", "--framing", "bin2", "--json", "--file", "-"],
                           input=f, capture_output=True, timeout=60)
        if p.returncode:
            check(False, "answer decodes: %s" % p.stderr)
        answers.append(json.loads(p.stdout))
    stans = [a.get("11") for a in answers]
    check(stans == [m["11"] for m in reqs], "answers come in request order, STAN by STAN")
    check(all(a["0"] == "0210" and a["39"] in ("00", "05") for a in answers), "every answer is a 0210 with a decision")
    stored = {(t, st): rc for t, st, rc in env.rows("SELECT tid, stan, rc FROM pos_txn WHERE stan >= '500000'")}
    missing = [m["11"] for m, a in zip(reqs, answers) if stored.get((m["41"], m["11"])) != a["39"]]
    check(not missing, "every answered request is stored with its response code (%d not)" % len(missing))


def load_inflight(env):
    tpl = env.write("tpl.jsonl", "".join(json.dumps(scenario_message(n, 0)) + "\n" for n in NAMES))
    log = env.path("answered.log")
    p = run("load", "--port", str(env.port), "--conns", "3", "--inflight", "40", "--duration-ms", "1500",
            "--stan-base", "100000", "--log", log, "--json", tpl)
    stats = json.loads(p.stdout)
    print("load:", stats)
    lines = [l.split("|") for l in open(log).read().splitlines()]
    check(stats["inflight"] == 40 and stats["errors"] == 0 and stats["mismatched"] == 0,
          "pos load --inflight 40: no error, every answer matched its request")
    check(stats["answered"] == stats["sent"] == len(lines) and len(lines) > 200,
          "%d sent, all answered and logged" % len(lines))
    stored = {(t, st): rc for t, st, rc in env.rows(
        "SELECT tid, stan, rc FROM pos_txn WHERE stan >= '100000' AND stan < '500000'")}
    bad = sum(1 for tid, stan, rc, _ in lines if stored.get((tid, stan)) != rc)
    check(bad == 0, "every answer of the pipelined load is stored with its code (%d not)" % bad)


def load_killed(env):
    """SIGKILL under pipelined load: every answer that got out is stored."""
    tpl = env.path("tpl.jsonl")
    log = env.path("killed.log")
    load = subprocess.Popen([PAYGUARD, "pos", "load", "--port", str(env.port), "--conns", "8", "--inflight",
                             "32", "--duration-ms", "8000", "--stan-base", "600000", "--log", log, "--json", tpl],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    env.server.send_signal(signal.SIGKILL)
    env.server.wait()
    env.server = None
    out, _ = load.communicate(timeout=60)
    stats = json.loads(out)
    print("load:", stats)
    lines = [l.split("|") for l in open(log).read().splitlines()]
    check(len(lines) == stats["answered"] > 500, "%d answered before the kill" % len(lines))
    check(stats["mismatched"] == 0, "no answer out of order before the kill")
    stored = {(t, st): rc for t, st, rc in env.rows("SELECT tid, stan, rc FROM pos_txn WHERE stan >= '600000'")}
    missing = sum(1 for tid, stan, rc, _ in lines if stored.get((tid, stan)) != rc)
    check(missing == 0, "every answer sent before SIGKILL is stored (%d missing)" % missing)


def fake_server(swap):
    """Echoes each bin2 frame back (field 11 kept); with swap, answers each
    pair of requests in reverse order. Returns (port, thread)."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)

    def serve():
        c, _ = ls.accept()
        c.settimeout(10)
        data, held = b"", []
        try:
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
                while len(data) >= 2 and len(data) >= 2 + int.from_bytes(data[:2], "big"):
                    n = int.from_bytes(data[:2], "big")
                    held.append(data[:2 + n])
                    data = data[2 + n:]
                    if not swap:
                        c.sendall(held.pop())
                    elif len(held) == 2:
                        c.sendall(held[1] + held[0])
                        held = []
        except OSError:
            pass
        c.close()
        ls.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return ls.getsockname()[1], t


def load_mismatch(env):
    tpl = env.path("tpl.jsonl")
    for swap in (False, True):
        port, t = fake_server(swap)
        p = run("load", "--port", str(port), "--conns", "1", "--inflight", "4", "--duration-ms", "300", "--json",
                tpl, check_rc=False)
        t.join(20)
        stats = json.loads(p.stdout)
        print("fake server, swap=%s:" % swap, stats)
        if swap:
            check(stats["mismatched"] >= 1 and stats["errors"] >= 1,
                  "answers out of order are reported as mismatched")
        else:
            check(stats["mismatched"] == 0 and stats["answered"] > 10, "in-order echo: every answer matched")


env = Env("pipeline")
try:
    env.import_sample()
    env.start("--commit-timeout-ms", "20000")
    pipelined(env)
    load_inflight(env)
    load_mismatch(env)
    load_killed(env)
    print("PASS")
finally:
    env.cleanup()
