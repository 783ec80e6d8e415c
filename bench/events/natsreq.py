"""A minimal NATS client for the events benchmark (the NATS text protocol
over a socket; no package needed): `request URLS SUBJECT [PAYLOAD]` prints
the JSON reply of a JetStream API request; `listen URLS SUBJECT N TIMEOUT`
prints the arrival time (monotonic seconds) of each of N messages on a core
subscription, one per line, after a line "ready"."""
import json
import socket
import sys
import time


def connect(urls, timeout):
    last = None
    for url in urls.split(","):
        try:
            s = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=timeout)
            f = s.makefile("rb")
            f.readline()  # INFO
            s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
            return s, f
        except OSError as e:
            last = e
    raise SystemExit("natsreq: no NATS server answered (%s)" % last)


def next_msg(s, f):
    while True:
        line = f.readline()
        if not line:
            raise SystemExit("natsreq: connection closed")
        if line.startswith(b"PING"):
            s.sendall(b"PONG\r\n")
        elif line.startswith(b"MSG "):
            n = int(line.split()[-1])
            return f.read(n + 2)[:n]
        elif line.startswith(b"-ERR"):
            raise SystemExit("natsreq: " + line.decode().strip())


def request(urls, subject, payload=b""):
    s, f = connect(urls, 5.0)
    s.sendall(b"SUB _INBOX.bench 1\r\nPUB %s _INBOX.bench %d\r\n%s\r\n" % (subject.encode(), len(payload), payload))
    print(json.dumps(json.loads(next_msg(s, f))))


def listen(urls, subject, n, timeout):
    s, f = connect(urls, timeout)
    s.sendall(b"SUB %s 1\r\nPING\r\n" % subject.encode())
    while not f.readline().startswith(b"PONG"):
        pass
    print("ready", flush=True)
    for _ in range(n):
        next_msg(s, f)
        print("%.6f" % time.monotonic())


if __name__ == "__main__":
    if sys.argv[1] == "request":
        request(sys.argv[2], sys.argv[3], sys.argv[4].encode() if len(sys.argv) > 4 else b"")
    else:
        listen(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
