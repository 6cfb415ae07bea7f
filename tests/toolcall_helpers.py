"""Test helpers: assemble a tool-call parser's events into content and OpenAI-shaped calls,
to check that what a parser streams adds up (the product assembles them in ChatOutput)."""

from __future__ import annotations

from collections.abc import Iterable

from lms_jupyter.chat.toolcalls import (
    ContentDelta,
    ToolCallArgsDelta,
    ToolCallEnd,
    ToolCallStart,
    make_parser,
)


class ToolCallAccumulator:
    """Collects events into the final message: content text and OpenAI-shaped tool_calls.

    Useful both for non-streamed responses and for checking that a stream adds up.
    """

    def __init__(self) -> None:
        self._content: list[str] = []
        self._calls: dict[int, dict] = {}
        self._incomplete: set[int] = set()
        self._cut_off: set[int] = set()

    def add(self, events: Iterable[object]) -> None:
        for event in events:
            if isinstance(event, ContentDelta):
                self._content.append(event.text)
            elif isinstance(event, ToolCallStart):
                self._calls[event.index] = {
                    "id": event.id,
                    "type": "function",
                    "function": {"name": event.name, "arguments": ""},
                }
            elif isinstance(event, ToolCallArgsDelta):
                self._calls[event.index]["function"]["arguments"] += event.text
            elif isinstance(event, ToolCallEnd) and not event.complete:
                self._incomplete.add(event.index)
                if event.cut_off:
                    self._cut_off.add(event.index)

    @property
    def content(self) -> str:
        return "".join(self._content)

    @property
    def tool_calls(self) -> list[dict]:
        return [self._calls[index] for index in sorted(self._calls)]

    @property
    def incomplete_indexes(self) -> set[int]:
        """Indexes of calls that ended with ``complete=False``."""
        return set(self._incomplete)

    @property
    def cut_off_indexes(self) -> set[int]:
        """Indexes of calls the end of the output cut off (reported as far as they got)."""
        return set(self._cut_off)


def parse_tool_calls(
    family: str,
    text: str,
    tool_names: Iterable[str] = (),
    tools: list[dict] | None = None,
) -> tuple[str | None, list[dict]]:
    """Parses a whole output: (content or None, OpenAI-shaped tool_calls).

    Content is None when empty; next to tool calls it is stripped of whitespace.
    """
    parser = make_parser(family, tool_names, tools, stream_arguments=False)
    accumulator = ToolCallAccumulator()
    accumulator.add(parser.feed(text))
    accumulator.add(parser.finish())
    content = accumulator.content
    calls = accumulator.tool_calls
    if calls:
        content = content.strip()
    return (content or None), calls
