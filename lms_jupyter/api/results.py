"""What an API call returns, independent of the transport that sends it."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass


@dataclass
class JSONResponse:
    body: dict
    status: int = 200


@dataclass
class StreamResponse:
    """Server-sent events: ``events`` yields ``data:`` payloads (dicts), or lists of them
    to be written and flushed together; ``done_marker`` ends the stream."""

    events: AsyncGenerator[dict | list[dict], None]
    cancel: Callable[[], None]
    done_marker: str | None = "[DONE]"


@dataclass
class BytesResponse:
    """A body sent as it is (a file's content), not JSON."""

    content: bytes
    media_type: str = "application/octet-stream"
    status: int = 200
