"""Issue 26's property, "no fragment of a tool-call format reaches a client", as a check on
every HTTP response a test module receives.

``WireInspector`` wraps ``send`` of both HTTP client libraries the tests use (``httpx``
for direct calls, ``httpx2`` under the openai SDK) and looks into each response body, and
into each server-sent event of a stream as the client reads it: every string in the JSON
(or the raw text, if it is not JSON) is searched for the markers of every tool-call
family and for the server's normalised tool names that differ from the caller's (taken
from the request's ``tools``). It records what it finds instead of raising, because an
exception inside a transport is turned into a connection error by the SDK; the
``wire_hygiene`` fixtures in conftest.py fail the test that received it.
"""

from __future__ import annotations

import codecs
import json
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import httpx
import httpx2

from lms_jupyter.chat.toolcalls import normalize_tool_names

# every marker of every family, whole or as far as a cut-off output gets
FRAGMENTS = (
    "<tool_call",
    "</tool_call",
    "tool_call>",
    "[TOOL_REQUEST",
    "[END_TOOL",
    "TOOL_REQUEST]",
    "[TOOL_CALLS",
    "[ARGS]",
    "<|python_tag",
    "<TOOLCALL",
    "</TOOLCALL",
    "<seed:tool_call",
    "<|channel|>",
    "<|call|>",
    "<|message|>",
    "<|constrain|>",
    "to=functions.",
)


def leaks(text: object, names: Iterable[str] = ()) -> list[str]:
    """The format fragments (and internal tool `names`) found in `text`."""
    if not isinstance(text, str) or not text:
        return []
    return [f for f in (*FRAGMENTS, *names) if f in text]


def _strings(value: object) -> Iterator[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


# fields that identify an event rather than carry generated text
_NOT_TEXT = {
    "id",
    "object",
    "model",
    "created",
    "system_fingerprint",
    "type",
    "role",
    "finish_reason",
    "item_id",
    "response_id",
    "call_id",
    "status",
}


def _join(joined: dict, data: str) -> None:
    try:
        value = json.loads(data)
    except ValueError:
        return
    stack: list[tuple[str, object]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            stack += [(f"{path}/{k}", v) for k, v in item.items() if k not in _NOT_TEXT]
        elif isinstance(item, list):
            stack += [(f"{path}/{i}", v) for i, v in enumerate(item)]
        elif isinstance(item, str):
            joined.setdefault(path, []).append(item)


def internal_names(request_body: bytes) -> set[str]:
    """The names the server gives the request's tools where they differ from the caller's."""
    try:
        body = json.loads(request_body or b"null")
    except ValueError:
        return set()
    tools = body.get("tools") if isinstance(body, dict) else None
    if not isinstance(tools, list):
        return set()
    try:
        _, mapping = normalize_tool_names([t for t in tools if isinstance(t, dict)])
    except (TypeError, AttributeError):
        return set()
    return {model for model, original in mapping.items() if model != original}


class WireInspector:
    """Checks response bodies and stream events; ``found`` lists what leaked, and where."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self.checked = 0  # bodies and events looked at (a check that saw nothing proves nothing)

    def check_text(self, where: str, text: str, names: Iterable[str] = ()) -> None:
        self.checked += 1
        names = tuple(names)
        try:
            strings = list(_strings(json.loads(text)))
        except ValueError:
            strings = [text]
        for string in strings:
            fragments = leaks(string, names)
            if fragments:
                self.found.append(f"{where}: {', '.join(fragments)} in {string[:200]!r}")

    def check_events(
        self, where: str, text: str, names: Iterable[str] = (), joined: dict | None = None
    ) -> str:
        """Checks each complete server-sent event in `text`; returns the unfinished rest.

        `joined` collects the stream's text per JSON path (``choices/0/delta/content``),
        so that ``check_joined`` also sees a marker split over several deltas."""
        text = text.replace("\r\n", "\n")
        *events, rest = text.split("\n\n")
        for event in events:
            data = [line[5:].lstrip() for line in event.split("\n") if line.startswith("data:")]
            other = [line for line in event.split("\n") if line and not line.startswith("data:")]
            if data and data != ["[DONE]"]:
                self.check_text(where + " (event)", "\n".join(data), names)
                if joined is not None:
                    _join(joined, "\n".join(data))
            for line in other:
                self.check_text(where + " (event field)", line, names)
        return rest

    def check_joined(self, where: str, joined: dict, names: Iterable[str] = ()) -> None:
        """Checks a stream's text as the client assembles it (deltas joined per path)."""
        names = tuple(names)
        for path, pieces in joined.items():
            text = "".join(pieces)
            fragments = leaks(text, names)
            if fragments:
                self.found.append(
                    f"{where} (joined {path}): {', '.join(fragments)} in {text[:200]!r}"
                )

    def check_response(self, request, response, streamed: bool) -> None:
        where = f"{request.method} {request.url.path}"
        try:
            names = internal_names(request.content)
        except (httpx.RequestNotRead, httpx2.RequestNotRead):
            names = set()
        kind = response.headers.get("content-type", "")
        if not streamed:
            if kind.startswith("text/event-stream"):
                joined: dict = {}
                self.check_events(where, response.text + "\n\n", names, joined)
                self.check_joined(where, joined, names)
            elif response.content:
                self.check_text(where, response.text, names)
            return
        wrapper = _Httpx2Stream if isinstance(response, httpx2.Response) else _HttpxStream
        response.stream = wrapper(self, response, where, names)

    @contextmanager
    def installed(self) -> Iterator[WireInspector]:
        """Wraps ``send`` of httpx.Client and httpx2.Client while the block runs."""
        originals = [(library, library.Client.send) for library in (httpx, httpx2)]

        def wrap(original):
            def send(client, request, *, stream=False, **kwargs):
                response = original(client, request, stream=stream, **kwargs)
                self.check_response(request, response, stream)
                return response

            return send

        for library, original in originals:
            library.Client.send = wrap(original)
        try:
            yield self
        finally:
            for library, original in originals:
                library.Client.send = original


class _Inspected:
    """A response's byte stream that checks what passes through it, as the client reads."""

    def __init__(self, inspector: WireInspector, response, where: str, names) -> None:
        self._inspector, self._where, self._names = inspector, where, tuple(names)
        self._inner = response.stream
        self._events = response.headers.get("content-type", "").startswith("text/event-stream")
        encoding = response.headers.get("content-encoding", "").lower()
        self._unzip = (
            zlib.decompressobj(16 + zlib.MAX_WBITS)
            if encoding == "gzip"
            else zlib.decompressobj()
            if encoding == "deflate"
            else None
        )
        self._decode = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text = ""
        self._joined: dict = {}
        self._done = False

    def __iter__(self):
        for chunk in self._inner:
            self._take(chunk)
            yield chunk
        self._end()

    def _take(self, chunk: bytes) -> None:
        data = self._unzip.decompress(chunk) if self._unzip else chunk
        self._text += self._decode.decode(data)
        if self._events:
            self._text = self._inspector.check_events(
                self._where, self._text, self._names, self._joined
            )

    def _end(self) -> None:
        if self._done:
            return
        self._done = True
        self._text += self._decode.decode(b"", final=True)
        if self._events:
            self._inspector.check_events(
                self._where, self._text + "\n\n", self._names, self._joined
            )
            self._inspector.check_joined(self._where, self._joined, self._names)
        elif self._text:
            self._inspector.check_text(self._where, self._text, self._names)

    def close(self) -> None:
        self._end()  # what arrived before the client stopped reading
        self._inner.close()


class _HttpxStream(_Inspected, httpx.SyncByteStream):
    pass


class _Httpx2Stream(_Inspected, httpx2.SyncByteStream):
    pass
