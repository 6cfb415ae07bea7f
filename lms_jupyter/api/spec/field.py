"""A wire field, declared once, and the checks every parser runs on one.

A :class:`Field` says what a body field is: its wire name (and the other spellings that
mean the same setting), its JSON type, bounds or allowed values, its default, whether null
counts as absent, and a description. From that one declaration

* :meth:`Field.read` checks a value and answers the parser (the typed requests in
  :mod:`lms_jupyter.api.openai.requests` and each API's own request module), raising a 400
  in OpenAI's error shape that names the field as the client spelled it;
* :meth:`Field.schema` gives its JSON Schema, which :mod:`lms_jupyter.api.schemas` puts
  into the OpenAPI document (and from there the sidebar's TypeScript types);
* a :class:`Body` (an ordered set of fields) gives a request body's schema.

A composite field (``messages``, ``tools``, ``response_format``...) is declared here too,
with its ``shape`` (the JSON Schema of its value); its checks are a function of its own
in its API's module, because they walk nested values and name JSON paths.

Why dataclasses and not pydantic models: the errors must be OpenAI's, one message per field
in words a client understands, naming the client's own spelling of aliased fields; the
checks depend on each other (``tool_choice`` on ``tools``, presets filling gaps first); and
a parse must stay as cheap as the hand-written readers (``benchmarks/bench_request_parse.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lms_jupyter.errors import bad_request

MISSING: Any = object()  # "no default": a missing field reads as None
NON_BLANK = r"\S"  # a "text" field: a string with something besides whitespace
NUMBERS = ("number", "integer")


def nullable(schema: dict) -> dict:
    """``schema`` or null (the parsers treat a null field as absent)."""
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


# -- the single-value checks (what ``Field.read`` runs; also called directly) ----------------


def require_object(body) -> dict:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def number(body: dict, name: str, lo=None, hi=None, default=MISSING, integer=False):
    """``body[name]`` as a number within bounds; missing or null gives ``default``."""
    value = body.get(name, default)
    if value is MISSING or value is None:
        return None if default is MISSING else default
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        if integer and isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise bad_request(f"'{name}' must be {kind}.", name)
    if not math.isfinite(value):
        raise bad_request(f"'{name}' must be a finite number.", name)
    if lo is not None and value < lo or hi is not None and value > hi:
        bounds = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise bad_request(f"'{name}' must be {bounds} (got {value}).", name)
    return value


def boolean(body: dict, name: str, default: bool | None = False) -> bool | None:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_request(f"'{name}' must be a boolean.", name)
    return value


def text(body: dict, name: str, required: bool = False) -> str | None:
    """A non-empty string (stripped), or None when absent and not required."""
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        needed = "is required and must" if required else "must"
        raise bad_request(f"'{name}' {needed} be a non-empty string.", name)
    return value.strip()


def choice(body: dict, name: str, allowed: tuple, default=None):
    """One of ``allowed`` (null or missing: ``default``)."""
    value = body.get(name)
    if value is None:
        return default
    if value not in allowed:
        quoted = [f"'{v}'" for v in allowed]
        words = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
        raise bad_request(f"'{name}' must be {words}.", name)
    return value


# -- the declaration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One wire field. ``type``: ``number``, ``integer``, ``boolean``, ``text`` (a non-blank
    string, read stripped), ``enum`` (one of ``enum``), or, for a composite value checked by
    a function of its own, ``composite`` with its JSON Schema in ``shape``."""

    name: str
    type: str
    lo: float | None = None  # lowest value (numbers)
    hi: float | None = None  # highest value (numbers)
    exclusive_lo: bool = False  # ``lo`` itself is out (``ttl`` > 0)
    enum: tuple | None = None
    # every spelling of the setting, in the order the first one present wins (the
    # declaration's ``name`` is one of them: ``max_tokens`` and the newer OpenAI names)
    aliases: tuple[str, ...] = ()
    default: Any = MISSING
    description: str | None = None
    nullable: bool = True  # null means absent (the parsers' rule; the schema says so)
    required: bool = False
    shape: dict | None = None  # the schema of a composite value, or a string's extra rules
    extra: dict | None = None  # more JSON Schema keywords (``not``, ``examples``)
    documented: bool = True  # False: in the parser only (a cross-field rule, see its note)
    unit: str | None = None  # for the error of an exclusive bound: "seconds"

    @property
    def integer(self) -> bool:
        return self.type == "integer"

    @property
    def spellings(self) -> tuple[str, ...]:
        return self.aliases or (self.name,)

    def __post_init__(self):
        # ``read`` is bound once, to a closure over the checked values: a parse runs the
        # same calls as a hand-written reader (benchmarks/bench_request_parse.py)
        object.__setattr__(self, "read", self._reader())

    def read(self, body: dict, name: str | None = None):
        """The checked value of this field in ``body`` (``name``: one of its spellings),
        its default when missing or null; a 400 naming the field otherwise. (Replaced per
        instance by the closure of :meth:`_reader`.)"""
        return self._reader()(body, name)

    def _reader(self):
        own, lo, hi, default, kind = self.name, self.lo, self.hi, self.default, self.type
        if kind in NUMBERS:
            integer = self.integer
            if not self.exclusive_lo:
                return lambda body, name=None: number(body, name or own, lo, hi, default, integer)
            what = "a positive number" if lo == 0 else f"greater than {lo}"
            unit = f" of {self.unit}" if self.unit else ""

            def above(body, name=None):
                name = name or own
                value = number(body, name, None, hi, default, integer)
                if value is not None and value <= lo:
                    raise bad_request(f"'{name}' must be {what}{unit} (got {value}).", name)
                return value

            return above
        fallback = None if default is MISSING else default
        if kind == "boolean":
            return lambda body, name=None: boolean(body, name or own, fallback)
        if kind == "text":
            required = self.required
            return lambda body, name=None: text(body, name or own, required)
        if kind == "enum":
            allowed = self.enum or ()  # an enum field always declares its values
            return lambda body, name=None: choice(body, name or own, allowed, fallback)

        def composite(body, name=None):
            raise TypeError(f"{own} is a composite field; its module reads it")

        return composite

    def schema(self) -> dict:
        """The JSON Schema of the field's value."""
        kind = self.type
        if kind in NUMBERS:
            schema: dict = {"type": kind}
            if self.lo is not None:
                schema["exclusiveMinimum" if self.exclusive_lo else "minimum"] = self.lo
            if self.hi is not None:
                schema["maximum"] = self.hi
        elif kind == "boolean":
            schema = {"type": "boolean"}
        elif kind == "text":
            schema = {"type": "string", "pattern": NON_BLANK, **(self.shape or {})}
        elif kind == "enum":
            schema = {"enum": list(self.enum or ())}
        else:
            schema = dict(self.shape or {})
        if self.nullable:
            schema = nullable(schema)
        if self.extra:
            schema.update(self.extra)
        if self.description:
            schema["description"] = self.description
        return schema


@dataclass(frozen=True)
class Body:
    """A request body: its fields, in the order the schema lists them."""

    fields: tuple[Field, ...]
    description: str | None = None

    def __getitem__(self, name: str) -> Field:
        for f in self.fields:
            if name in f.spellings:
                return f
        raise KeyError(name)

    def schema(self) -> dict:
        props = {
            spelling: f.schema() for f in self.fields if f.documented for spelling in f.spellings
        }
        out: dict = {"type": "object"}
        required = [f.name for f in self.fields if f.required]
        if required:
            out["required"] = required
        out["properties"] = props
        if self.description:
            out["description"] = self.description
        return out

    def with_fields(self, *fields: Field, description: str | None = None) -> Body:
        """This body and more fields (a chat body is the generation fields and its own)."""
        return Body(self.fields + fields, description)
