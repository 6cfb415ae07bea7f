"""Turn the model's raw text into an assistant message: content, reasoning, tool calls.

Streaming and non-streaming share this one path, so the deltas a client assembles are
the same message the non-streamed response carries. Text first goes through the
reasoning splitter; only the answer part reaches the tool-call parser, so a call
"thought about" inside <think> is never executed.
"""
from __future__ import annotations

from .reasoning import REASONING
from .toolcalls import (
    ContentDelta,
    ToolCallArgsDelta,
    ToolCallEnd,
    ToolCallStart,
    original_tool_name,
)

# Where reasoning goes, as LM Studio's developer setting: "both" sends it as
# ``reasoning`` (gpt-oss / o3-mini style) and ``reasoning_content`` (DeepSeek style);
# "inline" leaves it in ``content`` between think tags.
REASONING_FIELDS = ("both", "reasoning", "reasoning_content", "inline")


class ChatOutput:
    """Builds OpenAI deltas and the final message from generated text.

    Without a splitter or parser (the default) the text is plain content.
    """

    def __init__(self, splitter=None, parser=None, *, name_map: dict | None = None,
                 reasoning_field: str = "both",
                 inline_tags: tuple[str, str] = ("<think>", "</think>")):
        self.splitter = splitter
        self.parser = parser
        self.name_map = name_map or {}
        self.reasoning_field = reasoning_field
        self.inline_tags = inline_tags
        self.content_parts: list[str] = []
        self.reasoning_parts: list[str] = []
        self.calls: dict[int, dict] = {}
        self.incomplete: set[int] = set()
        self._held_space = ""  # trailing whitespace that is dropped if a call follows
        self._inline_open = False

    # -- feeding -------------------------------------------------------------------------
    def feed(self, text: str) -> list[dict]:
        """Deltas (OpenAI ``choices[].delta`` objects) for newly generated text."""
        if not text:
            return []
        if self.splitter is None and self.parser is None:
            self.content_parts.append(text)
            return [{"content": text}]
        pieces = self.splitter.feed(text) if self.splitter else [("content", text)]
        return self._pieces(pieces)

    def finish(self) -> list[dict]:
        deltas = self._pieces(self.splitter.finish()) if self.splitter else []
        deltas += self._close_inline()
        if self.parser is not None:
            deltas += self._events(self.parser.finish())
        held, self._held_space = self._held_space, ""
        if held and not self.calls:
            deltas += self._content(held, hold=False)
        return deltas

    def _pieces(self, pieces) -> list[dict]:
        deltas: list[dict] = []
        for kind, text in pieces:
            if kind == REASONING:
                deltas += self._reasoning(text)
            else:
                deltas += self._close_inline()
                if self.parser is not None:
                    deltas += self._events(self.parser.feed(text))
                else:
                    deltas += self._content(text)
        return deltas

    def _reasoning(self, text: str) -> list[dict]:
        if not text:
            return []
        self.reasoning_parts.append(text)
        field = self.reasoning_field
        if field == "inline":
            if not self._inline_open:
                self._inline_open = True
                text = self.inline_tags[0] + text
            self.content_parts.append(text)
            return [{"content": text}]
        if field == "both":
            return [{"reasoning": text, "reasoning_content": text}]
        return [{field: text}]

    def _close_inline(self) -> list[dict]:
        if not self._inline_open:
            return []
        self._inline_open = False
        self.content_parts.append(self.inline_tags[1])
        return [{"content": self.inline_tags[1]}]

    def _content(self, text: str, hold: bool = True) -> list[dict]:
        """Content, holding back trailing whitespace until more text shows it is not
        just the gap before a tool call."""
        text = self._held_space + text
        self._held_space = ""
        if hold and self.parser is not None:
            body = text.rstrip(" \t\r\n")
            self._held_space = text[len(body):]
            text = body
        if not text:
            return []
        self.content_parts.append(text)
        return [{"content": text}]

    def _events(self, events) -> list[dict]:
        deltas: list[dict] = []
        for event in events:
            if isinstance(event, ContentDelta):
                deltas += self._content(event.text)
            elif isinstance(event, ToolCallStart):
                self._held_space = ""
                name = original_tool_name(event.name, self.name_map)
                self.calls[event.index] = {"id": event.id, "type": "function",
                                           "function": {"name": name, "arguments": ""}}
                deltas.append({"tool_calls": [{
                    "index": event.index, "id": event.id, "type": "function",
                    "function": {"name": name, "arguments": ""}}]})
            elif isinstance(event, ToolCallArgsDelta):
                if not event.text:
                    continue
                self.calls[event.index]["function"]["arguments"] += event.text
                deltas.append({"tool_calls": [{
                    "index": event.index, "function": {"arguments": event.text}}]})
            elif isinstance(event, ToolCallEnd) and not event.complete:
                self.incomplete.add(event.index)
        return deltas

    # -- results ----------------------------------------------------------------------------
    @property
    def tool_calls(self) -> list[dict]:
        """Complete calls, in order."""
        return [self.calls[i] for i in sorted(self.calls) if i not in self.incomplete]

    @property
    def finish_reason_override(self) -> str | None:
        """"tool_calls" when the model called a tool (LM Studio's stop reason toolCalls)."""
        return "tool_calls" if self.tool_calls else None

    def message(self) -> dict:
        content: str | None = "".join(self.content_parts)
        message: dict = {"role": "assistant", "content": content}
        calls = self.tool_calls
        if calls:
            message["content"] = content.strip() or None
            message["tool_calls"] = calls
        reasoning = "".join(self.reasoning_parts)
        if reasoning and self.reasoning_field in ("both", "reasoning"):
            message["reasoning"] = reasoning
        if reasoning and self.reasoning_field in ("both", "reasoning_content"):
            message["reasoning_content"] = reasoning
        return message
