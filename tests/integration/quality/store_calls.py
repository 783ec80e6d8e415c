#!/usr/bin/python3
"""The store API's boundary (issue 14, build item 1): no sqlite3_* or PQ*
call anywhere under src/ but in the two drivers, src/core/db_sqlite.c and
src/core/db_pg.c, and their shared header src/core/db_int.h. Every area goes
through include/payguard/db.h instead. Calls are found in the C text with
comments and string and character literals blanked out (so a comment that
names sqlite3_exec() is not a call), as IDENT( with IDENT sqlite3_... or
PQ... . Before judging src/ the check proves itself on generated files: a
call in code must be found; one in a comment or a string must not.
usage: store_calls.py SRC_DIR"""
import os
import re
import sys
import tempfile

DRIVERS = {"core/db_sqlite.c", "core/db_pg.c", "core/db_int.h"}
CALL = re.compile(r"\b(sqlite3_[A-Za-z0-9_]+|PQ[A-Za-z0-9_]+)\s*\(")
TOKEN = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)


def blank(text):
    """Comments and literals replaced by spaces, newlines kept (line numbers hold)."""
    return TOKEN.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def calls(path):
    code = blank(open(path, encoding="utf-8", errors="replace").read())
    for m in CALL.finditer(code):
        yield code.count("\n", 0, m.start()) + 1, m.group(1)


def self_test():
    with tempfile.TemporaryDirectory() as d:
        bad = os.path.join(d, "bad.c")
        with open(bad, "w") as f:
            f.write("int f(sqlite3 *db)\n{\n\treturn sqlite3_exec (db, \"x\", 0, 0, 0);\n}\n"
                    "int g(void *c) { return PQstatus(c); }\n")
        good = os.path.join(d, "good.c")
        with open(good, "w") as f:
            f.write("/* sqlite3_exec(db) is the driver's;\n * PQexec() too */\n"
                    "// sqlite3_open(x)\nconst char *s = \"PQconnectdb(\\\"\";\n"
                    "char c = '('; int my_sqlite3_x(void); int PQ_x;\n")
        found = list(calls(bad))
        if found != [(3, "sqlite3_exec"), (5, "PQstatus")]:
            sys.exit("store_calls: the check missed calls in code: %s" % found)
        if list(calls(good)):
            sys.exit("store_calls: the check took comments or strings for calls: %s" % list(calls(good)))


def main(src):
    self_test()
    bad = []
    n = 0
    for root, _, files in os.walk(src):
        for name in sorted(files):
            if not name.endswith((".c", ".h")):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, src)
            n += 1
            if rel in DRIVERS:
                continue
            bad += ["src/%s:%d: %s()" % (rel, line, ident) for line, ident in calls(path)]
    if n < 50:
        sys.exit("store_calls: only %d C files under %s: wrong folder?" % (n, src))
    if bad:
        print("sqlite3_*/PQ* calls outside the store drivers (use include/payguard/db.h):")
        print("\n".join(sorted(bad)))
        files = sorted({b.split(":")[0] for b in bad})
        print("%d call(s) in %d file(s): %s" % (len(bad), len(files), " ".join(files)))
        return 1
    print("ok: %d C files; sqlite3_*/PQ* called only in %s" % (n, ", ".join(sorted(DRIVERS))))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
