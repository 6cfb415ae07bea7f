"""The typed pieces an answer is made of, as it streams.

The tool-call parsers emit content and tool-call events; the reasoning splitters
separate reasoning from the answer; :class:`~.output.ChatOutput` merges both into one
stream of these events and assembles the final :class:`Answer`. Every front consumes
this vocabulary (the OpenAI and Responses encoders, the kernel's ``%%chat``), so a tool
call is assembled in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lms_jupyter.chat.toolcalls.events import (
    ContentDelta,
    ToolCallArgsDelta,
    ToolCallEnd,
    ToolCallStart,
)


@dataclass(frozen=True)
class ReasoningDelta:
    """A piece of the model's reasoning (``<think>`` text, gpt-oss's analysis channel)."""

    text: str


@dataclass
class ToolCall:
    """A complete tool call: ``arguments`` is the JSON object text the model produced."""

    id: str
    name: str
    arguments: str = ""

    def as_openai(self) -> dict:
        """The call as an OpenAI ``tool_calls`` entry (also what chat history holds)."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass
class Answer:
    """Everything the model said in one generation, assembled."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    # the content's tokens with their log-probabilities, when the request asked for them
    logprobs: tuple | None = None


AnswerEvent = ContentDelta | ReasoningDelta | ToolCallStart | ToolCallArgsDelta | ToolCallEnd

__all__ = [
    "Answer",
    "AnswerEvent",
    "ContentDelta",
    "ReasoningDelta",
    "ToolCall",
    "ToolCallArgsDelta",
    "ToolCallEnd",
    "ToolCallStart",
]
