"""The Responses API's body (``POST /v1/responses``) as typed values: the parsing step.

A Responses request is a chat request in another spelling, so it becomes the same typed
:class:`~.requests.ChatRequest` the chat endpoint runs, through the same field readers
(:mod:`.requests`: sampling, ``max_output_tokens``, ``reasoning.effort``, flat function
tools, ``tool_choice``, LM Studio's ``ttl``/``preset``/``draft_model``). What only the
Responses API has is checked here, once, with errors naming the Responses ``param``
(``input[2].content[0]``, ``text.format``, ``tools[1].server_url``): input items, the
flat ``text.format``, ``mcp`` tools, ``store``, ``previous_response_id``, ``metadata``.

Conversation items (this turn's input, earlier turns from the store, the current
response's own output) become chat messages in :func:`items_to_messages`; each model
step of a response is one :func:`step_request`.

Why one module over 500 lines: like :mod:`.requests`, it is the one place where the
Responses fields are checked (input items, MCP tool settings, ``text.format``), by
design; split, the checks of one body would be scattered again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lms_jupyter.api import fields as api_fields
from lms_jupyter.api.openai import features as api_features
from lms_jupyter.api.openai import requests
from lms_jupyter.api.openai.features import ChatFeatures, ToolSettings
from lms_jupyter.api.openai.requests import ChatRequest
from lms_jupyter.api.responses.mcp_spec import McpServerSpec, _mcp_tool
from lms_jupyter.api.spec import responses as spec
from lms_jupyter.chat.templates import message_text, normalise_messages
from lms_jupyter.errors import bad_request

ROLES = ("user", "assistant", "system", "developer")
TEXT_PARTS = ("input_text", "output_text", "text")
MEDIA_PARTS = ("input_image", "input_file", "input_audio", "image_url")
ITEM_TYPES = (
    "message",
    "function_call",
    "function_call_output",
    "reasoning",
    "mcp_list_tools",
    "mcp_call",
    "mcp_approval_request",
    "mcp_approval_response",
)
DECLINED = "The user declined this tool call."


def _string(item: dict, key: str, where: str, *, empty: bool = False) -> str:
    value = item.get(key)
    if not isinstance(value, str) or (not empty and not value):
        raise bad_request(
            f"{where}.{key} must be a{'' if empty else ' non-empty'} string.", f"{where}.{key}"
        )
    return value


def _content_text(content, where: str) -> str:
    """A message's or a tool output's content: a string or a list of text parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad_request(f"{where} must be a string or an array of content parts.", where)
    texts = []
    for j, part in enumerate(content):
        here = f"{where}[{j}]"
        if not isinstance(part, dict):
            raise bad_request(f"{here} must be an object.", here)
        kind = part.get("type")
        if kind in TEXT_PARTS:
            texts.append(_string(part, "text", here, empty=True))
        elif kind == "refusal":
            texts.append(_string(part, "refusal", here, empty=True))
        elif kind in MEDIA_PARTS:
            raise bad_request(
                f"{here}: {kind} is not supported; this server runs text-only "
                "models (send input_text parts).",
                here,
            )
        else:
            raise bad_request(
                f"{here}.type must be one of input_text, output_text (got {kind!r}).",
                f"{here}.type",
            )
    return "".join(texts)


def _input_item(item, i: int) -> dict:
    """One input item, checked and normalised (the shape stored as conversation)."""
    where = f"input[{i}]"
    if not isinstance(item, dict):
        raise bad_request(f"{where} must be an object.", where)
    kind = item.get("type") or ("message" if "role" in item else None)
    if kind not in ITEM_TYPES:
        raise bad_request(
            f"{where}.type must be one of {', '.join(ITEM_TYPES)} (got {kind!r}).", f"{where}.type"
        )
    if kind == "message":
        role = item.get("role")
        if role not in ROLES:
            raise bad_request(
                f"{where}.role must be one of {', '.join(ROLES)} (got {role!r}).", f"{where}.role"
            )
        return {
            "type": "message",
            "role": role,
            "content": _content_text(item.get("content"), f"{where}.content"),
        }
    if kind == "function_call":
        return {
            "type": kind,
            "call_id": _string(item, "call_id", where),
            "name": _string(item, "name", where),
            "arguments": _string(item, "arguments", where, empty=True),
        }
    if kind == "function_call_output":
        return {
            "type": kind,
            "call_id": _string(item, "call_id", where),
            "output": _content_text(item.get("output"), f"{where}.output"),
        }
    if kind == "mcp_approval_response":
        approve = item.get("approve")
        if not isinstance(approve, bool):
            raise bad_request(f"{where}.approve must be a boolean.", f"{where}.approve")
        out = {
            "type": kind,
            "approval_request_id": _string(item, "approval_request_id", where),
            "approve": approve,
        }
        if isinstance(item.get("reason"), str):
            out["reason"] = item["reason"]
        return out
    if kind in ("mcp_call", "mcp_approval_request"):
        for key in ("id", "name", "server_label"):
            _string(item, key, where)
        _string(item, "arguments", where, empty=True)
    return dict(item)  # reasoning, mcp_list_tools, mcp_call, mcp_approval_request: context


def input_items(value) -> list[dict]:
    if isinstance(value, str):
        if not value:
            raise bad_request("'input' must not be empty.", "input")
        return [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise bad_request(
            "'input' must be a non-empty string or a non-empty array of input items.", "input"
        )
    return [_input_item(item, i) for i, item in enumerate(value)]


def check_turn(context: list[dict], items: list[dict]) -> None:
    """Outputs and approvals must answer something in the conversation (OpenAI's 400s)."""
    calls = {i["call_id"] for i in [*context, *items] if i.get("type") == "function_call"}
    pending = {i["id"] for i in context if i.get("type") == "mcp_approval_request"}
    answered = {
        i["approval_request_id"] for i in context if i.get("type") == "mcp_approval_response"
    }
    for n, item in enumerate(items):
        if item["type"] == "function_call_output" and item["call_id"] not in calls:
            raise bad_request(
                f"No tool call found for function call output with call_id {item['call_id']}.",
                f"input[{n}].call_id",
            )
        if item["type"] == "mcp_approval_response":
            ref = item["approval_request_id"]
            if ref not in pending:
                raise bad_request(
                    f"No MCP approval request {ref!r} in the conversation "
                    "(send it with the previous_response_id of the response "
                    "that asked).",
                    f"input[{n}].approval_request_id",
                )
            if ref in answered:
                raise bad_request(
                    f"The MCP approval request {ref!r} was already answered.",
                    f"input[{n}].approval_request_id",
                )


def _call_message(messages: list[dict], call_id: str, name: str, arguments: str) -> None:
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments or "{}"},
    }
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": "", "tool_calls": [call]})


def _error_text(error) -> str:
    if isinstance(error, dict):
        content = error.get("content")
        if isinstance(content, list):
            return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        return str(error.get("message") or content or error)
    return str(error)


def items_to_messages(items: list[dict]) -> list[dict]:
    """Conversation items as chat messages (reasoning and tool listings are left out)."""
    approvals = {i["id"]: i for i in items if i.get("type") == "mcp_approval_request"}
    messages: list[dict] = []
    for item in items:
        kind = item.get("type")
        if kind == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            messages.append({"role": role, "content": message_text(item.get("content"))})
        elif kind == "function_call":
            _call_message(messages, item["call_id"], item["name"], item.get("arguments", ""))
        elif kind == "function_call_output":
            messages.append(
                {"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]}
            )
        elif kind == "mcp_call":
            _call_message(messages, item["id"], item["name"], item.get("arguments", ""))
            result = item.get("output")
            if result is None:
                result = f"Error: {_error_text(item.get('error'))}"
            messages.append({"role": "tool", "tool_call_id": item["id"], "content": result})
        elif kind == "mcp_approval_response" and not item["approve"]:
            asked = approvals.get(item["approval_request_id"])
            if asked is not None:
                _call_message(messages, asked["id"], asked["name"], asked.get("arguments", ""))
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": asked["id"],
                        "content": item.get("reason") or DECLINED,
                    }
                )
    return messages


# -- the request ----------------------------------------------------------------------------


@dataclass
class ResponsesRequest:
    """A checked Responses body. ``generation`` holds the GenerationFields of every step."""

    generation: dict
    items: list[dict]  # this turn's input, normalised
    instructions: str | None = None
    function_tools: list[dict] = field(default_factory=list)  # nested chat shape
    mcp: list[McpServerSpec] = field(default_factory=list)
    tool_choice: str | dict = "auto"  # chat's choice, or {"type": "mcp", ...}
    parallel: bool | None = None
    max_tool_calls: int | None = None
    format_grammar: str | None = None
    reasoning_effort: str | None = None
    previous_response_id: str | None = None
    store: bool = True
    echo: dict = field(default_factory=dict)  # request fields the response object repeats

    @property
    def model(self) -> str:
        return self.generation["model"]

    @property
    def stream(self) -> bool:
        return self.generation["stream"]

    @property
    def max_output_tokens(self) -> int | None:
        return self.generation["max_tokens"]


def _text_format(text) -> tuple[str | None, dict]:
    """(grammar, the ``text`` echo) for ``text.format`` (flat json_schema, unlike chat's
    ``response_format``; both are checked by :func:`.features.format_grammar`)."""
    if text is None:
        return None, {"format": {"type": "text"}}
    if not isinstance(text, dict):
        raise bad_request(
            '\'text\' must be an object such as {"format": {"type": "text"}}.', "text"
        )
    fmt = text.get("format")
    grammar = None if fmt is None else api_features.format_grammar(fmt, api_features.TEXT_FORMAT)
    if grammar is None:
        return None, {"format": {"type": "text"}}
    assert fmt is not None  # a grammar came from it
    return grammar, {"format": dict(fmt)}


def _tools(value) -> tuple[list[dict], list[McpServerSpec], list[dict]]:
    """(function tools in the chat shape, MCP servers, the ``tools`` echo)."""
    if value is None:
        return [], [], []
    if not isinstance(value, list):
        raise bad_request("'tools' must be an array of tool objects.", "tools")
    functions, servers, echo = [], [], []
    for i, tool in enumerate(value):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "mcp":
            servers.append(_mcp_tool(tool, i))
            echo.append(servers[-1].echo())
        elif kind == "function" or not isinstance(tool, dict):
            functions.append(api_features.function_tool(tool, i))
            echo.append(
                {
                    "type": "function",
                    "strict": None,
                    **{k: v for k, v in functions[-1]["function"].items()},
                }
            )
        else:
            raise bad_request(
                f"tools[{i}].type {kind!r} is not supported here (supported: function, mcp).",
                f"tools[{i}].type",
            )
    api_features.unique_tools(functions)
    labels = [s.label for s in servers]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise bad_request(
            f"MCP server labels must be unique (repeated: {', '.join(repeated)}).", "tools"
        )
    return functions, servers, echo


def _tool_choice(value, functions: list[dict], servers: list[McpServerSpec]):
    """Chat's validated choice, or ``{"type": "mcp", "server_label", "name"}``."""
    if isinstance(value, dict) and value.get("type") == "mcp":
        label = value.get("server_label")
        known = [s.label for s in servers]
        if label not in known:
            raise bad_request(
                f"tool_choice names the MCP server {label!r}, which is not in "
                f"'tools' (MCP servers: {', '.join(known) or 'none'}).",
                "tool_choice",
            )
        name = value.get("name")
        if name is not None and (not isinstance(name, str) or not name):
            raise bad_request("'tool_choice.name' must be a non-empty string.", "tool_choice")
        return {"type": "mcp", "server_label": label, "name": name}
    if isinstance(value, dict) and value.get("type", "function") != "function":
        raise bad_request(
            f"tool_choice type {value.get('type')!r} is not supported (use "
            "'none', 'auto', 'required', {\"type\": \"function\", \"name\": ...} "
            'or {"type": "mcp", "server_label": ...}).',
            "tool_choice",
        )
    if value == "required" and servers and not functions:
        return "required"  # the MCP servers' tools are listed later
    return api_features.tool_choice(value, functions or None)


def parse(body) -> ResponsesRequest:
    """POST /v1/responses (after its ``preset`` was applied) as a typed request."""
    body = api_fields.require_object(body)
    if body.get("conversation") is not None:
        raise bad_request(
            "'conversation' objects are not supported; chain responses with "
            "'previous_response_id'.",
            "conversation",
        )
    if spec.BACKGROUND.read(body):
        raise bad_request("Background responses are not supported.", "background")
    truncation = spec.TRUNCATION.read(body)
    include = body.get("include")
    if include is not None and not (
        isinstance(include, list) and all(isinstance(x, str) for x in include)
    ):
        raise bad_request("'include' must be an array of strings.", "include")
    generation = requests.generation_fields(body)
    items = input_items(body.get("input"))
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise bad_request("'instructions' must be a string.", "instructions")
    functions, servers, tools_echo = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"), functions, servers)
    settings = api_features.tool_settings({"parallel_tool_calls": body.get("parallel_tool_calls")})
    max_tool_calls = spec.MAX_TOOL_CALLS.read(body)
    grammar, text_echo = _text_format(body.get("text"))
    if grammar is None and body.get("response_format") is not None:  # from a preset
        grammar = api_features.response_format_grammar(body)
    effort = api_features.reasoning_effort(body)
    previous = body.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not previous):
        raise bad_request("'previous_response_id' must be a response id.", "previous_response_id")
    store = spec.STORE.read(body)
    sampling = generation["sampling"]
    echo = {
        "instructions": instructions or None,
        "max_output_tokens": generation["max_tokens"],
        "max_tool_calls": max_tool_calls,
        "metadata": api_fields.metadata(body),
        "parallel_tool_calls": settings.parallel is not False,
        "previous_response_id": previous,
        "reasoning": {"effort": effort, "summary": None},
        "store": store,
        "temperature": sampling.temperature,
        "text": text_echo,
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": tools_echo,
        "top_p": sampling.top_p,
        "truncation": truncation or "disabled",
        "user": body.get("user") if isinstance(body.get("user"), str) else None,
    }
    return ResponsesRequest(
        generation,
        items,
        instructions or None,
        functions,
        servers,
        choice,
        settings.parallel,
        max_tool_calls,
        grammar,
        effort,
        previous,
        store,
        echo,
    )


def apply_preset(body, presets) -> dict:
    """``body`` with its preset (request fields win); the preset's system prompt becomes
    ``instructions`` when the request has neither instructions nor a system message."""
    body = api_fields.require_object(body)
    name = body.get("preset")
    merged = requests.apply_preset(body, presets)
    if name is None:
        return merged
    prompt = presets.get(name).settings.get("system_prompt")
    items = body.get("input") if isinstance(body.get("input"), list) else []
    has_system = any(
        isinstance(i, dict) and i.get("role") in ("system", "developer") for i in items
    )
    if prompt and not merged.get("instructions") and not has_system:
        merged["instructions"] = prompt
    return merged


# -- one model step -------------------------------------------------------------------------


def step_request(
    request: ResponsesRequest,
    conversation: list[dict],
    tools: list[dict],
    choice,
    max_tokens: int | None,
) -> ChatRequest:
    """The chat request of one model step: ``conversation`` is every item so far (earlier
    turns, this input, this response's output), ``tools`` the function tools offered
    (chat shape, MCP tools included), ``choice`` chat's tool_choice for this step."""
    messages = items_to_messages(conversation)
    if request.instructions:
        if messages and messages[0]["role"] == "system":
            messages[0] = {
                "role": "system",
                "content": f"{request.instructions}\n\n{messages[0]['content']}",
            }
        else:
            messages.insert(0, {"role": "system", "content": request.instructions})
    if not messages:
        raise bad_request("The conversation has no messages to answer.", "input")
    features = ChatFeatures(
        ToolSettings(tools or None, choice if tools else "auto", request.parallel),
        request.format_grammar,
        request.reasoning_effort,
    )
    fields = dict(request.generation, max_tokens=max_tokens)
    return ChatRequest(**fields, messages=normalise_messages(messages), features=features)
