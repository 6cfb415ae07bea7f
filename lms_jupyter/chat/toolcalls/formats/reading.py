"""The reading primitives every tool-call format's reader is written with.

A format is read by a generator ("reader") that pulls characters through ``_peek`` /
``_expect``; when it needs more text than has arrived it yields, and the next ``feed``
resumes it. That keeps each format's grammar readable as straight-line code and makes
the result independent of how the text was split into chunks. The driver that feeds
these readers and turns what they read into events is base.ToolCallStreamParser.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from lms_jupyter.chat.toolcalls.jsonscan import ACCEPT, DONE, DONE_BEFORE, JsonScanner

T = TypeVar("T")

WHITESPACE = " \t\n\r"
MAX_NAME = 128


class NotACall(Exception):
    """The text at the cursor is not (or stops being) a well-formed tool call."""


# A reader yields (None) whenever it needs more text; what it reads is its return value.
Reader = Generator[None, None, None]
Reads = Generator[None, None, T]


class StreamReading:
    """Generator primitives over a growing text buffer, with a cursor.

    ``_buf`` is the text not yet emitted or dropped, ``_pos`` the cursor into it,
    ``_final`` whether the stream has ended, and ``_ran_out`` is set when a reader needed
    text after the end (the output was cut off, as opposed to malformed).
    """

    _buf: str
    _pos: int
    _final: bool
    _ran_out: bool

    def _need(self, count: int) -> Reader:
        """Waits until `count` characters follow the cursor, or the stream has ended."""
        while len(self._buf) - self._pos < count and not self._final:
            yield
        if len(self._buf) - self._pos < count:
            self._ran_out = True

    def _peek(self, count: int) -> Reads[str]:
        yield from self._need(count)
        return self._buf[self._pos : self._pos + count]

    def _accept(self, literal: str) -> Reads[bool]:
        """Consumes `literal` if it comes next; returns whether it did."""
        got = yield from self._peek(len(literal))
        if got == literal:
            self._pos += len(literal)
            return True
        return False

    def _accept_close(self, literal: str) -> Reads[bool]:
        """Consumes a closing marker; at the end of the stream also the start of one
        (generation stopped inside it, which is still the marker, not content)."""
        if (yield from self._accept(literal)):
            return True
        rest = self._buf[self._pos :]
        if self._final and rest and literal.startswith(rest):
            self._pos = len(self._buf)
            return True
        return False

    def _expect(self, literal: str) -> Reader:
        if not (yield from self._accept(literal)):
            raise NotACall

    def _skip_ws(self) -> Reader:
        while True:
            ch = yield from self._peek(1)
            if not ch or ch not in WHITESPACE:
                return
            self._pos += 1

    def _read_name(self, terminators: str) -> Reads[str]:
        """Reads a bare identifier (tool or parameter name) up to a terminator."""
        start = self._pos
        while True:
            ch = yield from self._peek(1)
            if not ch:
                raise NotACall
            if ch in terminators or ch in WHITESPACE or ch in '<>[]"{}':
                break
            self._pos += 1
            if self._pos - start > MAX_NAME:
                raise NotACall
        name = self._buf[start : self._pos]
        if not name:
            raise NotACall
        return name

    def _read_until(self, literal: str, max_length: int | None = None) -> Reads[str]:
        """Reads raw text up to `literal`, consuming both; returns the text."""
        start = self._pos
        while True:
            found = self._buf.find(literal, self._pos)
            if found >= 0:
                if max_length is not None and found - start > max_length:
                    raise NotACall
                self._pos = found + len(literal)
                return self._buf[start:found]
            self._pos = max(self._pos, len(self._buf) - len(literal) + 1)
            if self._final:
                self._ran_out = True
            if self._final or (max_length is not None and self._pos - start > max_length):
                raise NotACall
            yield

    def _read_json(self, on_piece: Callable[[str], None] | None = None) -> Reads[str]:
        """Reads one JSON value; returns its raw text. `on_piece` sees it as it arrives."""
        scanner = JsonScanner()
        pieces: list[str] = []
        while True:
            yield from self._need(1)
            buf, start = self._buf, self._pos
            if start >= len(buf):  # end of stream
                if scanner.can_end_here():
                    return "".join(pieces)
                self._ran_out = True
                raise NotACall
            index, status = start, ACCEPT
            while index < len(buf):
                status = scanner.push(buf[index])
                if status == ACCEPT:
                    index += 1
                    continue
                if status == DONE:
                    index += 1
                break
            piece = buf[start:index]
            self._pos = index
            if piece:
                pieces.append(piece)
                if on_piece is not None:
                    on_piece(piece)
            if status in (DONE, DONE_BEFORE):
                return "".join(pieces)
            if index < len(buf):  # rejected character
                raise NotACall

    def _read_json_string(self) -> Reads[Any]:
        ch = yield from self._peek(1)
        if ch != '"':
            raise NotACall
        raw = yield from self._read_json(None)
        return json.loads(raw)
