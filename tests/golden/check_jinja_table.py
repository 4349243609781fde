#!/usr/bin/env python3
"""Checks jinja_test.cc's table (kRows) against Python's jinja2.

Every row's expected output was written from jinja2 3.1's render of its
source with TableContext()'s values; this script renders each source again
with jinja2 (the environment of make_template_goldens.py, as the chat
template goldens use) and lists every row whose expectation differs: an
output that differs, or one side failing where the other renders. Exit
status 1 when any does. Needs only jinja2 3.1 (Debian python3-jinja2,
which `make deps` installs; without it the check exits 77, a skip, unless
CI is set). A ctest (JinjaTableMatchesJinja2):

    python3 tests/golden/check_jinja_table.py
"""

import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
try:
    from make_template_goldens import make_env  # noqa: E402
except ImportError as e:
    print(f"jinja2 is missing ({e}): install python3-jinja2")
    sys.exit(1 if os.environ.get("CI") else 77)

# TableContext() in jinja_test.cc.
CONTEXT = json.loads("""{
    "s": "Hello World", "n": 3, "f": 2.5, "l": [1, 2, 3],
    "d": {"b": 1, "a": [1, 2], "items": "x"},
    "msgs": [{"role": "user", "content": "hi"},
             {"role": "assistant", "content": "yo"}],
    "nv": null, "u": "Grüße 世界", "t": true}""")

# C++ tokens of the table: raw strings R"j(...)j", plain strings, nullptr,
# comments, and the braces and commas that shape rows.
TOKEN = re.compile(
    r'R"j\((.*?)\)j"|"((?:[^"\\]|\\.)*)"|(nullptr)|(//[^\n]*)|([{},])', re.S)


def unescape(plain):
    return (plain.encode("latin-1", "backslashreplace")
            .decode("unicode_escape").encode("latin-1").decode("utf-8"))


def rows(source):
    """[source, output or None, error or None] of each row of kRows."""
    start = source.index("const Row kRows[] = {")
    body = source[start + len("const Row kRows[] = "):source.index("\n};",
                                                                     start)]
    out, row, depth, pending = [], [], 0, None
    for m in TOKEN.finditer(body):
        raw, plain, null, comment, punct = m.groups()
        if comment:
            continue
        if raw is not None or plain is not None:
            text = raw if raw is not None else unescape(plain)
            pending = (pending or "") + text  # adjacent literals join
            continue
        if null:
            row.append(None)
        elif punct == "{":
            depth += 1
            if depth == 2:
                row = []
        elif punct in ",}":
            if pending is not None:
                row.append(pending)
                pending = None
            if punct == "}":
                if depth == 2:
                    out.append(row)
                depth -= 1
    return out


def main():
    with open(os.path.join(HERE, "..", "jinja_test.cc"), encoding="utf-8") as f:
        table = rows(f.read())
    env = make_env()
    differ = 0
    for entry in table:
        source, want = entry[0], entry[1]
        try:
            got, error = env.from_string(source).render(**CONTEXT), None
        except Exception as e:  # jinja2's own failure: the row must fail
            got, error = None, repr(e)[:80]
        if got != want:
            differ += 1
            print("DIFF", repr(source[:70]), "table", repr(want)[:60],
                  "jinja2", repr(got)[:60], error or "")
    print(f"{len(table)} rows, {differ} differ")
    if len(table) < 50:
        print("fewer rows than expected: the table's format changed?")
        return 1
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
