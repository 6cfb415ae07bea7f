"""Tools, structured output and reasoning on a chat body: ``tools`` and ``tool_choice``,
``response_format`` (compiled to a grammar once, here), ``reasoning_effort``, and the checks on
tool calls in the message history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lms_jupyter.api.fields import REASONING_EFFORTS, TOOL_CHOICES
from lms_jupyter.api.spec import openai as spec
from lms_jupyter.api.spec.openai import FORMAT_TYPES
from lms_jupyter.chat.grammar import UnsupportedSchemaError, grammar_for_response_format
from lms_jupyter.errors import bad_request

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
    for key, kind_name, kind_type in (
        ("description", "a string", str),
        ("parameters", "a JSON schema object", dict),
        ("strict", "a boolean", bool),
    ):
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
        raise bad_request(
            f"Tool names must be unique (repeated: {', '.join(duplicates)}).", "tools"
        )
    return checked or None


def tool_choice(value, offered: list[dict] | None) -> str | dict:
    names = [tool["function"]["name"] for tool in offered or []]
    if value is None:
        return "auto"
    if isinstance(value, str):
        if value not in TOOL_CHOICES:
            raise bad_request(
                "'tool_choice' must be 'none', 'auto', 'required' or "
                f'{{"type": "function", "function": {{"name": ...}}}} '
                f"(got {value!r}).",
                "tool_choice",
            )
        if value == "required" and not names:
            raise bad_request(
                "tool_choice 'required' needs a non-empty 'tools' array.", "tool_choice"
            )
        return value
    if not isinstance(value, dict) or value.get("type", "function") != "function":
        raise bad_request(
            '\'tool_choice\' must be a string or {"type": "function", "function": {"name": ...}}.',
            "tool_choice",
        )
    function = value.get("function")
    name = function.get("name") if isinstance(function, dict) else value.get("name")
    if not isinstance(name, str) or not name:
        raise bad_request("'tool_choice.function.name' must be a non-empty string.", "tool_choice")
    if name not in names:
        known = ", ".join(names) if names else "none"
        raise bad_request(
            f"tool_choice names the function {name!r}, which is not in 'tools' (tools: {known}).",
            "tool_choice",
        )
    return {"type": "function", "function": {"name": name}}


def tool_settings(body: dict) -> ToolSettings:
    offered = tools(body.get("tools"))
    parallel = spec.PARALLEL_TOOL_CALLS.read(body)
    return ToolSettings(offered, tool_choice(body.get("tool_choice"), offered), parallel)


@dataclass(frozen=True)
class FormatSurface:
    """Where a structured-output format sits in a body and how its errors read: chat's
    ``response_format`` (the schema's members under ``json_schema``, errors naming the
    field) and the Responses API's ``text.format`` (flat members, errors naming each
    member's path). One checker, :func:`format_grammar`, reads both."""

    where: str  # the format's path in the body
    object_hint: str  # what the format must be, when it is not an object
    nested: bool  # json_schema's members under "json_schema" (chat) or flat (Responses)
    # json_schema's members, in the order they are checked: (key, what it must be, its
    # type(s), required)
    members: tuple[tuple[str, str, type | tuple[type, ...], bool], ...]
    precise: bool  # errors name the member's own path (else the format's)

    def param(self, path: str) -> str:
        return path if self.precise else self.where


_NAME = ("name", "a string", str, False)
_STRICT = ("strict", "a boolean", bool, False)
CHAT_FORMAT = FormatSurface(
    "response_format",
    'an object such as {"type": "text"}',
    nested=True,
    members=(_NAME, _STRICT, ("schema", "a JSON schema object", (dict, str), True)),
    precise=False,
)
TEXT_FORMAT = FormatSurface(
    "text.format",
    "an object",
    nested=False,
    members=(
        ("schema", "a JSON schema object", dict, True),
        _NAME,
        _STRICT,
        ("description", "a string", str, False),
    ),
    precise=True,
)
_FORMAT_WORDS = f"{', '.join(repr(t) for t in FORMAT_TYPES[:-1])} or {FORMAT_TYPES[-1]!r}"


def format_grammar(value, surface: FormatSurface) -> str | None:
    """The GBNF that enforces a structured-output format (None: plain text), checked with
    ``surface``'s paths; a 400 naming them otherwise."""
    where = surface.where
    if not isinstance(value, dict):
        raise bad_request(f"'{where}' must be {surface.object_hint}.", where)
    kind = value.get("type")
    if kind not in FORMAT_TYPES:
        raise bad_request(
            f"'{where}.type' must be {_FORMAT_WORDS} (got {kind!r}).",
            surface.param(f"{where}.type"),
        )
    if kind == "text":
        return None
    chat_format = value
    if kind == "json_schema":
        holder: Any = value  # the object that holds the schema's members
        at = where
        if surface.nested:
            holder, at = value.get("json_schema"), f"{where}.json_schema"
            if not isinstance(holder, dict):
                raise bad_request(
                    f"'{at}' must be an object with 'name' and 'schema'.", surface.param(at)
                )
        for key, words, kind_type, required in surface.members:
            member = holder.get(key)
            if (required or member is not None) and not isinstance(member, kind_type):
                raise bad_request(f"'{at}.{key}' must be {words}.", surface.param(f"{at}.{key}"))
        if not surface.nested:
            chat_format = {
                "type": "json_schema",
                "json_schema": {
                    "name": holder.get("name") or "response",
                    "schema": holder["schema"],
                    "strict": holder.get("strict"),
                },
            }
    elif not surface.nested:
        chat_format = {"type": "json_object"}
    try:
        return grammar_for_response_format(chat_format)
    except UnsupportedSchemaError as exc:
        raise bad_request(f"Unsupported {where} schema: {exc}.", where) from None
    except (ValueError, TypeError, KeyError) as exc:
        raise bad_request(f"Invalid {where}: {exc}.", where) from None


def response_format_grammar(body: dict) -> str | None:
    """The GBNF that enforces chat's ``response_format``; None for plain text."""
    value = body.get("response_format")
    return None if value is None else format_grammar(value, CHAT_FORMAT)


def reasoning_effort(body: dict) -> str | None:
    """``reasoning_effort`` (chat completions) or ``reasoning.effort`` (Responses style)."""
    effort, param = body.get("reasoning_effort"), "reasoning_effort"
    if effort is None and body.get("reasoning") is not None:
        reasoning = body["reasoning"]
        if not isinstance(reasoning, dict):
            raise bad_request(
                '\'reasoning\' must be an object such as {"effort": "low"}.', "reasoning"
            )
        effort, param = reasoning.get("effort"), "reasoning.effort"
    if effort is None:
        return None
    if not isinstance(effort, str) or effort not in REASONING_EFFORTS:
        raise bad_request(
            f"'{param}' must be one of {', '.join(REASONING_EFFORTS)} (got {str(effort)[:40]!r}).",
            param,
        )
    return effort


@dataclass
class ChatFeatures:
    """Tools, structured output and reasoning effort of one chat request."""

    tools: ToolSettings = field(default_factory=ToolSettings)
    format_grammar: str | None = None  # GBNF enforcing response_format
    reasoning_effort: str | None = None


def chat_features(body: dict) -> ChatFeatures:
    return ChatFeatures(tool_settings(body), response_format_grammar(body), reasoning_effort(body))


def check_tool_history(messages: list[dict]) -> None:
    """Assistant tool_calls must be a list of objects; clear 400s instead of template errors."""
    for i, message in enumerate(messages):
        calls = message.get("tool_calls")
        if calls is None:
            continue
        if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
            raise bad_request(
                f"messages[{i}].tool_calls must be an array of objects.",
                f"messages[{i}].tool_calls",
            )
        for j, call in enumerate(calls):
            function = call.get("function")
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise bad_request(
                    f"messages[{i}].tool_calls[{j}].function.name must be a string.",
                    f"messages[{i}].tool_calls",
                )
