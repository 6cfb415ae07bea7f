"""Render chat messages into a prompt with the model's own Jinja chat template.

We render ourselves (rather than through llama-cpp-python's chat handlers) so that the
exact prompt is known: its token count is the usage we report, tools and template
variables (reasoning effort) reach the template, and a model without a template gets a
plain transcript instead of llama-cpp-python's silent Llama-2 fallback.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache

from jinja2 import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from lms_jupyter.errors import bad_request

# Base models (no template) get this transcript; "\nUser:" ends the assistant turn.
PLAIN_TRANSCRIPT_STOP = ["\nUser:", "\nSystem:"]


class TemplateRenderError(ValueError):
    pass


def _raise(message):
    raise TemplateRenderError(message)


def _tojson(value, indent=None, ensure_ascii=False, sort_keys=False, separators=None):
    return json.dumps(
        value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys, separators=separators
    )


@lru_cache(maxsize=32)
def _compile(template: str):
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def render_template(template: str, **context) -> str:
    """Render a chat template (compiled once, cached) with ``context`` as its variables;
    template errors propagate."""
    return _compile(template).render(**context)


def message_text(content) -> str:
    """Flatten OpenAI content (a string or a list of parts) into text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict):
                raise bad_request("Each content part must be an object.", "messages")
            kind = part.get("type")
            if kind in ("text", "input_text", "output_text"):
                texts.append(str(part.get("text", "")))
            elif kind in ("image_url", "input_image", "image"):
                raise bad_request("This model does not support images.", "messages")
            else:
                raise bad_request(f"Unsupported content part type {kind!r}.", "messages")
        return "".join(texts)
    raise bad_request("Message content must be a string or a list of content parts.", "messages")


def normalise_messages(messages) -> list[dict]:
    """Validate OpenAI messages and flatten their content for templates."""
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array.", "messages")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise bad_request(f"messages[{i}] must be an object.", f"messages[{i}]")
        role = message.get("role")
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant", "tool"):
            raise bad_request(
                f"messages[{i}].role must be one of system, user, assistant, tool (got {role!r}).",
                f"messages[{i}].role",
            )
        item = dict(message)
        item["role"] = role
        item["content"] = message_text(message.get("content"))
        out.append(item)
    return out


def render_chat(
    template: str | None,
    messages: list[dict],
    *,
    bos_token: str = "",
    eos_token: str = "",
    tools: list | None = None,
    add_generation_prompt: bool = True,
    **variables,
) -> str:
    """The prompt text for ``messages``; ``template=None`` means a plain transcript."""
    if not template:
        return _plain_transcript(messages)
    try:
        return _compile(template).render(
            messages=messages,
            bos_token=bos_token,
            eos_token=eos_token,
            tools=tools or None,
            add_generation_prompt=add_generation_prompt,
            **variables,
        )
    except TemplateRenderError as exc:
        raise bad_request(
            f"The model's chat template rejected the messages: {exc}", "messages"
        ) from exc
    except TemplateError as exc:
        raise bad_request(f"The model's chat template failed to render: {exc}", "messages") from exc


def _plain_transcript(messages: list[dict]) -> str:
    names = {"system": "System", "user": "User", "assistant": "Assistant", "tool": "Tool"}
    lines = [f"{names[m['role']]}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nAssistant:"
