"""The building blocks every grammar here is made of: a rule collector, literals, the
shared JSON primitives and sequence/repetition helpers.

Whitespace between tokens is bounded (nothing in the compact form the server uses; one
space, or one newline and up to six spaces of indentation, in the loose form) and
numbers have a fixed maximum of digits, so a tiny model cannot loop forever on spaces
or digits.
"""

from __future__ import annotations

import json
import re

PRIMITIVES = {
    "ws": '( " " | "\\n" " "{0,6} )?',
    "json-char": '[^"\\\\\\x7F\\x00-\\x1F] | "\\\\" ( ["\\\\/bfnrt] | "u" [0-9a-fA-F]{4} )',
    "json-string": '"\\"" json-char* "\\""',
    "json-integer": '"-"? ( "0" | [1-9] [0-9]{0,17} )',
    "json-fraction": '"." [0-9]{1,17}',
    "json-exponent": "[eE] [-+]? [0-9]{1,3}",
    "json-number": '"-"? ( "0" | [1-9] [0-9]{0,17} ) json-fraction? json-exponent?',
    "json-unsigned-number": '( "0" | [1-9] [0-9]{0,17} ) json-fraction? json-exponent?',
    "json-boolean": '"true" | "false"',
    "json-null": '"null"',
    "json-value": "json-object | json-array | json-string | json-number | json-boolean | json-null",
    "json-member": 'json-string ws ":" ws json-value ws',
    "json-object": '"{" ws ( json-member ( "," ws json-member )* )? "}"',
    "json-array": '"[" ws ( json-value ws ( "," ws json-value ws )* )? "]"',
    "hex": "[0-9a-fA-F]",
    "date": '[0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [12] [0-9] | "3" [01] )',
    "time": '( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,6} )? '
    '( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )',
    "date-time": 'date "T" time',
    "uuid": 'hex{8} "-" hex{4} "-" hex{4} "-" hex{4} "-" hex{12}',
    "xml-text": "[^<]*",
}
PRIMITIVE_DEPENDENCIES = {
    "json-string": ("json-char",),
    "json-number": ("json-fraction", "json-exponent"),
    "json-unsigned-number": ("json-fraction", "json-exponent"),
    "json-value": (
        "json-object",
        "json-array",
        "json-string",
        "json-number",
        "json-boolean",
        "json-null",
    ),
    "json-member": ("json-string", "ws", "json-value"),
    "json-object": ("ws", "json-member"),
    "json-array": ("ws", "json-value"),
    "date-time": ("date", "time"),
    "uuid": ("hex",),
}


def gbnf_literal(text: str) -> str:
    """A GBNF string literal matching `text` exactly."""
    escaped = []
    for ch in text:
        if ch == "\\":
            escaped.append("\\\\")
        elif ch == '"':
            escaped.append('\\"')
        elif ch == "\n":
            escaped.append("\\n")
        elif ch == "\r":
            escaped.append("\\r")
        elif ch == "\t":
            escaped.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            escaped.append(f"\\x{ord(ch):02X}")
        else:
            escaped.append(ch)
    return '"' + "".join(escaped) + '"'


# JSON separators: compact (what the grammars force, issue 26: every optional space or
# newline is a token the model pays for) or the loose form the grammars used to allow.
COMPACT = (",", ":")
LOOSE = (", ", ": ")


def json_literal(value: object, separators: tuple[str, str] = COMPACT) -> str:
    return gbnf_literal(json.dumps(value, ensure_ascii=False, separators=separators))


class Grammar:
    """Collects named rules, sharing identical bodies, and prints them root first.

    ``compact`` (the default) forces JSON without optional whitespace: ``ws`` matches
    nothing and literals use ``,``/``:``. ``compact=False`` is the earlier grammar that
    allowed a space or an indented newline between tokens (kept for the benchmark that
    measures what compact JSON saves)."""

    def __init__(self, compact: bool = True) -> None:
        self.rules: dict[str, str | None] = {"root": None}
        self._by_body: dict[str, str] = {}
        self.compact = compact
        self.separators = COMPACT if compact else LOOSE

    def literal(self, value: object) -> str:
        """A GBNF literal for a JSON value, spelled with this grammar's separators."""
        return json_literal(value, self.separators)

    def primitive(self, name: str) -> str:
        if name not in self.rules:
            self.rules[name] = '""' if (name == "ws" and self.compact) else PRIMITIVES[name]
            for dependency in PRIMITIVE_DEPENDENCIES.get(name, ()):
                self.primitive(dependency)
        return name

    def add(self, hint: str, body: str) -> str:
        """Names `body` (reusing an identical rule) and returns the name."""
        if body in self._by_body:
            return self._by_body[body]
        name = self.reserve(hint)
        self.rules[name] = body
        self._by_body[body] = name
        return name

    def reserve(self, hint: str) -> str:
        base = re.sub(r"[^a-zA-Z0-9]+", "-", hint).strip("-").lower() or "rule"
        name, counter = base, 2
        while name in self.rules or name in PRIMITIVES:
            name = f"{base}-{counter}"
            counter += 1
        self.rules[name] = None
        return name

    def define(self, name: str, body: str) -> None:
        self.rules[name] = body

    def text(self) -> str:
        lines = []
        for name, body in self.rules.items():
            if body is None:
                raise AssertionError(f"grammar rule {name} left undefined")
            lines.append(f"{name} ::= {body}")
        return "\n".join(lines) + "\n"


def seq(*parts: str) -> str:
    """A GBNF sequence of the non-empty parts."""
    return " ".join(part for part in parts if part)


def either(expression: str, alternative: str) -> str:
    """`expression` or `alternative`, where an empty alternative means "nothing"."""
    return f"( {expression} | {alternative} )" if alternative else optional(expression)


def optional(expression: str) -> str:
    return f"( {expression} )?" if expression else ""


def repeat(item: str, separator: str, minimum: int, maximum: int | None) -> str:
    """`item` repeated minimum..maximum times with `separator` between; "" for none."""
    if maximum is not None and maximum <= 0:
        return ""
    if maximum is None:
        tail = (
            f"( {separator} {item} )*"
            if minimum <= 1
            else f"( {separator} {item} ){{{minimum - 1},}}"
        )
    elif maximum == 1:
        tail = ""
    else:
        tail = f"( {separator} {item} ){{{max(minimum - 1, 0)},{maximum - 1}}}"
    sequence = f"{item} {tail}".strip()
    return sequence if minimum >= 1 else optional(sequence)
