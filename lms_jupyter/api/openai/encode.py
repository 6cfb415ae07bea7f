"""OpenAI's wire format for chat and text completions: the encoding step.

An encoder turns the typed events of one generation (:mod:`.events`) into
``chat.completion.chunk`` / ``text_completion`` chunks while streaming, and ``Done`` into
the whole response body. It knows nothing of models or transports. LM Studio's /api/v0
adds its ``stats``, ``model_info`` and ``runtime`` objects through ``extras``: to the
response body, and to the stream's final chunk (which then also carries ``usage``, once).

Log-probabilities, when asked for, ride on content events (``ContentDelta.logprobs``,
``Answer.logprobs``): chat spells them ``logprobs.content`` (token, logprob, bytes,
top_logprobs), text completions in OpenAI's legacy shape (tokens, token_logprobs,
top_logprobs as {token: logprob}, text_offset). Not asked for: ``"logprobs": null``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from lms_jupyter.api.events import Done
from lms_jupyter.chat.events import (
    Answer,
    ContentDelta,
    ReasoningDelta,
    ToolCallArgsDelta,
    ToolCallStart,
)

Extras = Callable[[Done], dict]


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(10)}"


def _token(entry) -> dict:
    return {"token": entry.token, "logprob": entry.logprob, "bytes": list(entry.bytes)}


def chat_logprobs(tokens) -> dict | None:
    """OpenAI's chat ``choices[].logprobs`` for content tokens (None: not asked for)."""
    if tokens is None:
        return None
    return {
        "content": [dict(_token(t), top_logprobs=[_token(a) for a in t.top]) for t in tokens],
        "refusal": None,
    }


def completion_logprobs(tokens, offset: int = 0) -> dict | None:
    """The legacy ``text_completion`` logprobs; ``offset``: where the first token's text
    starts in the choice's text (after an echoed prompt, or earlier chunks)."""
    if tokens is None:
        return None
    offsets = []
    for t in tokens:
        offsets.append(offset)
        offset += len(t.token)
    top = []
    for t in tokens:
        alternatives: dict = {}
        for a in t.top:  # best first: a repeated spelling keeps its best figure
            alternatives.setdefault(a.token, a.logprob)
        top.append(alternatives)
    return {
        "tokens": [t.token for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": top,
        "text_offset": offsets,
    }


def reasoning_delta(text: str, field: str) -> dict:
    """Where a reasoning piece goes: ``reasoning`` and/or ``reasoning_content``."""
    if field == "both":
        return {"reasoning": text, "reasoning_content": text}
    return {field: text}


def chat_message(answer: Answer, reasoning_field: str = "both") -> dict:
    """The assistant message of a chat completion."""
    message: dict = {"role": "assistant", "content": answer.content}
    if answer.tool_calls:
        message["content"] = answer.content or None
        message["tool_calls"] = [call.as_openai() for call in answer.tool_calls]
    if answer.reasoning and reasoning_field in ("both", "reasoning", "reasoning_content"):
        message.update(reasoning_delta(answer.reasoning, reasoning_field))
    return message


def chat_delta(event, reasoning_field: str = "both") -> dict | None:
    """The ``choices[0].delta`` for one answer event (None: nothing to send)."""
    if isinstance(event, ContentDelta):
        return {"content": event.text} if event.text else None
    if isinstance(event, ReasoningDelta):
        return reasoning_delta(event.text, reasoning_field)
    if isinstance(event, ToolCallStart):
        return {
            "tool_calls": [
                {
                    "index": event.index,
                    "id": event.id,
                    "type": "function",
                    "function": {"name": event.name, "arguments": ""},
                }
            ]
        }
    if isinstance(event, ToolCallArgsDelta):
        return {"tool_calls": [{"index": event.index, "function": {"arguments": event.text}}]}
    return None


class _Encoder:
    object_name = ""
    chunk_name = ""

    def __init__(
        self,
        model: str,
        *,
        include_usage: bool = False,
        extras: Extras | None = None,
        id_prefix: str = "chatcmpl",
    ):
        self.id = new_id(id_prefix)
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self.extras = extras

    def _chunk(self, choices: list) -> dict:
        return {
            "id": self.id,
            "object": self.chunk_name,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.model,
            "choices": choices,
        }

    def _body(self, choice: dict, done: Done) -> dict:
        body = {
            "id": self.id,
            "object": self.object_name,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": done.usage,
            "system_fingerprint": self.model,
        }
        if self.extras is not None:
            body.update(self.extras(done))
        return body

    def _final_chunks(self, done: Done) -> list[dict]:
        """The usage chunk (``include_usage``), or LM Studio's extras chunk with usage."""
        if self.extras is not None:
            chunk = self._chunk([])
            chunk["usage"] = done.usage
            chunk.update(self.extras(done))
            return [chunk]
        if self.include_usage:
            chunk = self._chunk([])
            chunk["usage"] = done.usage
            return [chunk]
        return []

    def delta_choice(self, event, finish_reason=None) -> dict | None:
        raise NotImplementedError

    def chunks(self, event) -> list[dict]:
        """Chunks for one typed event while streaming."""
        if isinstance(event, Done):
            return [
                self._chunk([self.delta_choice(None, event.finish_reason)])
            ] + self._final_chunks(event)
        choice = self.delta_choice(event)
        return [self._chunk([choice])] if choice is not None else []


class ChatEncoder(_Encoder):
    """``chat.completion`` bodies and ``chat.completion.chunk`` streams."""

    object_name = "chat.completion"
    chunk_name = "chat.completion.chunk"

    def __init__(self, model: str, *, reasoning_field: str = "both", **kwargs):
        super().__init__(model, id_prefix="chatcmpl", **kwargs)
        self.reasoning_field = reasoning_field

    def start(self) -> list[dict]:
        return [
            self._chunk(
                [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ]
            )
        ]

    def delta_choice(self, event, finish_reason=None) -> dict | None:
        delta: dict | None
        if event is None:
            delta = {}
        else:
            delta = chat_delta(event, self.reasoning_field)
            if delta is None:
                return None
        logprobs = chat_logprobs(event.logprobs) if isinstance(event, ContentDelta) else None
        return {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}

    def response(self, done: Done) -> dict:
        return self._body(
            {
                "index": 0,
                "logprobs": chat_logprobs(done.answer.logprobs),
                "finish_reason": done.finish_reason,
                "message": chat_message(done.answer, self.reasoning_field),
            },
            done,
        )


class TextEncoder(_Encoder):
    """``text_completion`` bodies and streams; ``echo`` puts the prompt first.

    ``offset``: the legacy logprobs' ``text_offset`` of the first generated token, which
    OpenAI (and llama-cpp-python) count from the start of the prompt: its length."""

    object_name = chunk_name = "text_completion"

    def __init__(self, model: str, *, echo: str = "", offset: int = 0, **kwargs):
        super().__init__(model, id_prefix="cmpl", **kwargs)
        self.echo = echo
        self.offset = len(echo) or offset
        self._offset = self.offset  # text_offset of the next streamed token

    def start(self) -> list[dict]:
        if not self.echo:
            return []
        return [
            self._chunk([{"index": 0, "text": self.echo, "logprobs": None, "finish_reason": None}])
        ]

    def delta_choice(self, event, finish_reason=None) -> dict | None:
        logprobs = None
        if event is None:
            text = ""
        elif isinstance(event, ContentDelta) and (event.text or event.logprobs):
            text = event.text
            logprobs = completion_logprobs(event.logprobs, self._offset)
            if event.logprobs:
                self._offset += sum(len(t.token) for t in event.logprobs)
        else:
            return None
        return {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}

    def response(self, done: Done) -> dict:
        return self._body(
            {
                "index": 0,
                "text": self.echo + done.answer.content,
                "logprobs": completion_logprobs(done.answer.logprobs, self.offset),
                "finish_reason": done.finish_reason,
            },
            done,
        )
