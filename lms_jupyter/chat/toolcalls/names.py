"""Tool names as the model sees them, and the way back to the caller's names.

Models (and some chat templates) cope badly with names like "Get Weather" or
"get-weather.v2", so LM Studio hands them snake_case names and maps calls back.
"""

from __future__ import annotations

import copy
import re

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_WORD = re.compile(r"[^A-Za-z0-9]+")

EMPTY_PARAMETERS = {"type": "object", "properties": {}}


def snake_case(name: str) -> str:
    """'getWeather' / 'Get Weather' / 'get-weather' -> 'get_weather'; never empty."""
    spaced = _CAMEL_BOUNDARY.sub("_", name)
    words = _NOT_WORD.sub("_", spaced).strip("_").lower()
    return re.sub(r"_+", "_", words) or "tool"


def normalize_tool_names(tools: list[dict]) -> tuple[list[dict], dict[str, str]]:
    """Returns (tools for the model, {model name: caller's name}).

    Function tools get unique snake_case names ([a-z0-9_], suffixed _2, _3 on clashes)
    and an empty-object parameters schema when they have none. Other tools pass
    through unchanged. The input is not modified.
    """
    normalized: list[dict] = []
    mapping: dict[str, str] = {}
    for tool in tools:
        tool = copy.deepcopy(tool)
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict):
            normalized.append(tool)
            continue
        original = str(function.get("name") or "")
        base = snake_case(original)
        candidate, suffix = base, 2
        while candidate in mapping:
            candidate = f"{base}_{suffix}"
            suffix += 1
        mapping[candidate] = original
        function["name"] = candidate
        if not function.get("parameters"):
            function["parameters"] = copy.deepcopy(EMPTY_PARAMETERS)
        normalized.append(tool)
    return normalized, mapping


def original_tool_name(model_name: str, mapping: dict[str, str]) -> str:
    """The caller's name for a name the model produced (unknown names pass through)."""
    return mapping.get(model_name, model_name)


def model_names_in_history(messages: list[dict], mapping: dict[str, str]) -> list[dict]:
    """Renames tool calls in earlier assistant messages (and tool results that name
    their function) to the model's names, so the history matches the tool list."""
    to_model = {original: model for model, original in mapping.items()}
    renamed: list[dict] = []
    for message in messages:
        message = dict(message)
        if message.get("role") == "assistant" and message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                call = copy.deepcopy(call)
                function = call.get("function") or {}
                if function.get("name") in to_model:
                    function["name"] = to_model[function["name"]]
                calls.append(call)
            message["tool_calls"] = calls
        if message.get("role") == "tool" and message.get("name") in to_model:
            message["name"] = to_model[message["name"]]
        renamed.append(message)
    return renamed
