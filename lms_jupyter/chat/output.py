"""Turn the model's raw text into an answer: content, reasoning, tool calls.

Streaming and non-streaming share this one path, so the events a client assembles are
the same answer the non-streamed response carries. Text first goes through the
reasoning splitter; only the answer part reaches the tool-call parser, so a call
"thought about" inside <think> is never executed. The output is typed events
(:mod:`.events`); how they are spelled on the wire is the encoders' business.
"""

from __future__ import annotations

from lms_jupyter.chat.events import (
    Answer,
    ContentDelta,
    ReasoningDelta,
    ToolCall,
    ToolCallArgsDelta,
    ToolCallEnd,
    ToolCallStart,
)
from lms_jupyter.chat.reasoning import REASONING
from lms_jupyter.chat.toolcalls import original_tool_name

# Where reasoning goes, as LM Studio's developer setting: "both" sends it as
# ``reasoning`` (gpt-oss / o3-mini style) and ``reasoning_content`` (DeepSeek style);
# "inline" leaves it in ``content`` between think tags.
REASONING_FIELDS = ("both", "reasoning", "reasoning_content", "inline")


class ChatOutput:
    """Builds answer events and the final :class:`Answer` from generated text.

    Without a splitter or parser (the default) the text is plain content. With
    ``inline_tags`` reasoning stays in the content between those tags (LM Studio's
    "inline" setting) instead of becoming reasoning events.
    """

    def __init__(
        self,
        splitter=None,
        parser=None,
        *,
        name_map: dict | None = None,
        inline_tags: tuple[str, str] | None = None,
    ):
        self.splitter = splitter
        self.parser = parser
        self.name_map = name_map or {}
        self.inline_tags = inline_tags
        self.content_parts: list[str] = []
        self.reasoning_parts: list[str] = []
        self.calls: dict[int, ToolCall] = {}
        self.incomplete: set[int] = set()  # broken calls, left out of the answer
        self.cut_off: set[int] = set()  # calls the length limit ended: kept as they got
        self._held_space = ""  # trailing whitespace that is dropped if a call follows
        self._inline_open = False

    # -- feeding -------------------------------------------------------------------------
    def feed(self, text: str) -> list:
        """Events for newly generated text."""
        if not text:
            return []
        if self.splitter is None and self.parser is None:
            self.content_parts.append(text)
            return [ContentDelta(text)]
        pieces = self.splitter.feed(text) if self.splitter else [("content", text)]
        return self._pieces(pieces)

    def finish(self) -> list:
        events = self._pieces(self.splitter.finish()) if self.splitter else []
        events += self._close_inline()
        if self.parser is not None:
            events += self._parsed(self.parser.finish())
        held, self._held_space = self._held_space, ""
        if held and not self.calls:
            events += self._content(held, hold=False)
        return events

    def _pieces(self, pieces) -> list:
        events: list = []
        for kind, text in pieces:
            if kind == REASONING:
                events += self._reasoning(text)
            else:
                events += self._close_inline()
                if self.parser is not None:
                    events += self._parsed(self.parser.feed(text))
                else:
                    events += self._content(text)
        return events

    def _reasoning(self, text: str) -> list:
        if not text:
            return []
        self.reasoning_parts.append(text)
        if self.inline_tags is None:
            return [ReasoningDelta(text)]
        if not self._inline_open:
            self._inline_open = True
            text = self.inline_tags[0] + text
        self.content_parts.append(text)
        return [ContentDelta(text)]

    def _close_inline(self) -> list:
        if not self._inline_open:
            return []
        self._inline_open = False
        assert self.inline_tags is not None  # narrowing only: only inline mode opens
        self.content_parts.append(self.inline_tags[1])
        return [ContentDelta(self.inline_tags[1])]

    def _content(self, text: str, hold: bool = True) -> list:
        """Content, holding back trailing whitespace until more text shows it is not
        just the gap before a tool call."""
        text = self._held_space + text
        self._held_space = ""
        if hold and self.parser is not None:
            body = text.rstrip(" \t\r\n")
            self._held_space = text[len(body) :]
            text = body
        if not text:
            return []
        self.content_parts.append(text)
        return [ContentDelta(text)]

    def _parsed(self, events) -> list:
        """The parser's events with the caller's tool names, recorded for the answer."""
        out: list = []
        for event in events:
            if isinstance(event, ContentDelta):
                out += self._content(event.text)
            elif isinstance(event, ToolCallStart):
                self._held_space = ""
                name = original_tool_name(event.name, self.name_map)
                self.calls[event.index] = ToolCall(event.id, name)
                out.append(ToolCallStart(event.index, event.id, name))
            elif isinstance(event, ToolCallArgsDelta):
                if event.text:
                    self.calls[event.index].arguments += event.text
                    out.append(event)
            elif isinstance(event, ToolCallEnd):
                if event.cut_off:
                    self.cut_off.add(event.index)
                elif not event.complete:
                    self.incomplete.add(event.index)
                out.append(event)
        return out

    # -- results ----------------------------------------------------------------------------
    @property
    def tool_calls(self) -> list[ToolCall]:
        """Complete calls, in order."""
        return [
            self.calls[i]
            for i in sorted(self.calls)
            if i not in self.incomplete and i not in self.cut_off
        ]

    @property
    def finish_reason_override(self) -> str | None:
        """ "tool_calls" when the model called a tool (LM Studio's stop reason toolCalls);
        a call the length limit cut off leaves the engine's "length" standing."""
        return "tool_calls" if self.tool_calls and not self.cut_off else None

    def answer(self) -> Answer:
        content = "".join(self.content_parts)
        # OpenAI reports a call cut off by max_tokens as far as it got
        calls = [self.calls[i] for i in sorted(self.calls) if i not in self.incomplete]
        return Answer(content.strip() if calls else content, "".join(self.reasoning_parts), calls)
