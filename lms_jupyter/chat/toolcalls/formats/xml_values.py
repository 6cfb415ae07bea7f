"""Typing the raw text of XML-style tool-call parameters (Seed-OSS, Qwen3-Coder).

``<parameter=KEY>VALUE</parameter>`` carries text, so the JSON type of a value comes
from the tool's parameter schema when it is known.
"""

from __future__ import annotations

import json


def parameter_schemas(tools: list[dict]) -> dict[str, dict[str, dict]]:
    """tool name -> {parameter name: its JSON schema}, for typing XML parameter values."""
    schemas: dict[str, dict[str, dict]] = {}
    for tool in tools:
        function = tool.get("function", tool) if isinstance(tool, dict) else {}
        name = function.get("name")
        parameters = function.get("parameters") or {}
        properties = parameters.get("properties") if isinstance(parameters, dict) else None
        if isinstance(name, str) and isinstance(properties, dict):
            schemas[name] = properties
    return schemas


def _schema_types(schema: dict | None) -> set[str]:
    if not isinstance(schema, dict):
        return set()
    declared = schema.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {t for t in declared if isinstance(t, str)}
    if "enum" in schema and isinstance(schema["enum"], list):
        return {_json_type(value) for value in schema["enum"]}
    types: set[str] = set()
    for option in schema.get("anyOf", []) + schema.get("oneOf", []):
        types |= _schema_types(option)
    return types


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def xml_value_to_json(raw: str, schema: dict | None = None) -> str:
    """Turns an XML-style parameter value into JSON text.

    The value is raw text, so its type comes from the parameter's schema when known;
    without one, text that parses as JSON keeps that type and the rest is a string.
    """
    value = raw.removeprefix("\n").removesuffix("\n")
    types = _schema_types(schema)
    if types == {"string"}:
        return json.dumps(value, ensure_ascii=False)
    try:
        decoded = json.loads(value)
    except ValueError:
        return json.dumps(value, ensure_ascii=False)
    kind = _json_type(decoded)
    if not types or kind in types or (kind == "integer" and "number" in types):
        return json.dumps(decoded, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False)
