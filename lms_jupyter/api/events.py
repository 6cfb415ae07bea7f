"""The typed event stream every front consumes for one generation.

A generation yields answer events as the model produces them (:class:`ContentDelta`,
:class:`ReasoningDelta`, :class:`ToolCallStart`, :class:`ToolCallArgsDelta`,
:class:`ToolCallEnd`), then exactly one :class:`Done` with the assembled answer and the
exact usage and timings, or a :class:`Failed` at any point. The OpenAI and Responses
encoders turn them into wire chunks; the kernel's ``%%chat`` renders them directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from lms_jupyter.chat.events import (
    Answer,
    ContentDelta,
    ReasoningDelta,
    ToolCall,
    ToolCallArgsDelta,
    ToolCallEnd,
    ToolCallStart,
)
from lms_jupyter.engine.events import Failed, Finished

STOP_TOOL_CALLS = "toolCalls"  # LM Studio's stop reason when the model called tools


@dataclass
class Done:
    """The generation ended: what was said, by which instance, and its exact figures."""

    model: str  # the instance identifier that served it
    answer: Answer
    stats: Finished
    finish_reason: str  # OpenAI's: stop | length | tool_calls

    @property
    def stop_reason(self) -> str:
        """LM Studio's stop reason (``toolCalls`` when the answer is tool calls)."""
        return STOP_TOOL_CALLS if self.finish_reason == "tool_calls" else self.stats.stop_reason

    @property
    def usage(self) -> dict:
        return self.stats.usage


__all__ = [
    "Answer",
    "ContentDelta",
    "Done",
    "Failed",
    "ReasoningDelta",
    "ToolCall",
    "ToolCallArgsDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "STOP_TOOL_CALLS",
]
