"""Access control of `payguard serve run` (issue 9): binding off loopback
without a token is refused before anything listens; with a token every
route needs `Authorization: Bearer <token>`. Tests bind 127.0.0.1 only."""
import os
import subprocess
import sys
import tempfile

from serveutil import PAYGUARD, Daemon


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main():
    with tempfile.TemporaryDirectory(prefix="pg-serve-token-") as tmp:
        # off loopback and no token: refused, exit code 5 (denied), nothing started
        r = subprocess.run([PAYGUARD, "serve", "run", "--data", tmp, "--listen", "0.0.0.0",
                            "--port", "0"], capture_output=True, text=True, timeout=30)
        check(r.returncode == 5 and "requires a token" in r.stderr, (r.returncode, r.stderr))
        check(not os.path.exists(os.path.join(tmp, "payguard.db")), "nothing may be created")
        # a token file that is too short is a usage error
        short = os.path.join(tmp, "short")
        with open(short, "w") as f:
            f.write("abc\n")
        os.chmod(short, 0o600)
        r = subprocess.run([PAYGUARD, "serve", "run", "--data", tmp, "--token-file", short],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 2, (r.returncode, r.stderr))

        tok = os.path.join(tmp, "token")
        secret = "s3cret-token-0123456789abcdef"
        with open(tok, "w") as f:
            f.write(secret + "\n")
        # a token group or others can read is no secret: refused (exit 5), with the chmod
        os.chmod(tok, 0o644)
        r = subprocess.run([PAYGUARD, "serve", "run", "--data", tmp, "--port", "0",
                            "--token-file", tok], capture_output=True, text=True, timeout=30)
        check(r.returncode == 5 and "permissions 0644 for '%s' are too open; run: chmod 600 '%s'"
              % (tok, tok) in r.stderr, (r.returncode, r.stderr))
        os.chmod(tok, 0o600)
        d = Daemon("--token-file", tok, demo=False)
        try:
            for path in ["/api/health", "/api/services", "/metrics", "/nope"]:
                s, v = d.get(path)
                check(s == 401 and "token" in v["error"]["message"], (path, s, v))
            for auth in ["Bearer wrong", "Bearer " + secret[:-1], "Bearer " + secret + "x",
                         "Basic " + secret, secret, "Bearer "]:
                s, v = d.get("/api/health", headers={"Authorization": auth})
                check(s == 401, (auth, s, v))
            s, v = d.request("POST", "/api/pos/alerts/1", {"action": "close"})
            check(s == 401, v)
            d.token = secret
            s, v = d.get("/api/health")
            check(s == 200 and v["status"] == "ok", v)
            s, v = d.get("/nope")
            check(s == 404, v)
            check("payguard_pos_transactions_total 0" in d.metrics_text(), "no demo: no transactions")
            rc = d.stop()
            check(rc == 0, rc)
        finally:
            d.cleanup()
    print("serve token: ok")


if __name__ == "__main__":
    sys.exit(main())
