"""Issue 15, the webhook sink: a local receiver that refuses the first
tries (HTTP 500, then now and then 503 or a dropped connection) gets every
event, in order per subject, each signed as Standard Webhooks specifies
(webhook-id, webhook-timestamp, webhook-signature "v1,<base64 HMAC-SHA256
of id.timestamp.body>" under the key in the whsec_ secret), the signature
checked here with Python's own hmac."""
import base64
import hashlib
import hmac
import http.server
import json
import os
import signal
import subprocess
import threading
import time

from eventsutil import Env, check

env = Env("webhook")
key = os.urandom(24)
secret_file = os.path.join(env.dir, "webhook.secret")
with open(secret_file, "w") as f:
    f.write("whsec_" + base64.b64encode(key).decode() + "\n")

lock = threading.Lock()
state = {"requests": 0, "bad_sig": 0, "accepted": [], "refused": 0}


class Receiver(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        wid, ts = self.headers.get("webhook-id"), self.headers.get("webhook-timestamp")
        sig = self.headers.get("webhook-signature", "")
        want = base64.b64encode(hmac.new(key, b"%s.%s.%s" % (wid.encode(), ts.encode(), body),
                                         hashlib.sha256).digest()).decode()
        ok_sig = any(s.startswith("v1,") and hmac.compare_digest(s[3:], want) for s in sig.split())
        ok_ts = abs(time.time() - int(ts)) < 300
        with lock:
            state["requests"] += 1
            n = state["requests"]
            if not (ok_sig and ok_ts):
                state["bad_sig"] += 1
        if n <= 5 or n % 7 == 0:
            with lock:
                state["refused"] += 1
            self.send_response(500 if n <= 5 else 503)
            self.end_headers()
            return
        if n % 11 == 0:  # a receiver that dies mid-request
            with lock:
                state["refused"] += 1
            self.close_connection = True
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        ev = json.loads(body)
        with lock:
            state["accepted"].append((ev["id"], ev.get("subject"), self.headers.get("Content-Type")))
        self.send_response(204)
        self.end_headers()


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=srv.serve_forever, daemon=True).start()
url = "http://127.0.0.1:%d/hook" % srv.server_address[1]

emitted = []  # (id, subject) in commit order
relay = env.popen("relay", "--webhook", url, "--webhook-secret-file", secret_file,
                  stderr=subprocess.DEVNULL)
for i in range(30):
    subj = "img-%d" % (i % 3)
    p = env.run("emit", "--type", "image.finding_fixed", "--subject", subj, "--count", "5")
    emitted += [(e, subj) for e in p.stdout.split()]
deadline = time.time() + 180
while time.time() < deadline:
    with lock:
        got = {a[0] for a in state["accepted"]}
    if got >= {e for e, _ in emitted}:
        break
    time.sleep(0.2)
relay.send_signal(signal.SIGTERM)
check(relay.wait(timeout=30) == 0, "the relay stops cleanly on SIGTERM")
srv.shutdown()

acc = state["accepted"]
print("requests %d, refused %d, accepted %d, events %d" % (state["requests"], state["refused"],
                                                         len(acc), len(emitted)))
check(state["refused"] >= 5, "the receiver refused deliveries (the relay had to retry)")
check({a[0] for a in acc} == {e for e, _ in emitted}, "every event arrived")
check(len(acc) == len({a[0] for a in acc}), "no event was accepted twice")
check(state["bad_sig"] == 0, "every request carried a valid Standard Webhooks signature")
check(all(a[2] == "application/cloudevents+json" for a in acc), "content type is CloudEvents JSON")
for subj in ("img-0", "img-1", "img-2"):
    want = [e for e, s in emitted if s == subj]
    have = [a[0] for a in acc if a[1] == subj]
    check(have == want, "events of subject %s arrived in order" % subj)

# A secret file others may read is refused before anything is sent.
os.chmod(secret_file, 0o644)
p = env.run("relay", "--webhook", url, "--webhook-secret-file", secret_file, "--once",
            check_rc=False)
check(p.returncode != 0 and "chmod" in p.stderr, "a secret file open to others is refused")
env.cleanup()
