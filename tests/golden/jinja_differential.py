#!/usr/bin/env python3
"""Differential check of the Jinja interpreter against Python's jinja2.

Generates random templates of two kinds, renders each with jinja2 (the
environment of make_template_goldens.py) and with build/tests/jinja_render
(runtime/text/jinja.h), and reports every difference:

  - expressions: operators, filters, tests, methods, slicing and
    conditionals over a fixed context of Python values;
  - statements and whitespace: nested for/if/set/filter/raw blocks, macros,
    namespaces, loop controls, comments, with random -/+ whitespace markers
    and text between tags.

A difference is either an output that differs, or one side failing where
the other renders. Known differences that are not checked (the script skips
them): the repr of a generator or iterator (Python prints an address; also
seen through filters such as wordcount of it), and printf-style "%"
formatting of strings, which is not implemented.

    cmake --build build -j1 --target jinja_render
    python3 tests/golden/jinja_differential.py [--seed 1] [--count 3000]
"""

import argparse
import copy
import json
import os
import random
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_template_goldens import make_env  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

CTX = {"s": "Hello World", "e": "", "n": 3, "z": 0, "f": 2.5, "g": -0.1, "l": [1, 2, 3], "el": [], "sl": ["b", "A", "a"],
       "d": {"b": 1, "a": [1, 2], "items": "x", "type": "object"}, "ed": {},
       "msgs": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}],
       "nv": None, "u": "Grüße 世界 ʼ", "t": True, "fa": False, "ws": "  a \n b  ", "tup": [1, "x"]}
ATOMS = ["s", "e", "n", "z", "f", "g", "l", "el", "sl", "d", "ed", "msgs", "nv", "u", "t", "fa", "ws", "undef", "msgs[0]", "msgs[1].tool_calls",
         "1", "0", "-1", "2.0", "0.5", "1e3", "'x'", "'He'", "''", "none", "true", "false", "[1, 'a']", "{'k': 1}", "(1, 2)", "d.a", "d['b']", "msgs[-1].role", "l[0]"]
FILTERS = ["trim", "length", "lower", "upper", "title", "capitalize", "string", "list", "first", "last", "tojson", "tojson(indent=2)", "join", "join(', ')",
           "default('D')", "default('D', true)", "items", "unique", "sort", "reverse", "int", "float", "abs", "round", "sum", "max", "min", "count",
           "map(attribute='role')", "selectattr('role')", "rejectattr('role', 'equalto', 'user')", "select", "reject('odd')", "indent(2)", "indent(2, true)",
           "replace('l', 'L')", "safe", "e", "wordcount", "dictsort", "batch(2)", "map('string')", "unique|list", "map('upper')|list", "select|list", "items|list"]
TESTS = ["defined", "undefined", "none", "string", "number", "integer", "float", "mapping", "iterable", "sequence", "boolean", "true", "false", "odd", "even",
         "callable", "lower", "upper", "eq 3", "in l", "divisibleby 2", "sameas none", "gt 1", "escaped"]
METHODS = ["strip()", "split()", "split(' ')", "lower()", "upper()", "title()", "startswith('H')", "endswith('d')", "replace('o', '0')", "find('o')", "count('l')",
           "items()", "keys()", "values()", "get('a')", "get('zz', 1)", "lstrip()", "rstrip()", "splitlines()", "index(2)", "capitalize()", "isdigit()"]
OPS = ["+", "-", "*", "/", "//", "%", "~", "==", "!=", "<", ">", "<=", ">=", "in", "not in", "and", "or", "**"]
def expr(depth=0):
    r = random.random()
    if depth > 2 or r < 0.3:
        return random.choice(ATOMS)
    if r < 0.45:
        return f"({expr(depth+1)} {random.choice(OPS)} {expr(depth+1)})"
    if r < 0.6:
        return f"({expr(depth+1)}|{random.choice(FILTERS)})"
    if r < 0.7:
        return f"({expr(depth+1)} is {random.choice(['', 'not '])}{random.choice(TESTS)})"
    if r < 0.78:
        return f"{random.choice(ATOMS)}.{random.choice(METHODS)}"
    if r < 0.86:
        a, b = random.choice(['', '1', '-1', '0', '-2']), random.choice(['', '2', '-1', '10'])
        return f"{random.choice(['s', 'l', 'u', 'msgs', 'e', 'tup'])}[{a}:{b}{random.choice(['', ':-1', ':2'])}]"
    if r < 0.93:
        return f"({expr(depth+1)} if {expr(depth+1)} else {expr(depth+1)})"
    return f"(not {expr(depth+1)})"
def stmt():
    r = random.random()
    if r < 0.6:
        return "{{ " + expr() + " }}"
    if r < 0.8:
        return "{% for x in " + expr() + " %}[{{ x }}{{ loop.index }}]{% else %}E{% endfor %}"
    return "{% if " + expr() + " %}Y{% else %}N{% endif %}"


WS_CTX = {"l": [1, 2, 3], "d": {"a": 1, "b": "x"}, "s": "Hi", "msgs": [{"role": "user", "content": " a "}, {"role": "assistant", "content": "b\n"}]}
TEXT = [" ", "  ", "\t", "\n", "\n\n", " \n ", "x", "word", "\r\n", "  \t\n", "{", "}", "%", "#", "-", "a b"]
def ws(): return random.choice(["", "", "-", "+"])
def tag(depth=0):
    r = random.random()
    if depth < 3 and r < 0.2:
        return "{%" + ws() + " for x in " + random.choice(["l", "d", "s", "msgs", "[]"]) + " " + ws() + "%}" + body(depth+1) + random.choice(["", "{%" + ws() + " else " + ws() + "%}" + body(depth+1)]) + "{%" + ws() + " endfor " + ws() + "%}"
    if depth < 3 and r < 0.4:
        return "{%" + ws() + " if " + random.choice(["x", "l", "true", "false", "x == 2", "loop.first", "undef"]) + " " + ws() + "%}" + body(depth+1) + random.choice(["", "{%" + ws() + " elif s " + ws() + "%}" + body(depth+1), "{%" + ws() + " else " + ws() + "%}" + body(depth+1)]) + "{%" + ws() + " endif " + ws() + "%}"
    if r < 0.55:
        return "{{" + ws() + " " + random.choice(["x", "s", "l|length", "loop.index", "y", "ns.c", "m(x)", "'q'", "x.role", "d"]) + " " + ws().replace("+", "") + "}}"
    if r < 0.65:
        return "{#" + ws() + random.choice([" c ", "\n", " {{ x }} "]) + ws() + "#}"
    if r < 0.75:
        return "{%" + ws() + " set " + random.choice(["y = x", "y = 1", "ns.c = ns.c + 1", "x = 'z'"]) + " " + ws() + "%}"
    if r < 0.8 and depth > 0:
        return "{%" + ws() + " " + random.choice(["break", "continue"]) + " " + ws() + "%}"
    if r < 0.85:
        return "{%" + ws() + " raw " + ws() + "%}" + random.choice(["{{ x }}", " a \n"]) + "{%" + ws() + " endraw " + ws() + "%}"
    if r < 0.9:
        return "{%" + ws() + " filter " + random.choice(["upper", "trim", "indent(2)"]) + " " + ws() + "%}" + body(depth+1) + "{%" + ws() + " endfilter " + ws() + "%}"
    return "{%" + ws() + " set y " + ws() + "%}" + body(depth+1) + "{%" + ws() + " endset " + ws() + "%}[{{ y }}]"
def body(depth):
    return "".join(random.choice(TEXT) if random.random() < 0.5 else tag(depth) for _ in range(random.randint(0, 5)))


def ws_template():
    return ("{% set ns = namespace(c=0) %}{% macro m(a) %}<{{ a }}{{ s }}>"
            "{% endmacro %}" + body(0) +
            random.choice(["", "\n", "\n\n", " "]))


def expr_template():
    return " ".join(stmt() for _ in range(random.randint(1, 3)))


ADDRESS = re.compile(r"(<|&lt;)[\w.]+ object( [\w.]+)? at 0x", re.I)
# Printf-style "%" on strings is not implemented (no template uses it).
UNSUPPORTED = ("printf-style",)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--binary",
                        default=os.path.join(ROOT, "build", "tests",
                                             "jinja_render"))
    args = parser.parse_args()
    random.seed(args.seed)
    env = make_env()
    cases = []
    for i in range(args.count):
        if i % 2:
            cases.append((ws_template(), WS_CTX))
        else:
            cases.append((expr_template(), CTX))
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False,
                                     encoding="utf-8") as f:
        for src, ctx in cases:
            f.write(json.dumps({"src": src, "ctx": ctx},
                               ensure_ascii=False) + "\n")
        path = f.name
    run = subprocess.run([args.binary, path], capture_output=True,
                         text=True, check=True)
    os.unlink(path)
    got = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(got) == len(cases)
    differences = skipped = 0
    for (src, ctx), g in zip(cases, got):
        try:
            want, error = env.from_string(src).render(**copy.deepcopy(ctx)), None
        except Exception as e:  # any jinja2 or Python error
            want, error = None, f"{type(e).__name__}: {e}"
        if want is not None and g.get("out") == want:
            continue
        if want is None and "out" not in g:
            continue
        if (want is not None and ADDRESS.search(want)) or (
                "err" in g and any(k in g["err"] for k in UNSUPPORTED)):
            skipped += 1
            continue
        differences += 1
        if differences <= 20:
            print("TEMPLATE", repr(src))
            print("  jinja2 ", repr(want if want is not None else error)[:400])
            print("  ours   ", repr(g)[:400])
    print(f"{len(cases)} templates: {differences} differences, "
          f"{skipped} skipped (known)")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
