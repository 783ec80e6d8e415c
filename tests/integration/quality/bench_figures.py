#!/usr/bin/python3
"""Benchmark figures in the docs must come from a result file (issue 18, item 5).

In each checked document, a *benchmark section* is a Markdown section (the
text under one heading, down to the next heading of any level) whose heading
says bench/benchmark/measured/performance, or whose text says "measured" or
"benchmark". In such a section every *figure* is checked:

  * a ratio:        4.3×  or 4.3x   (a number, then × or x, no number after it;
                                      "1,000,000 × 4" is a shape, not a ratio)
  * a rate:         512 MB/s, 1.2 GB/s, 82,587 tx/s, 82.6k tx/s
  * a time:         0.891 s, 114.3 s, 690 ms, 12.5 µs

and the section must name at least one result file, `bench/results/NAME.json`.
Three kinds of figure are no measurement and are not checked; each is
recognised only by the words right before it on its line (not_measured()):
  * a goal: right after "target", "target:" or "target of" ("target 30×",
    "the issue's target of 50,000 tx/s");
  * a bound or a duration a test, a setting or a run imposes: right after
    "within", "under", "up to", "at most", "at least", "every", "after",
    "for", "timeout", "timeout of", or one of ≥ ≤ < > ("within 10 s",
    "a new connection every 10 ms", "fuzzed for 60 s", "≥ 100 MB/s");
  * the result of arithmetic written out on its line: right after "=" or "≈"
    that follow a number, an operator (× / + −) and a number ("200,000 ×
    287 B = 57 MB/s"); the operands are figures and are checked themselves.
Anything else in a benchmark section is checked, so a page that quotes a
measurement without a result file must drop it or say it differently (for
a test's observed timing: drop it, the test's bound stays).

A figure passes when one of the named files holds a number of the same kind
that rounds to it at the precision printed (ratios: keys with "ratio";
rates: "mb_per"/"tps"/"_per_s" keys; times: keys whose name gives a time
unit, converted from it: "_us" microseconds, "_ms" milliseconds, "_s" or
"seconds" seconds, in "X_per_Y" X's unit, so p99_us_median 65300 is 65.3 ms
and mb_per_cpu_s is no time). A section quoting figures without naming a
file, a figure no named file holds, or a named file that does not exist
fails the test, which prints the document, line and figure.

Checked documents: README.md and every docs/*.md (CHECKED below), so a new
page is checked without being added here.
"""
import glob
import json
import os
import re
import sys

ROOT = os.environ.get("PG_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CHECKED = ["README.md"] + sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))

NUM = r"(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?"
FIGURE = re.compile(
    NUM + r"\s?(?:"
    r"(?P<ratio>[×x])(?![\s,]*\d)(?![A-Za-z])"
    r"|(?P<k>k)?\s?(?P<rate>MB/s|GB/s|tx/s)(?![A-Za-z])"
    r"|(?P<time>s|ms|µs|us)(?![A-Za-z/])"
    r")")
SECTION_WORDS = re.compile(r"bench|measured|performance", re.I)
TEXT_WORDS = re.compile(r"\bmeasured\b|\bbenchmark", re.I)
RESULT_FILE = re.compile(r"bench/results/([A-Za-z0-9._-]+\.json)")


def sections(lines):
    """(heading, first line number, lines) per Markdown section; code blocks kept out."""
    out, head, start, body, fence = [], "", 1, [], False
    for i, line in enumerate(lines, 1):
        if line.startswith("```"):
            fence = not fence
        if not fence and re.match(r"#{1,6} ", line):
            out.append((head, start, body))
            head, start, body = line, i, []
            continue
        body.append((i, line))
    out.append((head, start, body))
    return out


def numbers(obj, path=""):
    """Every (key path, number) in a JSON document."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for v in obj:
            yield from numbers(v, path)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path.lower(), float(obj)


TIME_UNIT = re.compile(r"(?:^|[._])(?:(?P<us>us)|(?P<ms>ms)|(?P<s>s|seconds))(?:$|[._])")
SCALE = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def key_seconds(key):
    """The factor that turns a time key's value into seconds, from the unit the key
    names (the last of "_us", "_ms", "_s"/"seconds" in its path: p99_us_median is in
    microseconds, fsync_ms_median in milliseconds, drain_s and seconds in seconds),
    or None when the key names no time unit."""
    # only the key's own name counts, and in "X_per_Y" only X: mb_per_cpu_s and
    # stored_per_s are rates, server_cpu_us_per_tx a time in microseconds
    name = key.rsplit(".", 1)[-1].split("_per_", 1)[0]
    unit = None
    for m in TIME_UNIT.finditer(name):
        unit = m.lastgroup
    return SCALE[unit] if unit else None


def kind_keys(kind):
    if kind == "ratio":
        return lambda k: "ratio" in k
    if kind == "rate":
        return lambda k: "mb_per" in k or "tps" in k or "_per_s" in k
    return lambda k: key_seconds(k) is not None


def holds(values, kind, unit, thousands, value, decimals):
    """A number of this kind in values that, in the printed unit, rounds to value.
    Times are converted from the key's own unit to the printed one."""
    ok = kind_keys(kind)
    for k, v in values:
        if not ok(k):
            continue
        if unit == "GB/s":
            v = v / 1e3
        elif kind == "time":
            printed = {"s": "s", "ms": "ms", "µs": "us", "us": "us"}[unit]
            v = v * key_seconds(k) / SCALE[printed]
        if thousands:
            v = v / 1e3
        # "rounds to": within half a unit of the last printed digit, a tie either
        # way (9,050 µs is 9.05 ms, printed 9.1 or 9.0), with room for the
        # binary error of the unit conversion
        if abs(v - value) <= 0.5 * 10 ** -decimals + 1e-9 * max(1.0, abs(value)):
            return True
    return False


# What comes right before a figure that makes it no measurement (see the top of
# this file): a goal, a limit or duration a test or a setting imposes, or the
# result of arithmetic written out on the same line.
GOAL = re.compile(r"\btargets?(?: of|:)?\s*$", re.I)
BOUND = re.compile(r"(?:\b(?:within|under|up to|at most|at least|every|after|for|"
                   r"timeout(?: of)?)|[≥≤<>])\s*$", re.I)
ARITHMETIC = re.compile(r"\d[\d,.]*\s*[^\s=≈]*\s*[×/+−]\s*\d[^=≈]*[=≈]\s*$")


def not_measured(before):
    """True when the text before a figure on its line marks the figure as a goal,
    a bound or a derived value, not a measurement."""
    return bool(GOAL.search(before) or BOUND.search(before) or ARITHMETIC.search(before))


def check_doc(rel, failures):
    path = os.path.join(ROOT, rel)
    lines = open(path, encoding="utf-8").read().split("\n")
    nfig = 0
    for head, start, body in sections(lines):
        text = "\n".join(l for _, l in body)
        if not (SECTION_WORDS.search(head) or TEXT_WORDS.search(text)):
            continue
        figs = []
        fence = False
        for i, line in body:
            if line.startswith("```"):
                fence = not fence
            if fence:
                continue
            for m in FIGURE.finditer(line):
                if not not_measured(line[:m.start()]):
                    figs.append((i, m))
        if not figs:
            continue
        files = sorted(set(RESULT_FILE.findall(text)))
        where = f"{rel}:{start} section '{head.strip('# ') or '(top)'}'"
        if not files:
            failures.append(f"{where}: quotes {len(figs)} benchmark figure(s) (first: "
                            f"'{figs[0][1].group(0)}' on line {figs[0][0]}) but names no "
                            f"bench/results/*.json file")
            continue
        values = []
        for f in files:
            fp = os.path.join(ROOT, "bench", "results", f)
            if not os.path.exists(fp):
                failures.append(f"{where}: names bench/results/{f}, which does not exist")
                continue
            values += list(numbers(json.load(open(fp))))
        for i, m in figs:
            whole, frac = m.group(1).replace(",", ""), m.group(2) or ""
            value = float(whole + ("." + frac if frac else ""))
            kind = "ratio" if m.group("ratio") else "rate" if m.group("rate") else "time"
            unit = m.group("rate") or m.group("time") or "x"
            nfig += 1
            if not holds(values, kind, unit, bool(m.group("k")), value, len(frac)):
                failures.append(f"{rel}:{i}: '{m.group(0)}' is in no {kind} of "
                                f"{', '.join('bench/results/' + f for f in files)}")
    return nfig


def self_test():
    """The pattern and the matching on made-up text, so the check cannot pass by
    matching nothing."""
    want = ["4.3×", "10.6x", "512 MB/s", "82,587 tx/s", "0.891 s", "690 ms", "82.6k tx/s"]
    text = ("ratio 4.3× and 10.6x; 512 MB/s; 82,587 tx/s; 0.891 s; 690 ms; 82.6k tx/s; "
            "but 1,000,000 × 4 and 2x4 and 20 MB/sec and 3 samples and 0x10 are not")
    got = [m.group(0) for m in FIGURE.finditer(text)]
    assert got == want, got
    # a section quoting a figure no file holds, or naming no file, fails
    import tempfile
    global ROOT
    saved = ROOT
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "bench", "results"))
        json.dump({"ratio": 4.34}, open(os.path.join(d, "bench", "results", "r.json"), "w"))
        open(os.path.join(d, "a.md"), "w").write(
            "# Benchmark\nMeasured (bench/results/r.json): 4.3× and 5.1×, target 30×.\n"
            "## Other\nmeasured 2.0× with no file\n## Plain\n1,000,000 × 4 at 20 MB/s\n")
        ROOT = d
        fails = []
        n = check_doc("a.md", fails)
        ROOT = saved
    assert n == 2 and len(fails) == 2, (n, fails)
    assert "'5.1×' is in no ratio" in fails[0] and "names no bench/results" in fails[1], fails
    vals = list(numbers({"a": {"ratio": 4.34, "mb_per_cpu_s": 511.6, "seconds": 0.8912,
                               "tps_median": 82587.4}}))
    assert holds(vals, "ratio", "x", False, 4.3, 1)
    assert not holds(vals, "ratio", "x", False, 4.4, 1)
    assert holds(vals, "rate", "MB/s", False, 512, 0)
    assert holds(vals, "time", "s", False, 0.891, 3)
    assert holds(vals, "time", "ms", False, 891, 0)
    assert holds(vals, "rate", "tx/s", False, 82587, 0)
    assert holds(vals, "rate", "tx/s", True, 82.6, 1)
    assert not holds(vals, "time", "s", False, 4.34, 2)  # a ratio is no time
    # times are converted from the unit the key names, not assumed to be seconds
    vals = list(numbers({"pg": {"p99_us_median": 65300.0, "fsync_ms_median": 0.18,
                                "server_cpu_us_per_tx_median": 2.84},
                         "load": {"mb_per_cpu_s": 511.6, "stored_per_s_median": 4773.9},
                         "stream": {"result": {"seconds": 154.153}}}))
    assert holds(vals, "time", "ms", False, 65.3, 1)
    assert not holds(vals, "time", "s", False, 65.3, 1)
    assert holds(vals, "time", "s", False, 0.07, 2)  # 65,300 µs is 0.07 s
    assert holds(vals, "time", "ms", False, 0.18, 2)
    assert holds(vals, "time", "µs", False, 180, 0)
    assert not holds(vals, "time", "s", False, 0.18, 2)
    assert holds(vals, "time", "µs", False, 2.8, 1)  # µs per transaction
    assert holds(vals, "time", "s", False, 154.2, 1)
    vals9 = [(".p99_us_median", 9050.0)]
    assert holds(vals9, "time", "ms", False, 9.1, 1) and holds(vals9, "time", "ms", False, 9.0, 1)
    assert not holds(vals9, "time", "ms", False, 9.2, 1)
    assert not holds(vals9, "time", "ms", False, 9.06, 2)
    assert holds(vals, "time", "ms", False, 154153, 0)
    assert holds(vals, "rate", "MB/s", False, 512, 0)
    assert not holds(vals, "time", "s", False, 512, 0)  # a rate per CPU second is no time
    assert holds(vals, "rate", "tx/s", False, 4774, 0)
    for key, scale in [(".a.p99_us", 1e-6), (".a.fsync_ms_median", 1e-3), (".a.drain_s", 1.0),
                       (".seconds", 1.0), (".a.cpu_us_per_tx", 1e-6), (".a.tps", None),
                       (".a.mb_per_cpu_s", None), (".cpus", None), (".a.ratio", None)]:
        assert key_seconds(key) == scale, (key, key_seconds(key))
    # goals, bounds and written-out arithmetic are skipped, nothing else is
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "bench", "results"))
        json.dump({"tps": 77616, "wal_bytes": 287},
                  open(os.path.join(d, "bench", "results", "r.json"), "w"))
        open(os.path.join(d, "a.md"), "w").write(
            "# Benchmark\nMeasured (bench/results/r.json): 77,616 tx/s, the target of "
            "50,000 tx/s;\ntakes over within 10 s, a probe every 10 ms, fuzzed for 60 s, "
            "needs ≥ 100 MB/s, loses at most 0.6 s;\n200,000 × 287 B = 57 MB/s and "
            "200,000 × 287 B ≈ 57 MB/s.\nBut throughput = 57 MB/s, and about 3 s, and "
            "10 s measured.\n")
        ROOT = d
        fails = []
        n = check_doc("a.md", fails)
        ROOT = saved
    assert n == 4 and len(fails) == 3, (n, fails)
    assert all(f in " ".join(fails) for f in ("'57 MB/s'", "'3 s'", "'10 s'")), fails


def main():
    self_test()
    failures, total = [], 0
    for rel in CHECKED:
        total += check_doc(rel, failures)
    print(f"checked {', '.join(CHECKED)}: {total} benchmark figure(s) in benchmark sections")
    for f in failures:
        print("FAIL " + f)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
