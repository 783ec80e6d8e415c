#!/usr/bin/python3
"""Prints the events in a store's outbox (issue 15), for the areas' tests:
one line per event, in outbox order, "TYPE SUBJECT DATA" with DATA as
compact JSON with sorted keys. STORE is a SQLite file or a postgresql://
URL (read with psql, PostgreSQL's own client). Each document is checked
against the CloudEvents 1.0 shape payguard writes (specversion, id, source,
type and subject equal to the row's, time, data); a malformed one fails.

usage: outbox.py STORE [TYPE_PREFIX]"""
import json
import sqlite3
import subprocess
import sys


def rows(store):
    if store.startswith("postgresql:") or store.startswith("postgres:"):
        p = subprocess.run(["psql", "-X", "-A", "-t", "-F", "\x1f", "-R", "\x1e", "-d", store, "-c",
                            "SELECT type, subject, body FROM event_outbox ORDER BY seq"],
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            sys.exit("outbox.py: psql: " + p.stderr.strip())
        return [r.split("\x1f") for r in p.stdout.split("\x1e") if r.strip()]
    db = sqlite3.connect("file:%s?mode=ro" % store, uri=True)
    try:
        return db.execute("SELECT type, subject, body FROM event_outbox ORDER BY seq").fetchall()
    finally:
        db.close()


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    prefix = sys.argv[2] if len(sys.argv) == 3 else ""
    for typ, subj, body in rows(sys.argv[1]):
        typ, subj = typ.strip(), subj.strip()
        ev = json.loads(body)
        for k in ("specversion", "id", "source", "type", "time", "data"):
            if k not in ev:
                sys.exit("outbox.py: event without %s: %s" % (k, body))
        if ev["specversion"] != "1.0" or ev["type"] != typ or ev.get("subject", "") != subj:
            sys.exit("outbox.py: event does not match its row (%s %s): %s" % (typ, subj, body))
        if typ.startswith(prefix):
            print(typ, subj, json.dumps(ev["data"], sort_keys=True, separators=(",", ":")))


main()
