"""Validate the tool, structured-output and reasoning fields of a chat request.

Like params.py, every check raises an OpenAI-style 400 naming the field, so a malformed
tool list or schema never reaches the template, the grammar compiler or llama.cpp.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import bad_request
from ..chat.grammar import UnsupportedSchemaError, grammar_for_response_format

TOOL_CHOICES = ("none", "auto", "required")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")


@dataclass
class ToolSettings:
    """The validated tool fields: ``tools`` is None when the request offers none."""

    tools: list[dict] | None
    choice: str | dict  # "none" | "auto" | "required" | {"type": "function", "function": {...}}
    parallel: bool | None  # parallel_tool_calls as sent (None: not sent)

    @property
    def offered(self) -> bool:
        """Whether the model is told about the tools and its calls are parsed."""
        return bool(self.tools) and self.choice != "none"

    @property
    def forced(self) -> bool:
        """Whether a grammar must make the model call a tool."""
        return self.offered and self.choice != "auto"

    @property
    def forced_name(self) -> str | None:
        return self.choice["function"]["name"] if isinstance(self.choice, dict) else None


def _function_tool(tool, i: int) -> dict:
    """One tool in the nested chat-completions shape (the flat Responses shape is accepted)."""
    where = f"tools[{i}]"
    if not isinstance(tool, dict):
        raise bad_request(f"{where} must be an object.", where)
    kind = tool.get("type", "function")
    if kind != "function":
        raise bad_request(f"{where}.type must be 'function' (got {kind!r}).", f"{where}.type")
    function = tool.get("function")
    if function is None and "name" in tool:  # {"type": "function", "name": ..., ...}
        function = {k: v for k, v in tool.items() if k != "type"}
    if not isinstance(function, dict):
        raise bad_request(f"{where}.function must be an object.", f"{where}.function")
    name = function.get("name")
    if not isinstance(name, str) or not name.strip():
        raise bad_request(f"{where}.function.name must be a non-empty string.",
                          f"{where}.function.name")
    description = function.get("description")
    if description is not None and not isinstance(description, str):
        raise bad_request(f"{where}.function.description must be a string.",
                          f"{where}.function.description")
    parameters = function.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise bad_request(f"{where}.function.parameters must be a JSON schema object.",
                          f"{where}.function.parameters")
    strict = function.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise bad_request(f"{where}.function.strict must be a boolean.",
                          f"{where}.function.strict")
    return {"type": "function", "function": dict(function)}


def tools(value) -> list[dict] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise bad_request("'tools' must be an array of tool objects.", "tools")
    checked = [_function_tool(tool, i) for i, tool in enumerate(value)]
    names = [tool["function"]["name"] for tool in checked]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise bad_request(f"Tool names must be unique (repeated: {', '.join(duplicates)}).",
                          "tools")
    return checked or None


def tool_choice(value, offered: list[dict] | None) -> str | dict:
    names = [tool["function"]["name"] for tool in offered or []]
    if value is None:
        return "auto"
    if isinstance(value, str):
        if value not in TOOL_CHOICES:
            raise bad_request("'tool_choice' must be 'none', 'auto', 'required' or "
                              f"{{\"type\": \"function\", \"function\": {{\"name\": ...}}}} "
                              f"(got {value!r}).", "tool_choice")
        if value == "required" and not names:
            raise bad_request("tool_choice 'required' needs a non-empty 'tools' array.",
                              "tool_choice")
        return value
    if not isinstance(value, dict) or value.get("type", "function") != "function":
        raise bad_request("'tool_choice' must be a string or "
                          "{\"type\": \"function\", \"function\": {\"name\": ...}}.",
                          "tool_choice")
    function = value.get("function")
    name = function.get("name") if isinstance(function, dict) else value.get("name")
    if not isinstance(name, str) or not name:
        raise bad_request("'tool_choice.function.name' must be a non-empty string.",
                          "tool_choice")
    if name not in names:
        known = ", ".join(names) if names else "none"
        raise bad_request(f"tool_choice names the function {name!r}, which is not in 'tools' "
                          f"(tools: {known}).", "tool_choice")
    return {"type": "function", "function": {"name": name}}


def parallel_tool_calls(body: dict) -> bool | None:
    value = body.get("parallel_tool_calls")
    if value is not None and not isinstance(value, bool):
        raise bad_request("'parallel_tool_calls' must be a boolean.", "parallel_tool_calls")
    return value


def tool_settings(body: dict) -> ToolSettings:
    offered = tools(body.get("tools"))
    return ToolSettings(offered, tool_choice(body.get("tool_choice"), offered),
                        parallel_tool_calls(body))


def response_format_grammar(body: dict) -> str | None:
    """The GBNF that enforces ``response_format``; None for plain text."""
    value = body.get("response_format")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request("'response_format' must be an object such as {\"type\": \"text\"}.",
                          "response_format")
    kind = value.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        raise bad_request("'response_format.type' must be 'text', 'json_object' or "
                          f"'json_schema' (got {kind!r}).", "response_format")
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict):
            raise bad_request("'response_format.json_schema' must be an object with 'name' and "
                              "'schema'.", "response_format")
        if spec.get("name") is not None and not isinstance(spec.get("name"), str):
            raise bad_request("'response_format.json_schema.name' must be a string.",
                              "response_format")
        if spec.get("strict") is not None and not isinstance(spec.get("strict"), bool):
            raise bad_request("'response_format.json_schema.strict' must be a boolean.",
                              "response_format")
        if not isinstance(spec.get("schema"), (dict, str)):
            raise bad_request("'response_format.json_schema.schema' must be a JSON schema "
                              "object.", "response_format")
    try:
        return grammar_for_response_format(value)
    except UnsupportedSchemaError as exc:
        raise bad_request(f"Unsupported response_format schema: {exc}.",
                          "response_format") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise bad_request(f"Invalid response_format: {exc}.", "response_format") from None


def reasoning_effort(body: dict) -> str | None:
    """``reasoning_effort`` (chat completions) or ``reasoning.effort`` (Responses style)."""
    effort, param = body.get("reasoning_effort"), "reasoning_effort"
    if effort is None and body.get("reasoning") is not None:
        reasoning = body["reasoning"]
        if not isinstance(reasoning, dict):
            raise bad_request("'reasoning' must be an object such as {\"effort\": \"low\"}.",
                              "reasoning")
        effort, param = reasoning.get("effort"), "reasoning.effort"
    if effort is None:
        return None
    if not isinstance(effort, str) or effort.lower() not in REASONING_EFFORTS:
        raise bad_request(f"'{param}' must be one of {', '.join(REASONING_EFFORTS)} "
                          f"(got {effort!r}).", param)
    return effort.lower()
