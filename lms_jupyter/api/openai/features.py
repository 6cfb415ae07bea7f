"""Tools, structured output and reasoning on a chat body: ``tools`` and ``tool_choice``,
``response_format`` (compiled to a grammar once, here), ``reasoning_effort``, and the checks on
tool calls in the message history.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lms_jupyter.chat.grammar import UnsupportedSchemaError, grammar_for_response_format
from lms_jupyter.errors import bad_request
from lms_jupyter.api.fields import REASONING_EFFORTS, TOOL_CHOICES



# -- tools, structured output, reasoning ------------------------------------------------------

@dataclass
class ToolSettings:
    """The validated tool fields: ``tools`` is None when the request offers none."""

    tools: list[dict] | None = None
    choice: str | dict = "auto"  # "none" | "auto" | "required" | {"type": "function", ...}
    parallel: bool | None = None  # parallel_tool_calls as sent (None: not sent)

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


def function_tool(tool, i: int) -> dict:
    """One tool in the nested chat-completions shape. The flat Responses shape
    (``{"type": "function", "name": ...}``) is accepted, and its errors name its own
    fields (``tools[0].name``, not ``tools[0].function.name``)."""
    where = f"tools[{i}]"
    if not isinstance(tool, dict):
        raise bad_request(f"{where} must be an object.", where)
    kind = tool.get("type", "function")
    if kind != "function":
        raise bad_request(f"{where}.type must be 'function' (got {kind!r}).", f"{where}.type")
    function, fields = tool.get("function"), f"{where}.function"
    if function is None and "name" in tool:  # {"type": "function", "name": ..., ...}
        function, fields = {k: v for k, v in tool.items() if k != "type"}, where
    if not isinstance(function, dict):
        raise bad_request(f"{where}.function must be an object.", f"{where}.function")
    name = function.get("name")
    if not isinstance(name, str) or not name.strip():
        raise bad_request(f"{fields}.name must be a non-empty string.", f"{fields}.name")
    for key, kind_name, kind_type in (("description", "a string", str),
                                      ("parameters", "a JSON schema object", dict),
                                      ("strict", "a boolean", bool)):
        value = function.get(key)
        if value is not None and not isinstance(value, kind_type):
            raise bad_request(f"{fields}.{key} must be {kind_name}.", f"{fields}.{key}")
    return {"type": "function", "function": dict(function)}


def tools(value) -> list[dict] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise bad_request("'tools' must be an array of tool objects.", "tools")
    return unique_tools([function_tool(tool, i) for i, tool in enumerate(value)])


def unique_tools(checked: list[dict]) -> list[dict] | None:
    """Checked tools (nested shape), refused when two share a name."""
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


def tool_settings(body: dict) -> ToolSettings:
    offered = tools(body.get("tools"))
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise bad_request("'parallel_tool_calls' must be a boolean.", "parallel_tool_calls")
    return ToolSettings(offered, tool_choice(body.get("tool_choice"), offered), parallel)


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
    if not isinstance(effort, str) or effort not in REASONING_EFFORTS:
        raise bad_request(f"'{param}' must be one of {', '.join(REASONING_EFFORTS)} "
                          f"(got {str(effort)[:40]!r}).", param)
    return effort


@dataclass
class ChatFeatures:
    """Tools, structured output and reasoning effort of one chat request."""

    tools: ToolSettings = field(default_factory=ToolSettings)
    format_grammar: str | None = None  # GBNF enforcing response_format
    reasoning_effort: str | None = None


def chat_features(body: dict) -> ChatFeatures:
    return ChatFeatures(tool_settings(body), response_format_grammar(body),
                        reasoning_effort(body))


def check_tool_history(messages: list[dict]) -> None:
    """Assistant tool_calls must be a list of objects; clear 400s instead of template errors."""
    for i, message in enumerate(messages):
        calls = message.get("tool_calls")
        if calls is None:
            continue
        if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
            raise bad_request(f"messages[{i}].tool_calls must be an array of objects.",
                              f"messages[{i}].tool_calls")
        for j, call in enumerate(calls):
            function = call.get("function")
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise bad_request(f"messages[{i}].tool_calls[{j}].function.name must be a "
                                  "string.", f"messages[{i}].tool_calls")


