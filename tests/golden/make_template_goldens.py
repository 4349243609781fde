#!/usr/bin/env python3
"""Writes tests/data/chat_template_goldens.json: every chat template in
tests/data/chat-templates/ rendered by Python's jinja2 for a table of
conversations, in the environment Hugging Face transformers (and llama.cpp's
minja) render chat templates with:

    ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                  extensions=[jinja2.ext.loopcontrols])
    + a json.dumps `tojson` filter (ensure_ascii=False)
    + raise_exception(msg) and strftime_now(fmt) globals (fixed date here)

tests/chat_template_golden_test.cc renders the same templates and contexts
with runtime/text/jinja.h and compares byte for byte. A render that raises
is recorded too: raise_exception(...) with its message (the C++ side must
return exactly that message), any other exception by its type.

Run by hand when the templates or the conversations change, with Debian's
python3-jinja2 (or any jinja2 3.1.x):

    python3 tests/golden/make_template_goldens.py
"""

import datetime
import json
import os
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = os.path.join(ROOT, "data", "chat-templates")
OUT = os.path.join(ROOT, "data", "chat_template_goldens.json")

# strftime_now() formats this instant (the C++ test passes the same one).
FIXED_NOW = datetime.datetime(2024, 7, 26, 10, 30, 0,
                              tzinfo=datetime.timezone.utc)


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])

    def tojson(x, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=False, indent=indent,
                          separators=separators, sort_keys=sort_keys)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: FIXED_NOW.strftime(fmt)
    return env


# ---- The conversations ----

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
UNICODE = ("Grüße aus Köln! 世界 🙂 — ça va? 'single' \"double\" <tag> & "
           "back\\slash\ttab")

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string",
                                 "description": "City name, e.g. Paris"},
                    "unit": {"type": "string",
                             "enum": ["celsius", "fahrenheit"],
                             "description": "Temperature unit",
                             "default": "celsius"},
                    "days": {"type": "integer", "description": "Days ahead",
                             "minimum": 0, "maximum": 7},
                    "tags": {"type": "array", "items": {"type": "string"},
                             "description": "Extra tags"},
                },
                "required": ["location"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "python",
            "description": "Run Python code and return what it prints.",
            "parameters": {
                "type": "object",
                "properties": {
                    "code": {"type": "string",
                             "description": "The code to run"},
                    "timeout": {"type": "number", "default": 1.5,
                                "description": "Seconds",
                                "examples": [0.5, 2]},
                    "options": {
                        "type": "object",
                        "description": "Run options",
                        "properties": {
                            "verbose": {"type": "boolean",
                                        "nullable": True},
                        },
                        "required": [],
                    },
                },
                "required": ["code"],
            },
        },
    },
]

ARGS = {"location": "Paris", "days": 2, "ratio": 0.25, "big": 1e20,
        "ok": True, "none": None, "tags": ["a", "ü"]}


def tool_call(arguments, call_id="call12345"):
    return {"id": call_id, "type": "function",
            "function": {"name": "get_weather", "arguments": arguments}}


def tool_turns(arguments):
    return [
        SYSTEM,
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": None,
         "tool_calls": [tool_call(arguments)]},
        {"role": "tool", "tool_call_id": "call12345", "name": "get_weather",
         "content": "{\"temperature\": 22.5, \"sky\": \"clear\"}"},
    ]


CASES = [
    ("user_only", {"messages": [{"role": "user", "content": "Hello!"}],
                   "add_generation_prompt": True}),
    ("user_only_no_prompt", {
        "messages": [{"role": "user", "content": "Hello!"}],
        "add_generation_prompt": False}),
    ("system_user", {"messages": [SYSTEM,
                                  {"role": "user", "content": "Hi there."}],
                     "add_generation_prompt": True}),
    ("multi_turn", {"messages": [
        SYSTEM,
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "2 + 2 = 4."},
        {"role": "user", "content": "And times 3?"},
    ], "add_generation_prompt": True}),
    ("multi_turn_ends_with_assistant", {"messages": [
        {"role": "user", "content": "Name a color."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another one."},
        {"role": "assistant", "content": "Green."},
    ], "add_generation_prompt": False}),
    ("empty_contents", {"messages": [
        {"role": "system", "content": ""},
        {"role": "user", "content": ""},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": ""},
    ], "add_generation_prompt": True}),
    ("unicode", {"messages": [
        {"role": "user", "content": UNICODE},
        {"role": "assistant", "content": "Ответ: 答案是 42 ✓"},
        {"role": "user", "content": "日本語で？"},
    ], "add_generation_prompt": True}),
    ("whitespace", {"messages": [
        {"role": "system", "content": "  \n Be brief.\n\n"},
        {"role": "user", "content": "\n\n  spaced   out  \n"},
    ], "add_generation_prompt": False}),
    ("three_rounds", {"messages": [
        SYSTEM,
        {"role": "user", "content": "One"},
        {"role": "assistant", "content": "1"},
        {"role": "user", "content": "Two"},
        {"role": "assistant", "content": "2"},
        {"role": "user", "content": "Three"},
    ], "add_generation_prompt": True}),
    ("reasoning_in_history", {"messages": [
        {"role": "user", "content": "Think first."},
        {"role": "assistant",
         "content": "<think>\nhmm\n</think>\n\nThe answer is 7."},
        {"role": "user", "content": "Why?"},
    ], "add_generation_prompt": True}),
    ("tools_available", {"messages": [
        SYSTEM, {"role": "user", "content": "What's the weather in Paris?"},
    ], "tools": TOOLS, "add_generation_prompt": True}),
    ("tools_no_system", {"messages": [
        {"role": "user", "content": "Run print(1)."},
    ], "tools": TOOLS, "add_generation_prompt": True}),
    ("tool_call_dict_arguments", {"messages": tool_turns(ARGS),
                                  "tools": TOOLS,
                                  "add_generation_prompt": True}),
    ("tool_call_string_arguments", {
        "messages": tool_turns(json.dumps(ARGS, ensure_ascii=False)),
        "tools": TOOLS, "add_generation_prompt": True}),
    ("tool_call_without_tools", {
        "messages": tool_turns("{\"location\": \"Paris\"}"),
        "add_generation_prompt": False}),
    ("tools_simple", {"messages": [
        SYSTEM, {"role": "user", "content": "Weather in Oslo, 3 days?"},
    ], "tools": TOOLS[:1], "add_generation_prompt": True}),
    ("template_syntax_in_content", {"messages": [
        {"role": "user",
         "content": "Print {{ x }} and {% if y %} literally.\n```\n"
                    "def f():\n    return '{#'\n```"},
        {"role": "assistant", "content": "{{ x }} {% if y %}"},
        {"role": "user", "content": "Thanks"},
    ], "add_generation_prompt": False}),
    ("five_rounds", {"messages": [
        m for i in range(5) for m in (
            {"role": "user", "content": f"Question {i}?"},
            {"role": "assistant", "content": f"Answer {i}."})
    ] + [{"role": "user", "content": "Last one."}],
        "add_generation_prompt": True}),
    ("markdown_and_json_content", {"messages": [
        {"role": "user", "content": "# Title\n\n- item\n- **bold**\n\n"
                                    "```json\n{\"a\": [1, 2.5, null]}\n```"},
        {"role": "assistant", "content": "| a | b |\n|---|---|\n| 1 | 2 |"},
        {"role": "user", "content": "</s><s>[INST] <|im_end|> <|eot_id|>"},
    ], "add_generation_prompt": True}),
    ("documents", {"messages": [
        {"role": "user", "content": "Summarize the documents."},
    ], "documents": [{"title": "Doc A", "text": "Alpha \"quoted\"."},
                     {"title": "Doc B", "text": "Beta\nnewline."}],
        "add_generation_prompt": True}),
    ("not_alternating", {"messages": [
        {"role": "user", "content": "First."},
        {"role": "user", "content": "Second."},
    ], "add_generation_prompt": True}),
    ("system_only", {"messages": [SYSTEM], "add_generation_prompt": True}),
]

COMMON = {"bos_token": "<s>", "eos_token": "</s>"}

# Variables a template cannot render without (firefunction reads
# `functions` and `datetime` unconditionally).
EXTRA = {
    "fireworks-ai-llama-3-firefunction-v2.jinja": {
        "functions": json.dumps([t["function"] for t in TOOLS], indent=2),
        "datetime": "2024-07-26",
    },
}


def main():
    env = make_env()
    files = sorted(f for f in os.listdir(TEMPLATES) if f.endswith(".jinja"))
    templates = []
    rendered = 0
    for name in files:
        with open(os.path.join(TEMPLATES, name), encoding="utf-8") as f:
            source = f.read()
        template = env.from_string(source)
        results = []
        for case_name, context in CASES:
            full = dict(COMMON, **EXTRA.get(name, {}), **context)
            entry = {"case": case_name}
            try:
                entry["output"] = template.render(**full)
                rendered += 1
            except jinja2.exceptions.TemplateError as e:
                raised = type(e) is jinja2.exceptions.TemplateError
                entry["error"] = {"type": type(e).__name__, "message": str(e),
                                  "raised": raised}
            except Exception as e:  # TypeError and the like from Python
                entry["error"] = {"type": type(e).__name__, "message": str(e),
                                  "raised": False}
            results.append(entry)
        templates.append({"file": name, "extra_context": EXTRA.get(name, {}),
                          "results": results})
    out = {
        "generator": "tests/golden/make_template_goldens.py",
        "jinja2_version": jinja2.__version__,
        "python_version": sys.version.split()[0],
        "strftime_now_utc": FIXED_NOW.isoformat(),
        "common_context": COMMON,
        "cases": [{"name": n, "context": c} for n, c in CASES],
        "templates": templates,
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(files)} templates x {len(CASES)} cases: {rendered} renders, "
          f"{len(files) * len(CASES) - rendered} errors -> {OUT}")


if __name__ == "__main__":
    main()
