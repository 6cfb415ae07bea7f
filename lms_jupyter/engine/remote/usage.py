"""Token counts for remote engines that report none (issue 26, point 5).

``llama_cpp.server`` (and some others) send no ``usage`` in streams, so every turn would
look free: ``input_tokens: 0`` on /v1/responses, ``previous_response_id`` conversations
without cost. When an answer ends without usage, the relay asks the engine to count:
llama-server's ``POST /tokenize`` ({"content"}) or llama-cpp-python's
``POST /extras/tokenize`` ({"input"}), whichever answers. The prompt is counted from the
request's messages (or prompt) as plain text, without the chat template's extra tokens,
so such a count is an estimate and the usage says so (``"estimated": true``). Without a
tokenize endpoint, generated pieces stand in for completion tokens and the prompt stays 0.
"""

from __future__ import annotations

import logging

log = logging.getLogger("lms_jupyter.remote_usage")

# (path, body for a text) per engine flavour, tried in order
_TOKENIZERS = (
    ("/extras/tokenize", lambda model, text: {"input": text, "model": model}),
    ("/tokenize", lambda model, text: {"content": text}),
)


def prompt_text(body: dict) -> str:
    """The request's text as the model reads it, roughly: message contents in order."""
    if isinstance(body.get("prompt"), str):
        return body["prompt"]
    parts = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [p.get("text", "") for p in content if isinstance(p, dict)]
        for call in (message.get("tool_calls") or []) if isinstance(message, dict) else []:
            function = call.get("function") or {}
            parts.append(f"{function.get('name', '')}{function.get('arguments', '')}")
    return "\n".join(p for p in parts if p)


def _count(answer) -> int | None:
    tokens = answer.get("tokens") if isinstance(answer, dict) else None
    return len(tokens) if isinstance(tokens, list) else None


async def aestimate(client, body: dict, generated: str) -> dict | None:
    """``{"prompt_tokens", "completion_tokens", "estimated": True}`` counted by the
    engine's tokenize endpoint; None when it has none."""
    model = body.get("model")
    for path, make in _TOKENIZERS:
        try:
            prompt = _count(
                await client.acall("POST", path, make(model, prompt_text(body)), timeout=10)
            )
            completion = (
                _count(await client.acall("POST", path, make(model, generated), timeout=10))
                if generated
                else 0
            )
        except Exception as exc:  # noqa: BLE001 - this engine has no such endpoint
            log.debug("lms_jupyter: %s %s: %s", client.name, path, exc)
            continue
        if prompt is not None and completion is not None:
            log.info(
                "lms_jupyter: %s sent no usage; counted %d prompt and %d completion "
                "tokens with %s (an estimate)",
                client.name,
                prompt,
                completion,
                path,
            )
            return {"prompt_tokens": prompt, "completion_tokens": completion, "estimated": True}
    return None


def estimate(client, body: dict, generated: str) -> dict | None:
    """:func:`aestimate`, blocking (the kernel's relay thread)."""
    model = body.get("model")
    for path, make in _TOKENIZERS:
        try:
            prompt = _count(client.call("POST", path, make(model, prompt_text(body)), timeout=10))
            completion = (
                _count(client.call("POST", path, make(model, generated), timeout=10))
                if generated
                else 0
            )
        except Exception as exc:  # noqa: BLE001
            log.debug("lms_jupyter: %s %s: %s", client.name, path, exc)
            continue
        if prompt is not None and completion is not None:
            return {"prompt_tokens": prompt, "completion_tokens": completion, "estimated": True}
    return None
