"""LM Studio's "default tool use" for models whose template knows no tools.

The tools are described in a system prompt that asks for
[TOOL_REQUEST]{"name": ..., "arguments": {...}}[END_TOOL_REQUEST], and the history is
rewritten into plain system/user/assistant turns that any template can render.
"""

from __future__ import annotations

import json

REQUEST_OPEN = "[TOOL_REQUEST]"
REQUEST_CLOSE = "[END_TOOL_REQUEST]"


def format_tool_request(name: str, arguments: object) -> str:
    """One call in the generic wire format (the form the grammar also enforces)."""
    body = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    return f"{REQUEST_OPEN}{body}{REQUEST_CLOSE}"


def _function(tool: dict) -> dict:
    return tool.get("function", tool) if isinstance(tool, dict) else {}


def _tool_lines(tools: list[dict]) -> tuple[list[str], str | None]:
    """Each tool's name, description and argument schema; and the first tool's name."""
    lines, first = [], None
    for tool in tools:
        function = _function(tool)
        name = function.get("name")
        if not name:
            continue
        first = first or name
        lines.append(f"- {name}: {function.get('description') or 'no description'}")
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        lines.append(f"  arguments JSON schema: {json.dumps(parameters, ensure_ascii=False)}")
    return lines, first


_CALL_FORM = (
    f'{REQUEST_OPEN}{{"name": "<tool name>", "arguments": {{<arguments as JSON>}}}}{REQUEST_CLOSE}'
)
_RESULTS = "Tool results come back in a user message starting with 'Tool result'."


def generic_tool_system_prompt(tools: list[dict]) -> str:
    """The instruction that teaches a template-less model to call the given tools when it
    chooses to (``tool_choice`` "auto")."""
    tool_lines, example_name = _tool_lines(tools)
    lines = [
        "You can call tools. To call one, reply with exactly this and nothing else:",
        _CALL_FORM,
        "",
        "Available tools:",
        *tool_lines,
        "",
        "Rules:",
        "- Only call tools from the list, with every required argument.",
        f"- Use one {REQUEST_OPEN}...{REQUEST_CLOSE} block per call; "
        "several blocks call several tools.",
        f"- {_RESULTS}",
        "- If no tool is needed, answer normally without any tool block.",
    ]
    if example_name:
        lines += ["", "Example:", format_tool_request(example_name, {})]
    return "\n".join(lines)


def forced_tool_system_prompt(tools: list[dict], name: str | None, parallel: bool) -> str:
    """The instruction for a call the sampler's grammar enforces (``tool_choice``
    "required", or the function ``name``): the grammar already guarantees the form, an
    existing tool and its arguments' schema, so this says only what the model must
    choose. It drops the "auto" prompt's rules and example: "answer normally if no tool is
    needed" would contradict the grammar, and every token of this prompt is attended to at
    each generated token (bench_perf.py's one small tool: 122 tokens against the "auto"
    prompt's 218, and the forced call's decode rate 0.88x -> 0.94x a short prompt's)."""
    shown = [t for t in tools if _function(t).get("name") == name] if name else tools
    tool_lines, _ = _tool_lines(shown or tools)
    if name:
        what, form = f"a call of {name}", _CALL_FORM.replace("<tool name>", name)
    else:
        what = "one or more tool calls, one block each," if parallel else "a tool call"
        form = _CALL_FORM
    return "\n".join(
        [
            f"Reply with {what} and nothing else, in exactly this form:",
            form,
            "",
            "The tool:" if name else "Available tools:",
            *tool_lines,
            "",
            _RESULTS,
        ]
    )


def _text_of(content: object) -> str:
    """Flattens OpenAI content (string or list of parts) to text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def _call_arguments(function: dict):
    """A tool call's arguments as a value (they travel as a JSON string; a string that
    is not JSON stays as it was sent)."""
    raw = function.get("arguments")
    try:
        return json.loads(raw) if isinstance(raw, str) else (raw or {})
    except ValueError:
        return raw


def _assistant_text(message: dict) -> str:
    parts = [_text_of(message.get("content")).strip()]
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        parts.append(format_tool_request(function.get("name", ""), _call_arguments(function)))
    return "\n".join(part for part in parts if part)


def _merge_user(previous: dict, text: str) -> None:
    content = previous.get("content")
    if isinstance(content, list):
        previous["content"] = content + [{"type": "text", "text": "\n\n" + text}]
    else:
        previous["content"] = f"{_text_of(content)}\n\n{text}"


def convert_messages_for_generic(
    messages: list[dict], tools: list[dict], instruction: str | None = None
) -> list[dict]:
    """Rewrites a tool conversation for a template without tool support.

    The tool instruction (``instruction``, or the "auto" one of
    :func:`generic_tool_system_prompt`) is appended to the first system message (or becomes one);
    assistant tool calls become [TOOL_REQUEST] text; tool results become user messages
    "Tool result for NAME(ARGUMENTS): ...", merged with neighbouring user turns so
    templates that insist on alternating roles still render. Input is not modified.

    A result names its call by what was called, not by the call's id: ids are random
    strings, and a small model asked to use a result copies the number next to it.
    """
    calls: dict[str, str] = {}  # call id -> "name(arguments)"
    for message in messages:
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            arguments = _call_arguments(function)
            shown = json.dumps(arguments, ensure_ascii=False) if arguments != {} else ""
            calls[str(call.get("id"))] = f"{function.get('name', '')}({shown})"

    converted: list[dict] = []
    merge_next_user = False  # the last message is a user turn we created or may extend
    for message in messages:
        role = message.get("role")
        if role == "tool":
            call_id = str(message.get("tool_call_id", ""))
            called = calls.get(call_id) or message.get("name") or "a tool"
            text = f"Tool result for {called}:\n{_text_of(message.get('content'))}"
            if converted and converted[-1]["role"] == "user":
                _merge_user(converted[-1], text)
            else:
                converted.append({"role": "user", "content": text})
            merge_next_user = True
            continue
        if role == "user" and merge_next_user and converted and converted[-1]["role"] == "user":
            content = message.get("content")
            if isinstance(content, list):
                previous = converted[-1]
                previous["content"] = (
                    [{"type": "text", "text": _text_of(previous.get("content"))}]
                    + [{"type": "text", "text": "\n\n"}]
                    + content
                )
            else:
                _merge_user(converted[-1], _text_of(content))
            merge_next_user = False
            continue
        merge_next_user = False
        plain = {k: v for k, v in message.items() if k not in ("tool_calls", "tool_call_id")}
        if role == "assistant" and message.get("tool_calls"):
            plain["content"] = _assistant_text(message)
        converted.append(plain)

    if instruction is None:
        instruction = generic_tool_system_prompt(tools)
    if converted and converted[0].get("role") in ("system", "developer"):
        first = dict(converted[0])
        existing = _text_of(first.get("content")).rstrip()
        first["content"] = f"{existing}\n\n{instruction}" if existing else instruction
        converted[0] = first
    else:
        converted.insert(0, {"role": "system", "content": instruction})
    return converted
