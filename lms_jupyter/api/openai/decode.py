"""OpenAI chat chunks back into typed answer events: the inverse of :mod:`.encode`.

A remote engine's answer (relayed by the server) and a server's answer (read by a
connected kernel) arrive as ``chat.completion.chunk`` objects, or one ``chat.completion``
body when not streamed. :class:`ChunkOutput` turns them into the same events a local
model's :class:`~lms_jupyter.chat.output.ChatOutput` produces (content, reasoning, tool
calls) and assembles the same :class:`~lms_jupyter.chat.events.Answer`, so every encoder
and the kernel's ``%%chat`` handle remote answers exactly like local ones.
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


class ChunkOutput:
    """Feed chunks (``feed_chunk``), then ``finish()``; ``answer()`` is the whole answer.

    ``reasoning_field="inline"`` puts reasoning back into the content between think
    tags, as the local path does for that setting.
    """

    def __init__(self, reasoning_field: str = "both"):
        self.inline = reasoning_field == "inline"
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[int, ToolCall] = {}
        self.open_call: int | None = None
        self.finish_reason_override: str | None = None
        self._thinking = False  # inline mode: a <think> tag is open

    def feed(self, text: str) -> list:
        """Plain text (a text chunk): content."""
        return self._content(text) if text else []

    def feed_chunk(self, payload: dict) -> list:
        events: list = []
        for choice in payload.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                delta = choice["message"] if isinstance(choice.get("message"), dict) else {}
            reasoning = delta.get("reasoning_content")
            if not isinstance(reasoning, str) or not reasoning:
                reasoning = delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                events += self._reasoning(reasoning)
            content = delta.get("content")
            if isinstance(content, str) and content:
                events += self._content(content)
            for position, call in enumerate(delta.get("tool_calls") or []):
                if isinstance(call, dict):
                    events += self._tool_call(call, position)
            if choice.get("finish_reason"):
                self.finish_reason_override = choice["finish_reason"]
        return events

    def _reasoning(self, text: str) -> list:
        if self.inline:
            opening = "" if self._thinking else "<think>"
            self._thinking = True
            self.content.append(opening + text)
            return [ContentDelta(opening + text)]
        self.reasoning.append(text)
        return [ReasoningDelta(text)]

    def _close_think(self) -> list:
        if self._thinking:
            self._thinking = False
            self.content.append("</think>")
            return [ContentDelta("</think>")]
        return []

    def _content(self, text: str) -> list:
        events = self._close_think()
        self.content.append(text)
        return events + [ContentDelta(text)]

    def _tool_call(self, call: dict, position: int) -> list:
        index = call.get("index", position)
        function = call["function"] if isinstance(call.get("function"), dict) else {}
        events: list = self._close_think()
        if index not in self.calls:
            if self.open_call is not None:
                events.append(ToolCallEnd(self.open_call))
            new = ToolCall(call.get("id") or f"call_{index}", function.get("name") or "")
            self.calls[index] = new
            self.open_call = index
            events.append(ToolCallStart(index, new.id, new.name))
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # some engines send an object, not its JSON text
            import json

            arguments = json.dumps(arguments)
        if isinstance(arguments, str) and arguments:
            self.calls[index].arguments += arguments
            events.append(ToolCallArgsDelta(index, arguments))
        return events

    def finish(self) -> list:
        events = self._close_think()
        if self.open_call is not None:
            events.append(ToolCallEnd(self.open_call))
            self.open_call = None
        return events

    def answer(self) -> Answer:
        return Answer(
            content="".join(self.content),
            reasoning="".join(self.reasoning),
            tool_calls=[self.calls[i] for i in sorted(self.calls)],
        )
