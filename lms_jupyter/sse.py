"""Server-sent events, parsed one line at a time.

One parser for every reader of an OpenAI-style stream: the server relaying a remote
engine (httpx ``aiter_lines``) and a kernel reading a server (``iter_lines``) feed it
the same lines, so both understand the same events, comments and ``[DONE]`` marker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

DONE = "[DONE]"


@dataclass
class SSEEvent:
    """One event: its ``event:`` name (None for plain data) and its ``data`` text."""

    name: str | None
    data: str

    @property
    def done(self) -> bool:
        return self.data.strip() == DONE

    def json(self):
        """The data as JSON; a ValueError names the text that is not JSON."""
        try:
            return json.loads(self.data)
        except ValueError:
            raise ValueError(f"not JSON: {self.data[:200]!r}") from None


class SSEParser:
    """Feed lines (without their line ending); get an :class:`SSEEvent` at each blank
    line that ends one. Comments (``: keep-alive``) and ``id:``/``retry:`` are dropped."""

    def __init__(self):
        self._name: str | None = None
        self._data: list[str] = []

    def line(self, line: str) -> SSEEvent | None:
        line = line.rstrip("\r\n")
        if not line:
            return self._flush()
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._name = value or None
        return None

    def end(self) -> SSEEvent | None:
        """The stream ended: an event still being built (no final blank line)."""
        return self._flush()

    def _flush(self) -> SSEEvent | None:
        if not self._data:
            self._name = None
            return None
        event = SSEEvent(self._name, "\n".join(self._data))
        self._name, self._data = None, []
        return event
