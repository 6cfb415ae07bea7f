"""JSON Schema (and OpenAI's response_format) to GBNF.

llama-cpp-python ignores OpenAI's ``json_schema`` response format, so we build the
grammar ourselves. Bounds enforced: string minLength/maxLength, array minItems/maxItems,
integer minimum/maximum (exclusive too), number minimum >= 0 (no minus sign). Other
number bounds are not enforced. Keywords that would need more (pattern, not, if/then,
patternProperties, ...) raise UnsupportedSchemaError instead of being ignored; with
maxLength/maxItems, generation ends.
"""

from __future__ import annotations

import json
import re
from urllib.parse import unquote

from lms_jupyter.chat.gbnf.numbers import integer_bound, integer_range
from lms_jupyter.chat.gbnf.rules import (
    Grammar,
    either,
    gbnf_literal,
    optional,
    repeat,
    seq,
)


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

_STRING_FORMATS = ("date", "time", "date-time", "uuid")
_RULE_NAME = re.compile(r"[a-zA-Z0-9-]+")


class SchemaConverter:
    """Turns one JSON schema (with its own $defs) into rules of a shared Grammar."""

    def __init__(self, grammar: Grammar, root_schema: object) -> None:
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
            if isinstance(schema, dict) and (
                "properties" in schema or schema.get("additionalProperties") is False
            ):
                return ""
            name_rule = self.grammar.add("xml-name", "[a-zA-Z0-9_]+")
            line = f'"<parameter=" {name_rule} ">" {self.grammar.primitive("xml-text")} "</parameter>\\n"'
            return f"( {self.grammar.add(hint + '-param', line)} )*"
        assert isinstance(schema, dict)  # it has properties
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
                "$ref",
                path,
                f"only local references like '#/$defs/Name' are supported, not {ref!r}",
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
        assert isinstance(ref, str)  # _lookup accepts local string references only
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
                    merged["required"] = list(
                        dict.fromkeys(merged.get("required", []) + list(value))
                    )
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
            member = g.add(
                hint + "-member", f'{g.primitive("json-string")} {ws} ":" {ws} {value} {ws}'
            )
            members = repeat(member, f'"," {ws}', min_properties, max_properties)
            return seq('"{"', ws, members, '"}"')

        if min_properties > len(required):
            raise UnsupportedSchemaError(
                "minProperties", path, "more properties than the required ones cannot be enforced"
            )
        if max_properties is not None and max_properties < len(properties):
            raise UnsupportedSchemaError(
                "maxProperties", path, "fewer properties than declared cannot be enforced"
            )
        declared: list[tuple[str, bool]] = []
        for name, prop in properties.items():
            value = self.convert(prop, f"{path}/properties/{name}", f"{hint}-{name}")
            member = g.add(f"{hint}-{name}-kv", f'{g.literal(name)} {ws} ":" {ws} {value} {ws}')
            declared.append((member, name in required))
        return seq('"{"', ws, self._members(declared, f'"," {ws}', hint), '"}"')

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
                after_body = either(with_separator, after[i + 1])
                first_body = either(without_separator, first[i + 1])
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
            closed = schema.get("items") is False or (
                max_items is not None and max_items <= len(prefix)
            )
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
                chunk = seq(f'"," {ws}' if i > 0 else "", item, ws, rest)
                rest = chunk if i < min_items else optional(chunk)
            return seq('"["', ws, rest, '"]"')
        items = schema.get("items")
        if items is None or items is True:
            item = g.primitive("json-value")
        else:
            item = self.convert(items, f"{path}/items", hint + "-item")
        element = g.add(hint + "-element", f"{item} {ws}")
        return seq('"["', ws, repeat(element, f'"," {ws}', min_items, max_items), '"]"')

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
        low = integer_bound(schema, "minimum", "exclusiveMinimum", lower=True)
        high = integer_bound(schema, "maximum", "exclusiveMaximum", lower=False)
        if low is None and high is None:
            return self.grammar.primitive("json-integer")
        if low is not None and high is not None and low > high:
            raise UnsupportedSchemaError("minimum", path, "no integer satisfies the bounds")
        return integer_range(low, high)

    def _number(self, schema: dict) -> str:
        minimum = schema.get("minimum")
        exclusive = schema.get("exclusiveMinimum")
        non_negative = (
            isinstance(minimum, (int, float)) and not isinstance(minimum, bool) and minimum >= 0
        ) or (
            isinstance(exclusive, (int, float))
            and not isinstance(exclusive, bool)
            and exclusive >= 0
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
                    return f"[^<]{{{int(resolved.get('minLength', 0))},{int(maximum)}}}"
                return self.grammar.primitive("xml-text")
        return self.convert(schema, path, hint)


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
    loaded = _load(schema)
    grammar = Grammar(compact)
    converter = SchemaConverter(grammar, loaded)
    grammar.define("root", converter.convert(loaded, "#", "value"))
    return grammar.text()


def json_object_gbnf(*, compact: bool = True) -> str:
    """Any JSON object (OpenAI's response_format json_object)."""
    grammar = Grammar(compact)
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
