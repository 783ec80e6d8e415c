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
A goal is no measurement: a figure right after the word "target" ("target
30×", "target: 500 MB/s") is not checked.
A figure passes when one of the named files holds a number of the same kind
that rounds to it at the precision printed (ratios: keys with "ratio";
rates: "mb_per"/"tps" keys; times: keys with "seconds", ending in "_s" or
"_us", or lists of runs under such keys). A section quoting figures without
naming a file, a figure no named file holds, or a named file that does not
exist fails the test, which prints the document, line and figure.

Checked documents: CHECKED below. Other areas' pages (docs/pos.md,
docs/serve.md, ...) are not checked yet: their helpers move their figures to
result files and add their page here.
"""
import json
import os
import re
import sys

ROOT = os.environ.get("PG_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CHECKED = ["README.md", "docs/load.md"]

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


def kind_keys(kind):
    if kind == "ratio":
        return lambda k: "ratio" in k
    if kind == "rate":
        return lambda k: "mb_per" in k or "tps" in k
    return lambda k: ("seconds" in k or re.search(r"_(s|us)(\.|$|_runs)", k) is not None
                      or k.endswith("_s") or k.endswith("_runs") or "_us" in k)


def holds(values, kind, unit, thousands, value, decimals):
    """A number of this kind in values that, in the printed unit, rounds to value."""
    ok = kind_keys(kind)
    for k, v in values:
        if not ok(k):
            continue
        if unit == "GB/s":
            v = v / 1e3
        elif unit == "ms":
            v = v * 1e3
        elif unit in ("µs", "us") and "_us" not in k:
            v = v * 1e6
        if thousands:
            v = v / 1e3
        if round(v, decimals) == value:
            return True
    return False


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
                if not re.search(r"\btargets?:?\s*$", line[:m.start()], re.I):
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
