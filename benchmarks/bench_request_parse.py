"""A chat request's parse: the field-by-field parser before the field declarations
(``api/spec``) against the parser of this tree, same bodies, same process.

``chat_request`` turns a wire body into the typed ``ChatRequest`` (every field checked,
``response_format`` compiled to a grammar, tools checked). The "before" parser is the one
of git revision --before (default b2140c7, the last commit before the declarations): its
three modules (``api/fields.py``, ``api/openai/features.py``, ``api/openai/requests.py``)
are read with ``git show`` and loaded under private names, so both parsers share everything
else (message normalisation, the grammar compiler) and differ only in what changed.

Bodies: "tools + response_format" (a typical agent call: system and user messages, two
function tools, ``tool_choice``, a ``json_schema`` response format, sampling fields,
``max_completion_tokens``, ``stop``, ``stream_options``) and "plain" (model, messages,
temperature, max_tokens), where the field checks are nearly all of the work.

The two parsers alternate inside every round (a shared machine's load hits them alike);
each figure is the median over --rounds rounds of the mean of --batch parses, and the
ratio is the median of the per-round ratios (after / before; below 1 is faster). Times are
the process's CPU time unless --wall.

Usage: python benchmarks/bench_request_parse.py [--rounds 41] [--batch 200] [--before REV]
                                                [--wall]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lms_jupyter.api.openai import requests as after  # noqa: E402 - after sys.path

# the modules the declarations changed, in import order, and the private names they get
CHANGED = (
    ("lms_jupyter.api.fields", "lms_jupyter/api/fields.py"),
    ("lms_jupyter.api.openai.features", "lms_jupyter/api/openai/features.py"),
    ("lms_jupyter.api.openai.requests", "lms_jupyter/api/openai/requests.py"),
)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the web",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
            },
            "strict": True,
        },
    },
]
AGENT_BODY = {
    "model": "smollm2-135m-instruct",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is the weather in Paris?"},
    ],
    "tools": TOOLS,
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "response_format": {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "celsius": {"type": "number"}},
                "required": ["city", "celsius"],
            },
        },
    },
    "temperature": 0.2,
    "top_p": 0.9,
    "seed": 7,
    "max_completion_tokens": 64,
    "stop": ["\n\n"],
    "stream": True,
    "stream_options": {"include_usage": True},
}
PLAIN_BODY = {
    "model": "smollm2-135m-instruct",
    "temperature": 0.7,
    "max_tokens": 32,
    "messages": [{"role": "user", "content": "Say hello."}],
}
BODIES = {"tools + response_format": AGENT_BODY, "plain": PLAIN_BODY}


def load_before(revision: str) -> types.ModuleType:
    """The ``requests`` module of ``revision`` (with its fields and features modules)."""
    renamed = {name: "_before_" + name.replace(".", "_") for name, _ in CHANGED}
    module = None
    for name, path in CHANGED:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{revision}:{path}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for old, new in renamed.items():
            source = source.replace(old, new)
        module = types.ModuleType(renamed[name])
        module.__file__ = f"<{revision}:{path}>"
        sys.modules[renamed[name]] = module  # dataclasses look their module up
        exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def per_parse(parse, body: dict, batch: int, clock=time.process_time) -> float:
    start = clock()
    for _ in range(batch):
        parse(body)
    return (clock() - start) / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--before", default="b2140c7")
    parser.add_argument(
        "--wall",
        action="store_true",
        help="wall-clock time (default: this process's CPU time, which a "
        "shared machine's other processes disturb less)",
    )
    args = parser.parse_args()
    clock = time.perf_counter if args.wall else time.process_time
    before = load_before(args.before)
    parsers = {"before": before.chat_request, "after": after.chat_request}
    print(
        f"chat_request parse ({'wall' if args.wall else 'CPU'} time), median of "
        f"{args.rounds} rounds x {args.batch} parses (before: {args.before}, after: this "
        "tree)\n"
    )
    print(f"{'body':<26}{'before µs':>11}{'after µs':>11}{'after/before':>14}")
    for label, body in BODIES.items():
        for parse in parsers.values():  # same answer, and warm caches
            parse(body)
        same = dataclasses.asdict(before.chat_request(body)) == dataclasses.asdict(
            after.chat_request(body)
        )
        assert same, f"the parsers disagree on {label!r}"
        times: dict[str, list[float]] = {"before": [], "after": []}
        ratios = []
        for n in range(args.rounds):
            order = ("before", "after") if n % 2 == 0 else ("after", "before")
            got = {name: per_parse(parsers[name], body, args.batch, clock) for name in order}
            for name, seconds in got.items():
                times[name].append(seconds)
            ratios.append(got["after"] / got["before"])
        b, a = (statistics.median(times[k]) * 1e6 for k in ("before", "after"))
        print(f"{label:<26}{b:>11.1f}{a:>11.1f}{statistics.median(ratios):>14.2f}")


if __name__ == "__main__":
    main()
