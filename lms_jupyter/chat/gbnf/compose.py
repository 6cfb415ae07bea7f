"""Operations on finished grammar texts: the union of several grammars, and whether
llama.cpp's own parser accepts one."""

from __future__ import annotations

import re

_GBNF_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"'  # string literal
    r"|\[(?:[^\]\\]|\\.)*\]"  # character class
    r"|\{[^}]*\}"  # repetition bounds
    r"|[a-zA-Z][a-zA-Z0-9-]*"  # rule name
    r"|.",
    re.DOTALL,
)


def _prefix_rules(gbnf: str, prefix: str) -> str:
    """The same grammar with every rule name prefixed (literals and classes untouched)."""
    out = []
    for match in _GBNF_TOKEN.finditer(gbnf):
        token = match.group(0)
        out.append(prefix + token if token[0].isalpha() else token)
    return "".join(out)


def union_gbnf(*grammars: str) -> str:
    """A grammar accepting any document one of `grammars` accepts (e.g. a tool call or
    the JSON answer when tool_choice is "auto" next to a response_format)."""
    parts = [_prefix_rules(g, f"g{i}-") for i, g in enumerate(grammars)]
    root = " | ".join(f"g{i}-root" for i in range(len(grammars)))
    return f"root ::= {root}\n" + "".join(p if p.endswith("\n") else p + "\n" for p in parts)
