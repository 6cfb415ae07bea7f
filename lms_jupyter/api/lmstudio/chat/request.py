"""LM Studio 0.4's ``POST /api/v1/chat`` body as a Responses request.

LM Studio's native chat is a stateful chat with MCP, which is what ``/v1/responses``
already is here, so its body is translated once into the Responses body that
:func:`..responses_request.parse` checks and types: ``system_prompt`` is
``instructions``, ``integrations`` of ``type: "ephemeral_mcp"`` are ``mcp`` tools that
never wait for approval (LM Studio runs them at once), ``reasoning: "off"`` is effort
``none``. The preview spellings LM Studio documented first are accepted as aliases:
``thread_id`` for ``previous_response_id`` and ``mcp_servers`` for ``integrations``.
Errors name the native fields (``integrations[0].server_url``, ``system_prompt``).
"""

from __future__ import annotations

from lms_jupyter.api import fields as api_fields
from lms_jupyter.api.spec.lmstudio import NATIVE_REASONING, NATIVE_TOOL_CHOICES
from lms_jupyter.errors import APIError, bad_request

# LM Studio's reasoning settings (declared in api/spec/lmstudio.py) as Responses efforts
REASONING = dict(zip(NATIVE_REASONING, ("none", "low", "medium", "high", "medium"), strict=False))
# native fields with the same name and meaning in a Responses body
SAME_FIELDS = (
    "model",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "max_output_tokens",
    "context_length",
    "ttl",
    "store",
    "seed",
    "preset",
)
ALIASES = {"previous_response_id": "thread_id", "integrations": "mcp_servers"}
INPUT_TYPES = ("message", "text")
# an lms-jupyter addition (LM Studio's native chat has none): "required" makes the first
# model step call one of the integrations' tools, as /v1/responses' tool_choice does
TOOL_CHOICES = NATIVE_TOOL_CHOICES


def _aliased(body: dict, name: str):
    """The field or its preview alias (both sent: they must agree)."""
    alias = ALIASES[name]
    value, old = body.get(name), body.get(alias)
    if value is not None and old is not None and value != old:
        raise bad_request(f"'{name}' and its older name '{alias}' disagree; send one.", name)
    return (value, name) if value is not None else (old, alias)


def _input(value) -> str | list[dict]:
    """``input``: a string, or a list of text items (the user's turn)."""
    if isinstance(value, str):
        if not value.strip():
            raise bad_request("'input' must not be empty.", "input")
        return value
    if not isinstance(value, list) or not value:
        raise bad_request("'input' is required: a string or a non-empty array of items.", "input")
    texts = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if isinstance(item, str):
            texts.append(item)
            continue
        if not isinstance(item, dict):
            raise bad_request(f"{where} must be a string or an object.", where)
        kind = item.get("type")
        if kind in ("image", "file"):
            raise bad_request(
                f"{where}: {kind} input is not supported by the local models (text only).",
                f"{where}.type",
            )
        if kind not in INPUT_TYPES:
            raise bad_request(
                f"{where}.type must be 'message' or 'text' (got {str(kind)[:40]!r}).",
                f"{where}.type",
            )
        content = item.get("content", item.get("text"))
        if not isinstance(content, str):
            raise bad_request(f"{where}.content must be a string.", f"{where}.content")
        texts.append(content)
    text = "\n\n".join(texts)
    if not text.strip():
        raise bad_request("'input' has no text.", "input")
    return [{"type": "message", "role": "user", "content": text}]


def _integration(entry, i: int, param: str) -> dict:
    where = f"{param}[{i}]"
    if isinstance(entry, str):
        raise bad_request(
            f"{where}: LM Studio plugins ({entry[:60]!r}) are not available "
            'here; use {"type": "ephemeral_mcp", "server_label", '
            '"server_url"}.',
            where,
        )
    if not isinstance(entry, dict):
        raise bad_request(f"{where} must be an object.", where)
    kind = entry.get("type", "ephemeral_mcp")
    if kind == "plugin":
        raise bad_request(f"{where}: LM Studio plugins are not available here.", f"{where}.type")
    if kind not in ("ephemeral_mcp", "mcp"):
        raise bad_request(
            f"{where}.type must be 'ephemeral_mcp' (got {str(kind)[:40]!r}).", f"{where}.type"
        )
    tool = {"type": "mcp", "require_approval": "never"}
    for key in ("server_label", "server_url", "allowed_tools", "headers"):
        if entry.get(key) is not None:
            tool[key] = entry[key]
    return tool


def responses_body(body) -> dict:
    """The Responses body of a native chat body."""
    body = api_fields.require_object(body)
    out = {name: body[name] for name in SAME_FIELDS if name in body}
    if "model" not in out:
        raise bad_request("'model' is required and must be a non-empty string.", "model")
    out["input"] = _input(body.get("input"))
    system = body.get("system_prompt")
    if system is not None:
        if not isinstance(system, str):
            raise bad_request("'system_prompt' must be a string.", "system_prompt")
        out["instructions"] = system
    reasoning = body.get("reasoning")
    if reasoning is not None:
        if not isinstance(reasoning, str) or reasoning not in REASONING:  # [] is no key
            raise bad_request(
                f"'reasoning' must be one of {', '.join(REASONING)} (got {str(reasoning)[:40]!r}).",
                "reasoning",
            )
        out["reasoning"] = {"effort": REASONING[reasoning]}
    previous, _name = _aliased(body, "previous_response_id")
    if previous is not None:
        out["previous_response_id"] = previous
    integrations, param = _aliased(body, "integrations")
    if integrations is not None:
        if not isinstance(integrations, list):
            raise bad_request(f"'{param}' must be an array.", param)
        out["tools"] = [_integration(e, i, param) for i, e in enumerate(integrations)]
        out["_integrations_param"] = param
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, str) or choice not in TOOL_CHOICES:
            raise bad_request(
                f"'tool_choice' must be one of {', '.join(TOOL_CHOICES)}.", "tool_choice"
            )
        if choice == "required" and not integrations:
            raise bad_request("tool_choice 'required' needs MCP 'integrations'.", "tool_choice")
        out["tool_choice"] = choice
    return out


def native_error(error: APIError, integrations: str = "integrations") -> APIError:
    """A Responses error in the native fields' words (``tools[0]`` -> ``integrations[0]``,
    ``instructions`` -> ``system_prompt``)."""
    renames = (("tools", integrations), ("instructions", "system_prompt"))
    param, message = error.param, error.message
    for old, new in renames:
        if param and (param == old or param.startswith(old + "[") or param.startswith(old + ".")):
            param = new + param[len(old) :]
        message = message.replace(f"{old}[", f"{new}[").replace(f"'{old}'", f"'{new}'")
    if param == error.param and message == error.message:
        return error
    renamed = APIError(message, error.status, error.type, param, error.code)
    renamed.headers = error.headers
    return renamed
