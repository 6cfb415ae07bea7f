"""An Anthropic Messages body (``POST /v1/messages``) as the typed ``ChatRequest``.

The Messages API is chat completions in another spelling, so it is translated once into
the OpenAI-shaped body that :func:`..requests.chat_request` already checks and types:
``system`` becomes the system message, ``tool_use`` blocks become assistant
``tool_calls``, ``tool_result`` blocks become ``tool`` messages, ``tool_choice: any``
becomes ``required`` (the same grammar-enforced path as chat completions). What only
the Messages API has is checked here, with errors naming Anthropic's own fields
(``messages[1].content[0].tool_use_id``, ``max_tokens``), so a client never sees an
OpenAI field name it did not send.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from lms_jupyter.api import fields as api_fields
from lms_jupyter.api.openai import requests
from lms_jupyter.api.openai.requests import ChatRequest
from lms_jupyter.api.spec import anthropic as spec
from lms_jupyter.api.spec.anthropic import MAX_STOP_SEQUENCES, ROLES, TOOL_CHOICES
from lms_jupyter.errors import bad_request

# thinking budgets as the reasoning effort the chat templates understand
THINKING_EFFORT = ((1024, "low"), (8192, "medium"))


@dataclass
class MessagesRequest:
    """The typed chat request and the Anthropic fields its answer needs."""

    chat: ChatRequest
    model: str  # the model as the client named it (echoed in the message)
    stop_sequences: list[str] = field(default_factory=list)
    thinking: bool = False


def _text(value, where: str) -> str:
    if not isinstance(value, str):
        raise bad_request(f"'{where}' must be a string.", where)
    return value


def _text_blocks(value, where: str) -> str:
    """A string, or a list of ``{"type": "text", "text"}`` blocks, as one text."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise bad_request(f"'{where}' must be a string or an array of text blocks.", where)
    parts = []
    for i, block in enumerate(value):
        spot = f"{where}[{i}]"
        if not isinstance(block, dict) or block.get("type") != "text":
            raise bad_request(
                f'{spot} must be a text block ({{"type": "text", "text": ...}}}}).', spot
            )
        parts.append(_text(block.get("text"), f"{spot}.text"))
    return "\n\n".join(parts)


def _tool_result_text(block: dict, spot: str) -> str:
    content = block.get("content", "")
    if content is None:
        return ""
    text = _text_blocks(content, f"{spot}.content")
    if block.get("is_error") is True:
        return f"Error: {text}"
    return text


def _blocks(content, where: str) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise bad_request(f"{where} must be a string or an array of content blocks.", where)
    for i, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise bad_request(
                f"{where}[{i}] must be a content block with a 'type'.", f"{where}[{i}]"
            )
    return content


def _user_messages(blocks: list[dict], where: str, known_calls: set[str]) -> list[dict]:
    """A user turn: tool results first (as ``tool`` messages), then its text."""
    out, text = [], []
    for i, block in enumerate(blocks):
        spot, kind = f"{where}[{i}]", block["type"]
        if kind == "text":
            text.append(_text(block.get("text"), f"{spot}.text"))
        elif kind == "tool_result":
            call_id = block.get("tool_use_id")
            if not isinstance(call_id, str) or not call_id:
                raise bad_request(
                    f"{spot}.tool_use_id must be a non-empty string.", f"{spot}.tool_use_id"
                )
            if call_id not in known_calls:
                raise bad_request(
                    f"{spot}.tool_use_id {call_id[:80]!r} answers no tool_use "
                    "block of an earlier assistant turn.",
                    f"{spot}.tool_use_id",
                )
            out.append(
                {"role": "tool", "tool_call_id": call_id, "content": _tool_result_text(block, spot)}
            )
        elif kind in ("image", "document"):
            raise bad_request(
                f"{spot}: {kind} blocks are not supported by the local models (text only).",
                f"{spot}.type",
            )
        else:
            raise bad_request(
                f"{spot}.type {kind[:40]!r} is not valid in a user turn (text, tool_result).",
                f"{spot}.type",
            )
    if text:
        out.append({"role": "user", "content": "\n\n".join(text)})
    return out


def _assistant_message(blocks: list[dict], where: str, known_calls: set[str]) -> dict:
    text, calls = [], []
    for i, block in enumerate(blocks):
        spot, kind = f"{where}[{i}]", block["type"]
        if kind == "text":
            text.append(_text(block.get("text"), f"{spot}.text"))
        elif kind == "tool_use":
            call_id, name = block.get("id"), block.get("name")
            if not isinstance(call_id, str) or not call_id:
                raise bad_request(f"{spot}.id must be a non-empty string.", f"{spot}.id")
            if not isinstance(name, str) or not name:
                raise bad_request(f"{spot}.name must be a non-empty string.", f"{spot}.name")
            arguments = block.get("input", {})
            if not isinstance(arguments, dict):
                raise bad_request(f"{spot}.input must be an object.", f"{spot}.input")
            known_calls.add(call_id)
            calls.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(arguments)},
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            continue  # earlier reasoning is not fed back (as chat templates drop it)
        else:
            raise bad_request(
                f"{spot}.type {kind[:40]!r} is not valid in an assistant turn "
                "(text, tool_use, thinking).",
                f"{spot}.type",
            )
    message: dict = {"role": "assistant", "content": "".join(text)}
    if calls:
        message["tool_calls"] = calls
    return message


def chat_messages(body: dict) -> list[dict]:
    """``system`` + ``messages`` as chat-completions messages."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' is required and must be a non-empty array.", "messages")
    out: list[dict] = []
    system = body.get("system")
    if system is not None:
        text = _text_blocks(system, "system")
        if text:
            out.append({"role": "system", "content": text})
    known_calls: set[str] = set()
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad_request(f"{where} must be an object.", where)
        role = message.get("role")
        if role not in ROLES:
            raise bad_request(
                f"{where}.role must be 'user' or 'assistant' (got {str(role)[:40]!r}).",
                f"{where}.role",
            )
        blocks = _blocks(message.get("content"), f"{where}.content")
        if role == "user":
            out += _user_messages(blocks, f"{where}.content", known_calls)
        else:
            out.append(_assistant_message(blocks, f"{where}.content", known_calls))
    return out


def chat_tools(body: dict) -> tuple[list[dict] | None, object, bool | None]:
    """``tools`` and ``tool_choice`` as chat-completions ones (+ parallel_tool_calls)."""
    value = body.get("tools")
    tools: list[dict] | None = None
    if value is not None:
        if not isinstance(value, list):
            raise bad_request("'tools' must be an array of tools.", "tools")
        tools = []
        for i, tool in enumerate(value):
            where = f"tools[{i}]"
            if not isinstance(tool, dict):
                raise bad_request(f"{where} must be an object.", where)
            if tool.get("type") not in (None, "custom"):
                raise bad_request(
                    f"{where}.type {str(tool.get('type'))[:40]!r}: only custom "
                    "tools (name, description, input_schema) are supported.",
                    f"{where}.type",
                )
            name = tool.get("name")
            if not isinstance(name, str) or not name.strip():
                raise bad_request(f"{where}.name must be a non-empty string.", f"{where}.name")
            schema = tool.get("input_schema")
            if not isinstance(schema, dict):
                raise bad_request(
                    f"{where}.input_schema must be a JSON schema object.", f"{where}.input_schema"
                )
            description = tool.get("description")
            if description is not None and not isinstance(description, str):
                raise bad_request(f"{where}.description must be a string.", f"{where}.description")
            function = {"name": name, "parameters": schema}
            if description:
                function["description"] = description
            tools.append({"type": "function", "function": function})
    choice = body.get("tool_choice")
    if choice is None:
        return tools, None, None
    if not isinstance(choice, dict) or choice.get("type") not in TOOL_CHOICES:
        raise bad_request(
            '\'tool_choice\' must be {"type": "auto" | "any" | "tool" | '
            '"none"} (with "name" for "tool").',
            "tool_choice",
        )
    parallel = choice.get("disable_parallel_tool_use")
    if parallel is not None and not isinstance(parallel, bool):
        raise bad_request(
            "'tool_choice.disable_parallel_tool_use' must be a boolean.",
            "tool_choice.disable_parallel_tool_use",
        )
    kind = choice["type"]
    if kind in ("any", "tool") and not tools:
        raise bad_request(f"tool_choice '{kind}' needs a non-empty 'tools' array.", "tool_choice")
    openai_choice: dict | str | None
    if kind == "tool":
        assert tools is not None  # a 'tool' choice without tools was refused above
        name = choice.get("name")
        names = [t["function"]["name"] for t in tools]
        if not isinstance(name, str) or name not in names:
            raise bad_request(
                f"tool_choice.name must name one of the tools ({', '.join(names)}).",
                "tool_choice.name",
            )
        openai_choice = {"type": "function", "function": {"name": name}}
    else:
        openai_choice = {"any": "required"}.get(kind, kind)
    return tools, openai_choice, None if parallel is None else not parallel


def stop_sequences(body: dict) -> list[str]:
    value = body.get("stop_sequences")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise bad_request("'stop_sequences' must be an array of strings.", "stop_sequences")
    if len(value) > MAX_STOP_SEQUENCES:
        raise bad_request(f"At most {MAX_STOP_SEQUENCES} stop_sequences.", "stop_sequences")
    return [s for s in value if s]


def thinking(body: dict) -> str | None:
    """``thinking`` as a reasoning effort: None when not sent."""
    value = body.get("thinking")
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in spec.THINKING_TYPES:
        raise bad_request(
            '\'thinking\' must be {"type": "enabled", "budget_tokens": N} or {"type": "disabled"}.',
            "thinking",
        )
    if value["type"] == "disabled":
        return "none"
    budget = spec.BUDGET_TOKENS.read(value)
    for limit, effort in THINKING_EFFORT:
        if budget <= limit:
            return effort
    return "high"


def _metadata(body: dict) -> None:
    value = body.get("metadata")
    if value is not None and not isinstance(value, dict):
        raise bad_request("'metadata' must be an object.", "metadata")


def chat_body(body, *, counting: bool = False) -> dict:
    """The OpenAI-shaped body of a Messages request (``counting``: count_tokens, which
    has no ``max_tokens``)."""
    body = api_fields.require_object(body)
    api_fields.model_name(body)
    if not counting:
        if body.get("max_tokens") is None:
            raise bad_request("'max_tokens' is required.", "max_tokens")
        spec.MAX_TOKENS.read(body)
    _metadata(body)
    tools, choice, parallel = chat_tools(body)
    out = {
        "model": body["model"],
        "messages": chat_messages(body),
        "stream": False if counting else spec.STREAM.read(body),
        "stop": stop_sequences(body),
    }
    if not counting:
        out["max_tokens"] = body["max_tokens"]
    for name in ("temperature", "top_p", "top_k"):
        if body.get(name) is not None:
            out[name] = body[name]
    spec.TEMPERATURE.read(body)  # Anthropic's range is 0..1
    if tools is not None:
        out["tools"] = tools
    if choice is not None:
        out["tool_choice"] = choice
    if parallel is not None:
        out["parallel_tool_calls"] = parallel
    effort = thinking(body)
    if effort is not None:
        out["reasoning_effort"] = effort
    for name in ("ttl", "context_length"):  # LM Studio's load fields, as on every endpoint
        if body.get(name) is not None:
            out[name] = body[name]
    return out


def parse(body, *, counting: bool = False) -> MessagesRequest:
    """The typed request of one Messages (or count_tokens) body."""
    chat_body_ = chat_body(body, counting=counting)
    chat = requests.chat_request(chat_body_)
    return MessagesRequest(
        chat,
        body["model"].strip(),
        chat_body_["stop"],
        body.get("thinking") is not None and chat_body_.get("reasoning_effort") != "none",
    )
