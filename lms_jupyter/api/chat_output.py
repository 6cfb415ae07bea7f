"""Turn the model's raw text into an assistant message: content, reasoning, tool calls.

Streaming and non-streaming share this one path, so the deltas a client assembles are
the same message the non-streamed response carries.
"""
from __future__ import annotations


class ChatOutput:
    """Plain content output; subclasses split reasoning and parse tool calls."""

    def __init__(self):
        self.content_parts: list[str] = []

    def feed(self, text: str) -> list[dict]:
        """Deltas (OpenAI ``choices[].delta`` objects) for newly generated text."""
        if not text:
            return []
        self.content_parts.append(text)
        return [{"content": text}]

    def finish(self) -> list[dict]:
        return []

    @property
    def finish_reason_override(self) -> str | None:
        return None

    def message(self) -> dict:
        return {"role": "assistant", "content": "".join(self.content_parts)}
