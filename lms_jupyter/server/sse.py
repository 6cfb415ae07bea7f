"""Server-sent events on a Tornado handler: the one place that sets the stream's headers and
frames its events, for every streaming route (answers, the log stream, model events).

Frames follow the SSE spec (``event:`` line, one ``data:`` line of JSON, a blank line);
comments (``: keep-alive``) keep proxies from closing an idle stream. ``X-Accel-Buffering:
no`` stops nginx-style proxies from holding tokens back.
"""

from __future__ import annotations

import json

CONTENT_TYPE = "text/event-stream; charset=utf-8"


def open_stream(handler) -> None:
    """Set the headers of an event stream on ``handler`` (before its first write)."""
    handler.set_header("Content-Type", CONTENT_TYPE)
    handler.set_header("Cache-Control", "no-cache")
    handler.set_header("X-Accel-Buffering", "no")


def frame(data, event: str | None = None, *, ascii_only: bool = True) -> str:
    """One event: ``data`` as JSON (or a plain string such as ``[DONE]``), named by ``event``."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=ascii_only)
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {text}\n\n"


def comment(text: str) -> str:
    """A comment line: ignored by readers, but it tells us whether the client is still there."""
    return f": {text}\n\n"
