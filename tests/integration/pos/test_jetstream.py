"""POS intake through NATS JetStream (issue 15 acceptance, faults): two POS
servers ("nodes" a and b) in --intake jetstream mode on one PostgreSQL
store, against the three-node JetStream cluster of the `nats` fixture, both
running sinks on the shared durable consumer.

1. SIGKILL of one NATS server (the intake stream's leader) under traffic on
   both nodes, restarted 13 s later: answers (not 96) go on once the two
   servers left have elected a new leader; no answered transaction (approve
   or decline, not 96) is lost, none is stored twice.
2. The store stopped for 10 s under traffic, once by SIGSTOP of the
   postmaster and every backend, once by `pg_ctl stop` / `pg_ctl start`:
   terminals keep being answered, never 96, within the deadline; the stream
   holds the backlog meanwhile; once the store is back every answered
   transaction is stored exactly once.

Answers are the load tool's log (tid|stan|rc|text); rows are read with
psql. The test runs its own PostgreSQL (tests/fixtures/postgres.sh in a
state folder of its own), since it stops it."""
import json
import os
import signal
import subprocess
import time
import urllib.parse

from posutil import Env, check, run, scenario_message, PAYGUARD
import natsreq  # posutil put tests/fixtures on the path

HERE = os.path.dirname(os.path.abspath(__file__))
PG_FIXTURE = os.path.join(HERE, "..", "..", "fixtures", "postgres.sh")
NATS_FIXTURE = os.path.join(HERE, "..", "..", "fixtures", "nats.sh")
NATS_STATE = os.environ.get("PG_NATS_STATE") or os.path.join(os.environ["PG_BUILD_DIR"], "nats-fixture")
STREAM = "PAYGUARD_POS"
DEADLINE_MS = 3000
# one loop pass after the deadline, and scheduling on a busy 2-core machine under ASan
MARGIN_MS = 1000
STOP_S = 10.0


def nats_urls():
    return open(os.path.join(NATS_STATE, "nats.urls")).read().strip()


def nats_nodes():
    """name -> (pid, client port)"""
    out = {}
    for line in open(os.path.join(NATS_STATE, "nats.nodes")):
        f = line.split()
        out[f[0]] = (int(f[1]), int(f[2]))
    return out


def nats_request(subject, payload=b"", timeout=5.0):
    return natsreq.request(nats_urls(), subject, payload, timeout)


def stream_info():
    return nats_request("$JS.API.STREAM.INFO." + STREAM)


env_a, env_b = Env("js-a"), Env("js-b")
pg_state = env_a.path("pgstate")
stopped = []
pg_up = False


def as_pg(*cmd):
    return (["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []) + list(cmd)


try:
    subprocess.run(["bash", PG_FIXTURE, "start", pg_state], check=True, timeout=180)
    pg_up = True
    pgdir = open(os.path.join(pg_state, "postgres.dir")).read().strip()
    url = open(os.path.join(pg_state, "postgres.url")).read().strip()
    q = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    host, user = q["host"][0], q["user"][0]
    bindir = sorted(d for d in (os.path.join("/usr/lib/postgresql", v, "bin")
                                for v in os.listdir("/usr/lib/postgresql")) if os.path.exists(d))[-1]
    pg_ctl = [os.path.join(bindir, "pg_ctl"), "-D", os.path.join(pgdir, "data"), "-l",
              os.path.join(pgdir, "server.log"), "-w", "-t", "60"]

    def psql(sql):
        p = subprocess.run(["psql", "-X", "-A", "-t", "-F", "|", "-h", host, "-U", user, "-d", "payguard",
                            "-c", sql], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise SystemExit("FAIL: psql %s: %s" % (sql, p.stderr))
        return [l.split("|") for l in p.stdout.splitlines() if l]

    def cluster_pids():
        pm = int(open(os.path.join(pgdir, "data", "postmaster.pid")).readline())
        pids = [pm]
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    stat = open("/proc/%s/stat" % d).read()
                except OSError:
                    continue
                if int(stat[stat.rindex(")") + 2:].split()[1]) == pm:
                    pids.append(int(d))
        return pids

    # the switch's bad uses: usage errors (2), and a NATS nobody listens on (1, said so)
    lite = env_a.path("lite.db")
    for args, code, what in ((["--intake", "jetstream"], 2, "go together"),
                             (["--nats", nats_urls()], 2, "go together"),
                             (["--intake", "kafka", "--nats", nats_urls()], 2, "store or jetstream"),
                             (["--intake", "jetstream", "--nats", "nats://127.0.0.1:1"], 1, "connect to NATS")):
        p = run("serve", "--port", "0", "--db", lite, *args, check_rc=False)
        check(p.returncode == code and what in p.stderr,
              "serve %s: exit %d, says '%s' (%d: %s)" % (" ".join(args), code, what, p.returncode,
                                                         p.stderr.strip()[-200:]))

    # a stream left over by an earlier run would hand its transactions to our sinks
    r = nats_request("$JS.API.STREAM.DELETE." + STREAM)
    print("stream delete:", r, flush=True)

    env_a.db = env_b.db = url
    env_a.import_sample()
    tpl = env_a.write("tpl.jsonl", "".join(json.dumps(scenario_message(n, 0)) + "\n"
                                           for n in ("stay", "move2km", "move50km", "unknown", "foreign")))
    for env, node in ((env_a, "a"), (env_b, "b")):
        env.start("--intake", "jetstream", "--nats", nats_urls(), "--node", node, "--alert-n", "3",
                  "--commit-timeout-ms", str(DEADLINE_MS))
    info = stream_info()
    check(info.get("config", {}).get("num_replicas") == 3 and info["config"]["storage"] == "file"
          and info["config"]["subjects"] == ["payguard-intake.pos.>"],
          "stream %s: 3 replicas, file storage, its own subjects (%s)" % (STREAM, info.get("config")))

    def load(env, log, stan_base, seconds):
        return subprocess.Popen([PAYGUARD, "pos", "load", "--port", str(env.port), "--conns", "6",
                                 "--duration-ms", str(int(seconds * 1000)), "--stan-base", str(stan_base),
                                 "--log", log, "--json", tpl],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def lines_of(log, start=0, end=None):
        data = open(log, "rb").read()[start:end]
        return [l.split("|") for l in data.decode().splitlines() if l.count("|") == 3]

    def traffic(name, stan_a, stan_b, seconds, fault_at, fault):
        """Traffic on both nodes; fault(logs) runs fault_at s in; returns (stats, answers, fault result)."""
        logs = [env_a.path("%s-a.log" % name), env_b.path("%s-b.log" % name)]
        for l in logs:
            open(l, "w").close()
        ld = [load(env_a, logs[0], stan_a, seconds), load(env_b, logs[1], stan_b, seconds)]
        time.sleep(fault_at)
        before = sum(len(lines_of(l)) for l in logs)
        check(before > 50, "%s: %d answers before the fault" % (name, before))
        res = fault(logs)
        stats, answers = [], []
        for p, l in zip(ld, logs):
            out, err = p.communicate(timeout=180)
            check(p.returncode == 0, "%s: load ran (%s)" % (name, err.strip()))
            stats.append(json.loads(out))
            answers += lines_of(l)
        print("%s load:" % name, stats, flush=True)
        check(env_a.server.poll() is None and env_b.server.poll() is None, "%s: both nodes kept running" % name)
        return stats, answers, res

    def stored_rows():
        rows = {}
        for tid, stan, rc, dec in psql("SELECT tid, stan, rc, decision FROM pos_txn"):
            rows.setdefault((tid, stan), []).append((rc, dec))
        return rows

    def wait_stored(name, answers, timeout=120):
        """Until the stream is drained and every answered transaction is in the store."""
        want = {(l[0], l[1]) for l in answers if l[2] != "96"}
        t = time.time()
        while True:
            rows = stored_rows()
            left = [k for k in want if k not in rows]
            msgs = stream_info().get("state", {}).get("messages", -1)
            if (not left and msgs == 0) or time.time() - t > timeout:
                break
            time.sleep(0.5)
        print("%s: drained in %.1f s (%d answered not stored yet, %d messages in the stream)"
              % (name, time.time() - t, len(left), msgs), flush=True)
        return rows

    def verify(name, answers, rows):
        names = {"IN_PLACE": "in_place", "MOVED": "moved", "UNDETERMINED": "undetermined"}
        missing = dup = wrong = 0
        for l in answers:
            if l[2] == "96":
                continue
            s = rows.get((l[0], l[1]), [])
            missing += not s
            dup += len(s) > 1
            wrong += bool(s) and (s[0][0] != l[2] or s[0][1] != names[l[3].split()[0]])
        n = sum(1 for l in answers if l[2] != "96")
        check(n > 500, "%s: %d answers that are not 96" % (name, n))
        check(missing == 0, "%s: every answered transaction is stored (%d missing)" % (name, missing))
        check(dup == 0, "%s: ... exactly once (%d twice)" % (name, dup))
        check(wrong == 0, "%s: ... with its decision and response code (%d differ)" % (name, wrong))
        twice = psql("SELECT count(*) FROM (SELECT tid, stan, f7 FROM pos_txn GROUP BY tid, stan, f7"
                     " HAVING count(*) > 1) d")[0][0]
        check(twice == "0", "%s: no transaction is in pos_txn twice (%s)" % (name, twice))

    # ---- 1. SIGKILL of the stream leader's NATS server ----
    def kill_leader(logs):
        leader = stream_info()["cluster"]["leader"]
        pid = nats_nodes()[leader][0]
        os.kill(pid, signal.SIGKILL)
        t = time.time()
        print("SIGKILL of NATS server %s (pid %d), the stream's leader" % (leader, pid), flush=True)
        # the two replicas left elect a new leader within NATS's raft election
        # timeout (4 to 9 s); meanwhile publishes wait, and past the deadline
        # their terminals get 96
        time.sleep(10.0)
        w0 = [os.path.getsize(l) for l in logs]
        time.sleep(3.0)
        w1 = [os.path.getsize(l) for l in logs]
        print("new stream leader: %s" % stream_info()["cluster"].get("leader"), flush=True)
        p = subprocess.run(["bash", NATS_FIXTURE, "restart", NATS_STATE, leader], capture_output=True, text=True,
                           timeout=120)
        check(p.returncode == 0, "nats.sh restart %s (%s)" % (leader, p.stderr.strip()))
        print("%s restarted %.1f s after the kill" % (leader, time.time() - t), flush=True)
        return leader, w0, w1

    stats, answers, (leader, w0, w1) = traffic("natskill", 1, 500000, 22.0, 4.0, kill_leader)
    logs = [env_a.path("natskill-a.log"), env_b.path("natskill-b.log")]
    down = sum(1 for i, l in enumerate(logs) for x in lines_of(l, w0[i], w1[i]) if x[2] != "96")
    check(down > 50, "natskill: answers that are not 96 go on 10..13 s after %s died, before its restart (%d)" % (leader, down))
    n96 = sum(1 for l in answers if l[2] == "96")
    print("natskill: %d answers, %d of them 96 (stream not durable within %d ms)"
          % (len(answers), n96, DEADLINE_MS), flush=True)
    rows = wait_stored("natskill", answers)
    verify("natskill", answers, rows)
    # a 96 says "not known to be recorded": a publish the stream took after the deadline is stored
    print("natskill: %d of the 96 answers were stored all the same"
          % sum(1 for l in answers if l[2] == "96" and (l[0], l[1]) in rows), flush=True)
    for env in (env_a, env_b):
        check("pos-sink: storing from stream" in env.server_log(), "node %s runs a sink" % env.dir)

    # ---- 2. the store away for 10 s: SIGSTOP, then pg_ctl stop / start ----
    def sigstop(logs):
        pids = cluster_pids()
        for p in pids:
            os.kill(p, signal.SIGSTOP)
        stopped.extend(pids)
        time.sleep(STOP_S - 1.0)
        backlog = stream_info()["state"]["messages"]
        time.sleep(1.0)
        for p in pids:
            os.kill(p, signal.SIGCONT)
        del stopped[:]
        return backlog

    def pgstop(logs):
        p = subprocess.run(as_pg(*pg_ctl, "-m", "fast", "stop"), capture_output=True, text=True, timeout=120)
        check(p.returncode == 0, "pg_ctl stop (%s)" % p.stderr.strip())
        t = time.time()
        time.sleep(STOP_S - 1.0)
        backlog = stream_info()["state"]["messages"]
        time.sleep(max(0.0, STOP_S - (time.time() - t)))
        # the fixture's options: no TCP, the socket in its folder
        opts = "-c listen_addresses='' -c unix_socket_directories='%s' -c max_connections=200 -c fsync=on" % pgdir
        p = subprocess.run(as_pg(*pg_ctl, "-o", opts, "start"), capture_output=True, text=True, timeout=120)
        check(p.returncode == 0, "pg_ctl start (%s)" % p.stderr.strip())
        return backlog

    base = {"sigstop": (100000, 600000), "pgstop": (200000, 700000)}
    for name, fault in (("sigstop", sigstop), ("pgstop", pgstop)):
        stats, answers, backlog = traffic(name, base[name][0], base[name][1], 3.0 + STOP_S + 4.0, 3.0, fault)
        n96 = sum(1 for l in answers if l[2] == "96")
        check(n96 == 0, "%s: no terminal was answered 96 while the store was away (%d)" % (name, n96))
        slowest = max(s["max_us"] for s in stats) / 1000
        check(slowest <= DEADLINE_MS + MARGIN_MS,
              "%s: slowest answer %.0f ms within the deadline %d ms (+%d)" % (name, slowest, DEADLINE_MS,
                                                                             MARGIN_MS))
        check(backlog > 100, "%s: the stream held the backlog while the store was away (%d messages)"
              % (name, backlog))
        verify(name, answers, wait_stored(name, answers))
        print("figures: %s %d answers, tps %.0f + %.0f, p99 %.1f / %.1f ms, max %.0f ms, backlog %d"
              % (name, len(answers), stats[0]["tps"], stats[1]["tps"], stats[0]["p99_us"] / 1000,
                 stats[1]["p99_us"] / 1000, slowest, backlog), flush=True)
    for env in (env_a, env_b):
        env.stop()
finally:
    for p in stopped:
        try:
            os.kill(p, signal.SIGCONT)
        except OSError:
            pass
    for env in (env_a, env_b):
        env.stop()
        if os.path.exists(env.path("server.log")):
            print(env.server_log()[-2500:])
    if pg_up:
        subprocess.run(["bash", PG_FIXTURE, "stop", pg_state], timeout=120)
    env_b.cleanup()
    env_a.cleanup()
