"""Anthropic's wire format: the ``message`` object and its stream events.

:class:`MessageEncoder` turns the typed answer events of one generation (:mod:`..events`:
content, reasoning, tool calls, then ``Done``) into Anthropic's content blocks. The
stream events and the final message are built by the same code, so what the SDK's
``messages.stream()`` helper accumulates equals what a plain request returns: ``text``
blocks from content, ``thinking`` blocks from reasoning, ``tool_use`` blocks (input
streamed as ``input_json_delta``) from tool calls, and ``stop_reason`` from how the
generation ended.
"""

from __future__ import annotations

import json
import secrets

from lms_jupyter.api.events import Done
from lms_jupyter.chat.events import (
    ContentDelta,
    ReasoningDelta,
    ToolCall,
    ToolCallArgsDelta,
    ToolCallEnd,
    ToolCallStart,
)
from lms_jupyter.engine.events import STOP_STRING


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def tool_use_id(call_id: str) -> str:
    """Tool-call ids in Anthropic's ``toolu_`` form (kept as they are once they are)."""
    return call_id if call_id.startswith("toolu_") else f"toolu_{call_id.removeprefix('call_')}"


def stop_reason(done: Done, stop_sequences: list[str]) -> tuple[str, str | None]:
    """(``stop_reason``, ``stop_sequence``) of a finished generation."""
    if done.answer.tool_calls:
        return "tool_use", None
    if done.finish_reason == "length":
        return "max_tokens", None
    if done.stats.stop_reason == STOP_STRING and stop_sequences:
        # the engine stops at the first stop string in the text; which one it was is
        # not reported, so: the one the text would end with, else the first that can
        return "stop_sequence", stop_sequences[0] if len(stop_sequences) == 1 else next(
            (s for s in stop_sequences if s not in done.answer.content), stop_sequences[0]
        )
    return "end_turn", None


def usage(done: Done | None, input_tokens: int = 0) -> dict:
    if done is None:
        return {
            "input_tokens": input_tokens,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
    stats = done.stats
    cached = stats.cached_tokens or 0
    return {
        "input_tokens": stats.prompt_tokens - cached,
        "output_tokens": stats.completion_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


class MessageEncoder:
    """One assistant message, as blocks and as stream events."""

    def __init__(self, model: str, stop_sequences: list[str] | None = None):
        self.model = model
        self.stop_sequences = stop_sequences or []
        self.id = new_id("msg")
        self.content: list[dict] = []
        self._open: int | None = None  # index of the text/thinking block being written
        self._calls: dict[int, int] = {}  # tool-call index -> block index
        self._json: dict[int, list[str]] = {}  # block index -> argument pieces

    def message(self, done: Done | None = None, input_tokens: int = 0) -> dict:
        reason, sequence = stop_reason(done, self.stop_sequences) if done else (None, None)
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": self.content,
            "stop_reason": reason,
            "stop_sequence": sequence,
            "usage": usage(done, input_tokens),
        }

    # -- stream ------------------------------------------------------------------------------
    @staticmethod
    def _event(kind: str, **fields) -> dict:
        return {"__event__": kind, "type": kind, **fields}

    def start(self, input_tokens: int = 0) -> list[dict]:
        message = self.message(None, input_tokens)
        message["content"] = []
        return [self._event("message_start", message=message), self._event("ping")]

    def _open_block(self, block: dict) -> tuple[int, dict]:
        self.content.append(block)
        index = len(self.content) - 1
        empty = dict(block, input={}) if block["type"] == "tool_use" else dict(block)
        return index, self._event("content_block_start", index=index, content_block=empty)

    def _close(self, index: int) -> dict:
        block = self.content[index]
        if block["type"] == "tool_use":
            raw = "".join(self._json.pop(index, []))
            try:
                block["input"] = json.loads(raw) if raw.strip() else {}
            except ValueError:
                block["input"] = {"_raw": raw}  # a broken call: keep what the model said
        return self._event("content_block_stop", index=index)

    def _close_open(self) -> list[dict]:
        if self._open is None:
            return []
        index, self._open = self._open, None
        events = []
        if self.content[index]["type"] == "thinking":
            events.append(
                self._event(
                    "content_block_delta",
                    index=index,
                    delta={
                        "type": "signature_delta",
                        "signature": self.content[index]["signature"],
                    },
                )
            )
        return events + [self._close(index)]

    def _piece(self, kind: str, text: str) -> list[dict]:
        key, delta = ("text", "text_delta") if kind == "text" else ("thinking", "thinking_delta")
        events = []
        if self._open is None or self.content[self._open]["type"] != kind:
            events += self._close_open()
            block = (
                {"type": "text", "text": ""}
                if kind == "text"
                else {"type": "thinking", "thinking": "", "signature": new_id("sig")}
            )
            self._open, start = self._open_block(block)
            events.append(start)
        self.content[self._open][key] += text
        events.append(
            self._event("content_block_delta", index=self._open, delta={"type": delta, key: text})
        )
        return events

    def feed(self, event) -> list[dict]:
        """The stream events for one typed answer event."""
        index: int | None
        if isinstance(event, ContentDelta):
            return self._piece("text", event.text) if event.text else []
        if isinstance(event, ReasoningDelta):
            return self._piece("thinking", event.text) if event.text else []
        if isinstance(event, ToolCallStart):
            events = self._close_open()
            index, start = self._open_block(
                {"type": "tool_use", "id": tool_use_id(event.id), "name": event.name, "input": {}}
            )
            self._calls[event.index] = index
            self._json[index] = []
            return events + [start]
        if isinstance(event, ToolCallArgsDelta):
            index = self._calls.get(event.index)
            if index is None or not event.text:
                return []
            self._json[index].append(event.text)
            return [
                self._event(
                    "content_block_delta",
                    index=index,
                    delta={"type": "input_json_delta", "partial_json": event.text},
                )
            ]
        if isinstance(event, ToolCallEnd):
            index = self._calls.pop(event.index, None)
            return [] if index is None else [self._close(index)]
        return []

    def finish(self, done: Done) -> list[dict]:
        """The closing events: open blocks stopped, ``message_delta``, ``message_stop``."""
        events = self._close_open()
        for index in list(self._calls.values()):
            events.append(self._close(index))
        self._calls.clear()
        self._settle(done)
        reason, sequence = stop_reason(done, self.stop_sequences)
        return events + [
            self._event(
                "message_delta",
                delta={"stop_reason": reason, "stop_sequence": sequence},
                usage=usage(done),
            ),
            self._event("message_stop"),
        ]

    def _settle(self, done: Done) -> None:
        """Blocks as the assembled answer has them: the parsers' final word on calls."""
        calls: dict[str | None, ToolCall] = {tool_use_id(c.id): c for c in done.answer.tool_calls}
        for block in self.content:
            call = calls.get(block.get("id")) if block["type"] == "tool_use" else None
            if call is not None and call.arguments:
                try:
                    block["input"] = json.loads(call.arguments)
                except ValueError:
                    pass

    def whole(self, events: list, done: Done) -> dict:
        """A plain request: every answer event fed, then the finished message."""
        for event in events:
            self.feed(event)
        self.finish(done)
        return self.message(done)
