"""Issue 15, faults: the relay SIGKILLed 50 times at random moments while
events keep being written; afterwards the stream holds every event exactly
once. The outbox makes "never lost" hold (an event is only marked delivered
after JetStream acknowledged it), Nats-Msg-Id makes "never doubled" hold (a
kill between the acknowledgement and the progress row publishes again with
the same id and the stream drops it); the test also shows such repeats
happened, so the path was exercised. Read back by the npm `nats` client."""
import random
import signal
import subprocess
import threading
import time

from eventsutil import Env, check, consume, nats_urls

KILLS = 50
env = Env("faults")
urls = nats_urls()
consume(urls, delete=True)  # a clean stream: the fixture is shared (RESOURCE_LOCK nats)
emitted, stop = [], threading.Event()


def emitter():
    n = 0
    while not stop.is_set():
        subj = "T%07d" % (n % 7)
        p = env.run("emit", "--type", "pos.alert_opened", "--subject", subj, "--count", "40",
                    "--data", '{"batch": %d}' % n)
        emitted.extend(p.stdout.split())
        n += 1


th = threading.Thread(target=emitter)
th.start()
rng = random.Random(15)
repeats = 0
try:
    for i in range(KILLS):
        r = env.popen("relay", "--nats", urls, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.05, 0.6))
        r.send_signal(signal.SIGKILL)
        _, err = r.communicate()
        repeats += err.count("was in the stream already")
        check(r.returncode == -signal.SIGKILL, "relay %d killed by SIGKILL" % (i + 1))
finally:
    stop.set()
    th.join()

# the last relay catches up: two rounds leave nothing behind
for _ in range(50):
    p = env.run("relay", "--nats", urls, "--once")
    repeats += p.stderr.count("was in the stream already")
    left = consume(urls)
    if left["count"] >= len(emitted):
        break
out = consume(urls)
print("emitted %d events; the stream holds %d; %d repeats dropped by the stream"
      % (len(emitted), out["count"], repeats))
check(len(emitted) > 1000, "events were written throughout (%d)" % len(emitted))
check(out["problems"] == [], "every event is a valid CloudEvents 1.0 document")
check(len(out["ids"]) == len(set(out["ids"])), "no event is in the stream twice")
check(set(out["ids"]) == set(emitted), "every written event is in the stream")
check(out["stream_messages"] == len(emitted), "the stream's message count equals the events written")
check(repeats >= 1, "some kills fell between the stream's acknowledgement and the progress row")
env.cleanup()
