"""GBNF grammars for llama.cpp: JSON Schema output, any JSON object, forced tool calls.

llama-cpp-python ignores OpenAI's ``json_schema`` response format and never forces a
tool call, so we build the grammars ourselves. Whitespace between tokens is bounded (one
space, or one newline and up to six spaces of indentation) and numbers have a fixed
maximum of digits, so a tiny model cannot loop forever on spaces or digits; together
with maxLength/maxItems, generation ends.

Bounds enforced: string minLength/maxLength, array minItems/maxItems, integer
minimum/maximum (exclusive too), number minimum >= 0 (no minus sign). Other number
bounds are not enforced. Keywords that would need more (pattern, not, if/then,
patternProperties, ...) raise UnsupportedSchemaError instead of being ignored.

Why one module of ~800 lines: it is one compiler (a schema walker with shared rule
naming, whitespace and number rules); the tool-call and union grammars reuse its rule
set. Split, the pieces would only import each other's privates.
"""

from __future__ import annotations

import json
import math
import re
from urllib.parse import unquote

from .toolcalls import families


class UnsupportedSchemaError(ValueError):
    """A JSON schema uses something the grammar cannot enforce (HTTP 400 material)."""

    def __init__(self, keyword: str, path: str, reason: str = "") -> None:
        self.keyword = keyword
        self.path = path
        message = f"JSON schema keyword {keyword!r} at {path} is not supported"
        if reason:
            message += f": {reason}"
        super().__init__(message)


_UNSUPPORTED_KEYWORDS = {
    "pattern": "regular expressions are not enforced",
    "patternProperties": "property names by pattern are not enforced",
    "propertyNames": "property name schemas are not enforced",
    "not": "negated schemas cannot be expressed as a grammar",
    "if": "conditional schemas are not supported",
    "then": "conditional schemas are not supported",
    "else": "conditional schemas are not supported",
    "dependentRequired": "dependent properties are not supported",
    "dependentSchemas": "dependent schemas are not supported",
    "dependencies": "dependent properties are not supported",
    "contains": "array 'contains' is not enforced",
    "minContains": "array 'contains' is not enforced",
    "maxContains": "array 'contains' is not enforced",
    "multipleOf": "multiples are not enforced",
    "unevaluatedItems": "unevaluated items are not supported",
    "$dynamicRef": "dynamic references are not supported",
    "$recursiveRef": "recursive references are not supported",
}

_OBJECT_HINTS = ("properties", "additionalProperties", "required", "minProperties", "maxProperties")
_ARRAY_HINTS = ("items", "prefixItems", "minItems", "maxItems")
_STRING_HINTS = ("minLength", "maxLength", "format")
_NUMBER_HINTS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")

_MAX_INT_DIGITS = 18  # keeps numbers finite and inside int64

_PRIMITIVES = {
    "ws": '( " " | "\\n" " "{0,6} )?',
    "json-char": '[^"\\\\\\x7F\\x00-\\x1F] | "\\\\" ( ["\\\\/bfnrt] | "u" [0-9a-fA-F]{4} )',
    "json-string": '"\\"" json-char* "\\""',
    "json-integer": '"-"? ( "0" | [1-9] [0-9]{0,17} )',
    "json-fraction": '"." [0-9]{1,17}',
    "json-exponent": '[eE] [-+]? [0-9]{1,3}',
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
_PRIMITIVE_DEPENDENCIES = {
    "json-string": ("json-char",),
    "json-number": ("json-fraction", "json-exponent"),
    "json-unsigned-number": ("json-fraction", "json-exponent"),
    "json-value": ("json-object", "json-array", "json-string", "json-number", "json-boolean", "json-null"),
    "json-member": ("json-string", "ws", "json-value"),
    "json-object": ("ws", "json-member"),
    "json-array": ("ws", "json-value"),
    "date-time": ("date", "time"),
    "uuid": ("hex",),
}
_STRING_FORMATS = ("date", "time", "date-time", "uuid")
_RULE_NAME = re.compile(r"[a-zA-Z0-9-]+")


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


def _json_literal(value: object, separators: tuple[str, str] = COMPACT) -> str:
    return gbnf_literal(json.dumps(value, ensure_ascii=False, separators=separators))


class _Grammar:
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
        return _json_literal(value, self.separators)

    def primitive(self, name: str) -> str:
        if name not in self.rules:
            self.rules[name] = '""' if (name == "ws" and self.compact) else _PRIMITIVES[name]
            for dependency in _PRIMITIVE_DEPENDENCIES.get(name, ()):
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
        while name in self.rules or name in _PRIMITIVES:
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


def _seq(*parts: str) -> str:
    """A GBNF sequence of the non-empty parts."""
    return " ".join(part for part in parts if part)


def _either(expression: str, alternative: str) -> str:
    """`expression` or `alternative`, where an empty alternative means "nothing"."""
    return f"( {expression} | {alternative} )" if alternative else _optional(expression)


def _optional(expression: str) -> str:
    return f"( {expression} )?" if expression else ""


def _repeat(item: str, separator: str, minimum: int, maximum: int | None) -> str:
    """`item` repeated minimum..maximum times with `separator` between; "" for none."""
    if maximum is not None and maximum <= 0:
        return ""
    if maximum is None:
        tail = f"( {separator} {item} )*" if minimum <= 1 else f"( {separator} {item} ){{{minimum - 1},}}"
    elif maximum == 1:
        tail = ""
    else:
        tail = f"( {separator} {item} ){{{max(minimum - 1, 0)},{maximum - 1}}}"
    sequence = f"{item} {tail}".strip()
    return sequence if minimum >= 1 else _optional(sequence)


def _digits_between(low: str, high: str) -> list[str]:
    """GBNF sequences for every digit string of len(low) digits in [low, high]."""
    width = len(low)
    if low == high:
        return [gbnf_literal(low)]
    if width == 1:
        return [f"[{low}-{high}]"]
    if low[0] == high[0]:
        return [f"{gbnf_literal(low[0])} {rest}" for rest in _digits_between(low[1:], high[1:])]
    sequences = []
    low_rest_is_min = low[1:] == "0" * (width - 1)
    high_rest_is_max = high[1:] == "9" * (width - 1)
    first_full = int(low[0]) + (0 if low_rest_is_min else 1)
    last_full = int(high[0]) - (0 if high_rest_is_max else 1)
    if not low_rest_is_min:
        sequences += [
            f"{gbnf_literal(low[0])} {rest}"
            for rest in _digits_between(low[1:], "9" * (width - 1))
        ]
    if first_full <= last_full:
        digit = f"[{first_full}-{last_full}]" if first_full < last_full else gbnf_literal(str(first_full))
        sequences.append(f"{digit} [0-9]{{{width - 1}}}")
    if not high_rest_is_max:
        sequences += [
            f"{gbnf_literal(high[0])} {rest}"
            for rest in _digits_between("0" * (width - 1), high[1:])
        ]
    return sequences


def _natural_range(low: int, high: int | None) -> list[str]:
    """Alternatives matching the decimal form of every integer in [low, high] (low >= 0)."""
    low_width = len(str(low))
    high_width = len(str(high)) if high is not None else low_width
    alternatives = []
    for width in range(low_width, high_width + 1):
        start = low if width == low_width else 10 ** (width - 1)
        end = high if (high is not None and width == high_width) else 10**width - 1
        alternatives += _digits_between(str(start), str(end))
    if high is None and low_width < _MAX_INT_DIGITS:
        alternatives.append(f"[1-9] [0-9]{{{low_width},{_MAX_INT_DIGITS - 1}}}")
    return alternatives


def _integer_range(low: int | None, high: int | None) -> str:
    alternatives = []
    if low is None or low < 0:
        closest = -1 if high is None or high >= 0 else high  # negative value nearest zero
        magnitudes = _natural_range(-closest, None if low is None else -low)
        alternatives.append('"-" ( ' + " | ".join(magnitudes) + " )")
    if high is None or high >= 0:
        alternatives += _natural_range(0 if low is None or low < 0 else low, high)
    return " | ".join(alternatives)


class _SchemaConverter:
    """Turns one JSON schema (with its own $defs) into rules of a shared _Grammar."""

    def __init__(self, grammar: _Grammar, root_schema: object) -> None:
        self.grammar = grammar
        self.root_schema = root_schema
        self._ref_rules: dict[str, str] = {}

    # -- entry points ------------------------------------------------------------------------

    def convert(self, schema: object, path: str, hint: str) -> str:
        """Returns one GBNF term (a rule name) matching documents valid for `schema`."""
        g = self.grammar
        if schema is True:
            return g.primitive("json-value")
        if not isinstance(schema, dict):
            if schema is False:
                raise UnsupportedSchemaError("false", path, "a schema that accepts nothing")
            raise UnsupportedSchemaError(type(schema).__name__, path, "a schema must be an object")
        self._check_keywords(schema, path)
        if "$ref" in schema:
            return self._ref(schema["$ref"], path)
        if "const" in schema:
            body = g.literal(schema["const"])
        elif "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise UnsupportedSchemaError("enum", path, "enum must be a non-empty list")
            body = " | ".join(g.literal(value) for value in values)
        elif "anyOf" in schema or "oneOf" in schema:
            body = self._union(schema, path, hint)
        elif "allOf" in schema:
            return self.convert(self._merge_all_of(schema, path), path, hint)
        else:
            body = self._typed(schema, path, hint)
        if schema.get("nullable") is True:
            body = f"{body} | {g.primitive('json-null')}"
        if _RULE_NAME.fullmatch(body):
            return body  # no alias rules for a plain reference
        return g.add(hint, body)

    def xml_parameters(self, schema: object, hint: str) -> str:
        """Seed-OSS parameter list: <parameter=KEY>VALUE</parameter> lines, in order."""
        schema = self._resolve(schema, "#")
        properties = schema.get("properties") if isinstance(schema, dict) else None
        if not properties:
            if isinstance(schema, dict) and ("properties" in schema or schema.get("additionalProperties") is False):
                return ""
            name_rule = self.grammar.add("xml-name", "[a-zA-Z0-9_]+")
            line = f'"<parameter=" {name_rule} ">" {self.grammar.primitive("xml-text")} "</parameter>\\n"'
            return f"( {self.grammar.add(hint + '-param', line)} )*"
        required = set(schema.get("required", []))
        members = []
        for key, prop in properties.items():
            value = self._xml_value(prop, f"#/properties/{key}", f"{hint}-{key}")
            opening, closing = gbnf_literal(f"<parameter={key}>"), gbnf_literal("</parameter>\n")
            line = f"{opening} {value} {closing}"
            members.append((self.grammar.add(f"{hint}-{key}-param", line), key in required))
        return self._members(members, "", hint)

    # -- pieces --------------------------------------------------------------------------------

    def _check_keywords(self, schema: dict, path: str) -> None:
        for keyword, reason in _UNSUPPORTED_KEYWORDS.items():
            if keyword in schema:
                raise UnsupportedSchemaError(keyword, path, reason)
        if schema.get("uniqueItems") is True:
            raise UnsupportedSchemaError("uniqueItems", path, "unique array items are not enforced")

    def _resolve(self, schema: object, path: str) -> object:
        """Follows $ref chains to the schema they point at."""
        seen = set()
        while isinstance(schema, dict) and "$ref" in schema:
            ref = schema["$ref"]
            if ref in seen:
                raise UnsupportedSchemaError("$ref", path, f"{ref!r} refers to itself")
            seen.add(ref)
            schema = self._lookup(ref, path)
        return schema

    def _lookup(self, ref: object, path: str) -> object:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise UnsupportedSchemaError(
                "$ref", path, f"only local references like '#/$defs/Name' are supported, not {ref!r}"
            )
        target = self.root_schema
        pointer = unquote(ref[1:])
        for token in [t for t in pointer.split("/")[1:]] if pointer else []:
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and token in target:
                target = target[token]
            elif isinstance(target, list) and token.isdigit() and int(token) < len(target):
                target = target[int(token)]
            else:
                raise UnsupportedSchemaError("$ref", path, f"cannot resolve {ref!r}")
        return target

    def _ref(self, ref: object, path: str) -> str:
        if isinstance(ref, str) and ref in self._ref_rules:
            return self._ref_rules[ref]
        target = self._lookup(ref, path)
        hint = ref.rstrip("/").rsplit("/", 1)[-1] or "root-ref"
        name = self.grammar.reserve(hint)
        self._ref_rules[ref] = name  # registered first, so recursive schemas terminate
        self.grammar.define(name, self.convert(target, ref, hint + "-body"))
        return name

    def _union(self, schema: dict, path: str, hint: str) -> str:
        keyword = "anyOf" if "anyOf" in schema else "oneOf"
        options = schema[keyword]
        if not isinstance(options, list) or not options:
            raise UnsupportedSchemaError(keyword, path, f"{keyword} must be a non-empty list")
        shared = {
            key: value
            for key, value in schema.items()
            if key not in (keyword, "nullable", "title", "description", "default", "examples")
        }
        alternatives = []
        for i, option in enumerate(options):
            if shared and isinstance(option, dict) and "$ref" not in option:
                option = {**shared, **option}
            alternatives.append(self.convert(option, f"{path}/{keyword}/{i}", f"{hint}-{i}"))
        return " | ".join(alternatives)

    def _merge_all_of(self, schema: dict, path: str) -> dict:
        merged = {key: value for key, value in schema.items() if key != "allOf"}
        parts = schema["allOf"]
        if not isinstance(parts, list):
            raise UnsupportedSchemaError("allOf", path, "allOf must be a list")
        for i, part in enumerate(parts):
            part = self._resolve(part, f"{path}/allOf/{i}")
            if not isinstance(part, dict):
                raise UnsupportedSchemaError("allOf", path, "allOf entries must be schemas")
            for key, value in part.items():
                if key in ("title", "description", "default", "examples", "$defs", "definitions"):
                    continue
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required":
                    merged["required"] = list(dict.fromkeys(merged.get("required", []) + list(value)))
                elif key in merged and merged[key] != value:
                    raise UnsupportedSchemaError("allOf", path, f"conflicting {key!r} in allOf")
                else:
                    merged[key] = value
        return merged

    def _typed(self, schema: dict, path: str, hint: str) -> str:
        g = self.grammar
        declared = schema.get("type")
        if isinstance(declared, list):
            if not declared:
                raise UnsupportedSchemaError("type", path, "empty type list")
            return " | ".join(
                self.convert({**schema, "type": kind}, path, f"{hint}-{kind}")
                for kind in dict.fromkeys(declared)
            )
        if declared is None:
            if any(key in schema for key in _OBJECT_HINTS):
                declared = "object"
            elif any(key in schema for key in _ARRAY_HINTS):
                declared = "array"
            elif any(key in schema for key in _STRING_HINTS):
                declared = "string"
            elif any(key in schema for key in _NUMBER_HINTS):
                declared = "number"
            else:
                return g.primitive("json-value")
        if declared == "object":
            return self._object(schema, path, hint)
        if declared == "array":
            return self._array(schema, path, hint)
        if declared == "string":
            return self._string(schema, path)
        if declared == "integer":
            return self._integer(schema, path)
        if declared == "number":
            return self._number(schema)
        if declared == "boolean":
            return g.primitive("json-boolean")
        if declared == "null":
            return g.primitive("json-null")
        raise UnsupportedSchemaError("type", path, f"unknown type {declared!r}")

    def _object(self, schema: dict, path: str, hint: str) -> str:
        g = self.grammar
        ws = g.primitive("ws")
        properties = schema.get("properties") or {}
        if not isinstance(properties, dict):
            raise UnsupportedSchemaError("properties", path, "properties must be an object")
        required = schema.get("required") or []
        properties = dict(properties)
        for name in required:
            properties.setdefault(name, True)
        additional = schema.get("additionalProperties")
        min_properties = int(schema.get("minProperties", 0))
        max_properties = schema.get("maxProperties")

        if not properties and "properties" not in schema and additional is not False:
            # a free-form dictionary
            if isinstance(additional, dict):
                value = self.convert(additional, f"{path}/additionalProperties", hint + "-value")
            else:
                value = g.primitive("json-value")
            member = g.add(hint + "-member", f'{g.primitive("json-string")} {ws} ":" {ws} {value} {ws}')
            members = _repeat(member, f'"," {ws}', min_properties, max_properties)
            return _seq('"{"', ws, members, '"}"')

        if min_properties > len(required):
            raise UnsupportedSchemaError(
                "minProperties", path, "more properties than the required ones cannot be enforced"
            )
        if max_properties is not None and max_properties < len(properties):
            raise UnsupportedSchemaError(
                "maxProperties", path, "fewer properties than declared cannot be enforced"
            )
        members = []
        for name, prop in properties.items():
            value = self.convert(prop, f"{path}/properties/{name}", f"{hint}-{name}")
            member = g.add(f"{hint}-{name}-kv", f'{g.literal(name)} {ws} ":" {ws} {value} {ws}')
            members.append((member, name in required))
        return _seq('"{"', ws, self._members(members, f'"," {ws}', hint), '"}"')

    def _members(self, members: list[tuple[str, bool]], separator: str, hint: str) -> str:
        """Members in order; optional ones may be left out, `separator` between present ones.

        Built back to front: after[i] continues once something was written (so each
        member needs a separator first), first[i] continues when nothing was written yet.
        """
        g = self.grammar
        count = len(members)
        if count == 0:
            return ""
        # first[i] is only reachable when every member before i is optional
        reachable = 1
        while reachable < count and not members[reachable - 1][1]:
            reachable += 1
        after = [""] * (count + 1)
        first = [""] * (count + 1)
        for i in range(count - 1, -1, -1):
            member, is_required = members[i]
            with_separator = f"{separator} {member} {after[i + 1]}".strip()
            without_separator = f"{member} {after[i + 1]}".strip()
            if is_required:
                after_body, first_body = with_separator, without_separator
            else:
                after_body = _either(with_separator, after[i + 1])
                first_body = _either(without_separator, first[i + 1])
            if i > 0:
                after[i] = g.add(f"{hint}-after-{i}", after_body)
            if i < reachable:
                first[i] = g.add(f"{hint}-from-{i}", first_body)
        return first[0]

    def _array(self, schema: dict, path: str, hint: str) -> str:
        g = self.grammar
        ws = g.primitive("ws")
        min_items = int(schema.get("minItems", 0))
        max_items = schema.get("maxItems")
        if max_items is not None:
            max_items = int(max_items)
            if max_items < min_items:
                raise UnsupportedSchemaError("maxItems", path, "maxItems is below minItems")
        if "prefixItems" in schema:
            prefix = schema["prefixItems"]
            if not isinstance(prefix, list):
                raise UnsupportedSchemaError("prefixItems", path, "prefixItems must be a list")
            closed = schema.get("items") is False or (max_items is not None and max_items <= len(prefix))
            if not closed:
                raise UnsupportedSchemaError(
                    "prefixItems", path, "more items after the prefixItems are not supported"
                )
            count = len(prefix) if max_items is None else min(max_items, len(prefix))
            if min_items > count:
                raise UnsupportedSchemaError("minItems", path, "more items than prefixItems allows")
            # later tuple items may be left out, but only from the end
            rest = ""
            for i in range(count - 1, -1, -1):
                item = self.convert(prefix[i], f"{path}/prefixItems/{i}", f"{hint}-{i}")
                chunk = _seq(f'"," {ws}' if i > 0 else "", item, ws, rest)
                rest = chunk if i < min_items else _optional(chunk)
            return _seq('"["', ws, rest, '"]"')
        items = schema.get("items")
        if items is None or items is True:
            item = g.primitive("json-value")
        else:
            item = self.convert(items, f"{path}/items", hint + "-item")
        element = g.add(hint + "-element", f"{item} {ws}")
        return _seq('"["', ws, _repeat(element, f'"," {ws}', min_items, max_items), '"]"')

    def _string(self, schema: dict, path: str) -> str:
        g = self.grammar
        text_format = schema.get("format")
        if text_format in _STRING_FORMATS:
            return f'"\\"" {g.primitive(text_format)} "\\""'
        min_length = int(schema.get("minLength", 0))
        max_length = schema.get("maxLength")
        if min_length == 0 and max_length is None:
            return g.primitive("json-string")
        if max_length is not None and int(max_length) < min_length:
            raise UnsupportedSchemaError("maxLength", path, "maxLength is below minLength")
        upper = "" if max_length is None else str(int(max_length))
        return f'"\\"" {g.primitive("json-char")}{{{min_length},{upper}}} "\\""'

    def _integer(self, schema: dict, path: str) -> str:
        low = _bound(schema, "minimum", "exclusiveMinimum", lower=True)
        high = _bound(schema, "maximum", "exclusiveMaximum", lower=False)
        if low is None and high is None:
            return self.grammar.primitive("json-integer")
        if low is not None and high is not None and low > high:
            raise UnsupportedSchemaError("minimum", path, "no integer satisfies the bounds")
        return _integer_range(low, high)

    def _number(self, schema: dict) -> str:
        minimum = schema.get("minimum")
        exclusive = schema.get("exclusiveMinimum")
        non_negative = (isinstance(minimum, (int, float)) and not isinstance(minimum, bool) and minimum >= 0) or (
            isinstance(exclusive, (int, float)) and not isinstance(exclusive, bool) and exclusive >= 0
        )
        return self.grammar.primitive("json-unsigned-number" if non_negative else "json-number")

    def _xml_value(self, schema: object, path: str, hint: str) -> str:
        """Seed-OSS writes strings raw and everything else as JSON."""
        resolved = self._resolve(schema, path)
        if isinstance(resolved, dict):
            values = resolved.get("enum", [resolved["const"]] if "const" in resolved else None)
            if values and all(isinstance(v, str) for v in values):
                return "( " + " | ".join(gbnf_literal(v) for v in values) + " )"
            declared = resolved.get("type")
            kinds = declared if isinstance(declared, list) else [declared]
            if "string" in kinds:
                maximum = resolved.get("maxLength")
                if maximum is not None:
                    return f'[^<]{{{int(resolved.get("minLength", 0))},{int(maximum)}}}'
                return self.grammar.primitive("xml-text")
        return self.convert(schema, path, hint)


def _bound(schema: dict, inclusive_key: str, exclusive_key: str, lower: bool) -> int | None:
    """The tightest integer bound from minimum/exclusiveMinimum (or the maximum pair)."""
    candidates = []
    inclusive = schema.get(inclusive_key)
    exclusive = schema.get(exclusive_key)
    if isinstance(inclusive, (int, float)) and not isinstance(inclusive, bool):
        if exclusive is True:  # draft-4 boolean form
            candidates.append(math.floor(inclusive) + 1 if lower else math.ceil(inclusive) - 1)
        else:
            candidates.append(math.ceil(inclusive) if lower else math.floor(inclusive))
    if isinstance(exclusive, (int, float)) and not isinstance(exclusive, bool):
        candidates.append(math.floor(exclusive) + 1 if lower else math.ceil(exclusive) - 1)
    if not candidates:
        return None
    return max(candidates) if lower else min(candidates)


def _load(schema: object) -> object:
    if isinstance(schema, (str, bytes)):
        try:
            return json.loads(schema)
        except ValueError as error:
            raise UnsupportedSchemaError("schema", "#", f"not valid JSON ({error})") from None
    return schema


def json_schema_to_gbnf(schema: dict | str, *, compact: bool = True) -> str:
    """A grammar whose documents are JSON values valid for `schema` (a dict or JSON text).

    Objects list their properties in schema order; properties that are not declared
    are never generated (also when additionalProperties is absent), unless the object
    declares no properties at all, in which case it is a free-form dictionary.
    """
    schema = _load(schema)
    grammar = _Grammar(compact)
    converter = _SchemaConverter(grammar, schema)
    grammar.define("root", converter.convert(schema, "#", "value"))
    return grammar.text()


def json_object_gbnf(*, compact: bool = True) -> str:
    """Any JSON object (OpenAI's response_format json_object)."""
    grammar = _Grammar(compact)
    grammar.define("root", grammar.primitive("json-object"))
    return grammar.text()


def grammar_for_response_format(response_format: dict | None) -> str | None:
    """The grammar an OpenAI ``response_format`` asks for; None for plain text.

    Raises UnsupportedSchemaError for schemas we cannot enforce and ValueError for a
    malformed response_format.
    """
    if not response_format:
        return None
    if not isinstance(response_format, dict):
        raise ValueError("'response_format' must be an object")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        schema = response_format.get("schema")
        return json_schema_to_gbnf(schema) if schema else json_object_gbnf()
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or "schema" not in spec:
            raise ValueError("'response_format.json_schema.schema' is required")
        return json_schema_to_gbnf(spec["schema"])
    raise ValueError("'response_format.type' must be 'text', 'json_object' or 'json_schema'")


# -- forced tool calls ---------------------------------------------------------------------------


def _function(tool: dict) -> dict:
    return tool.get("function", tool) if isinstance(tool, dict) else {}


def _call_rule(grammar: _Grammar, family: str, function: dict) -> tuple[str, str]:
    """(call rule, JSON-object-call rule or "") for one tool in the family's wire format."""
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("every tool needs a function name")
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    converter = _SchemaConverter(grammar, parameters)
    hint = "call-" + name
    quoted = json.dumps(name, ensure_ascii=False)
    comma, colon = grammar.separators
    if family == families.SEED_OSS:
        params = converter.xml_parameters(parameters, hint + "-params")
        opening = gbnf_literal(f"<seed:tool_call>\n<function={name}>\n")
        closing = gbnf_literal("</function>\n</seed:tool_call>")
        body = f"{opening} {params} {closing}"
        return grammar.add(hint, body), ""
    arguments = converter.convert(parameters, "#", hint + "-args")
    args_key = "parameters" if family == families.LLAMA3 else "arguments"
    opening = gbnf_literal('{"name"' + colon + quoted + comma + '"' + args_key + '"' + colon)
    json_call = grammar.add(hint + "-json", f'{opening} {arguments} "}}"')
    if family == families.GENERIC:
        body = f'"[TOOL_REQUEST]" {json_call} "[END_TOOL_REQUEST]"'
    elif family == families.HERMES:
        body = f'"<tool_call>\\n" {json_call} "\\n</tool_call>"'
    elif family in (families.LLAMA3, families.NEMOTRON):
        body = json_call
    elif family == families.MISTRAL:
        body = f"{gbnf_literal(name + '[ARGS]')} {arguments}"
    elif family == families.HARMONY:
        header = f"<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>"
        body = f"{gbnf_literal(header)} {arguments}"
    else:
        raise ValueError(f"unknown tool-call family {family!r}")
    return grammar.add(hint, body), json_call


def tool_call_gbnf(
    tools: list[dict],
    family: str,
    choice: str | dict = "required",
    *,
    parallel: bool = True,
    compact: bool = True,
) -> str:
    """A grammar that makes the model call tools in its family's wire format.

    choice "required": one call to any of the tools, or several when `parallel`;
    choice {"type": "function", "function": {"name": ...}}: exactly one call to that
    tool. Arguments follow each tool's parameters schema. gpt-oss (harmony) always
    makes one call, since its <|call|> token ends the turn.
    """
    functions = [_function(tool) for tool in tools]
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name") or choice.get("name")
        functions = [f for f in functions if f.get("name") == wanted]
        if not functions:
            raise ValueError(f"tool_choice names a tool that is not in tools: {wanted!r}")
        parallel = False
    elif choice != "required":
        raise ValueError("a tool-call grammar needs tool_choice 'required' or a named function")
    if not functions:
        raise ValueError("tool_choice 'required' needs at least one tool")
    if family == families.HARMONY:
        parallel = False

    grammar = _Grammar(compact)
    comma = gbnf_literal(grammar.separators[0])
    rules = [_call_rule(grammar, family, function) for function in functions]
    calls = [call for call, _ in rules]
    json_calls = [json_call for _, json_call in rules]
    call = grammar.add("call", " | ".join(calls))
    if family == families.NEMOTRON:
        listed = _repeat(call, comma, 1, None if parallel else 1)
        root = f'"<TOOLCALL>[" {listed} "]</TOOLCALL>"'
    elif family == families.MISTRAL:
        json_call = grammar.add("json-call", " | ".join(json_calls))
        array = f'"[" {_repeat(json_call, comma, 1, None if parallel else 1)} "]"'
        named = f'{call} ( "[TOOL_CALLS]" {call} )*' if parallel else call
        root = f'"[TOOL_CALLS]" ( {array} | {named} )'
    elif family == families.LLAMA3:
        root = _repeat(call, '"; "', 1, None if parallel else 1)
    else:
        root = _repeat(call, '"\\n"', 1, None if parallel else 1)
    grammar.define("root", root)
    return grammar.text()


def gbnf_compiles(gbnf: str) -> bool:
    """Whether llama.cpp's own parser accepts the grammar (needs llama_cpp importable)."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(None, gbnf.encode("utf-8"), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


# -- combining grammars ----------------------------------------------------------------------

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
