"""The driver shared by every tool-call format's stream parser.

A parser is fed model text piece by piece and answers with events (events.py). Text
that could still turn into a call marker is held back until it is clear; a call's
arguments stream out as they are generated. Text that only looked like a call comes
back as plain content, so nothing is ever dropped and nothing raises.

The formats differ in a few dozen lines each (one module per family beside this one);
what they share lives here: finding markers, holding back, settling blocks into events,
and the readers for the two call bodies several formats use (a JSON call object, and
the XML ``<function=...>`` form).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from lms_jupyter.chat.toolcalls.events import (
    ContentDelta,
    ToolCallArgsDelta,
    ToolCallEnd,
    ToolCallEvent,
    ToolCallStart,
    coalesce,
    new_call_id,
    unique_id_factory,
)
from lms_jupyter.chat.toolcalls.formats.reading import (
    WHITESPACE,
    NotACall,
    Reader,
    Reads,
    StreamReading,
)
from lms_jupyter.chat.toolcalls.formats.xml_values import (
    parameter_schemas,
    xml_value_to_json,
)


class ToolCallStreamParser(StreamReading):
    """Base parser: finds call markers in content and runs the family's reader on them.

    ``stream_arguments=True`` announces a call as soon as its name is known and passes
    argument text on as it arrives; if such a call then breaks off, it is closed with
    ``ToolCallEnd(complete=False)`` and the text after it is content. With
    ``stream_arguments=False`` every call is emitted whole once it is complete, and a
    call that breaks the syntax comes back entirely as content (what non-streamed
    responses want). Both modes read the same way; the non-streaming one just holds a
    block's events back until the block is settled.

    When the output ends inside a call block (a length limit), nothing of the format
    reaches content: a call whose name is known is reported as far as it got
    (``ToolCallEnd(complete=False, cut_off=True)``), a partial closing marker is taken
    as the marker, and a block cut off before its name is dropped.

    A call whose name is not in ``tool_names`` is still reported (the caller decides
    what to do with it), except for Llama 3's bare-JSON calls, which have no marker and
    are only believed when they name a known tool.
    """

    family = ""
    markers: tuple[str, ...] = ()

    def __init__(
        self,
        tool_names: Iterable[str] = (),
        tools: list[dict] | None = None,
        *,
        stream_arguments: bool = True,
        id_factory: Callable[[], str] | None = None,
    ) -> None:
        self.tool_names = list(tool_names)
        self._known_names = set(self.tool_names)
        self._parameter_schemas = parameter_schemas(tools or [])
        self._stream = True  # read as streaming; _defer holds events back instead
        self._defer = not stream_arguments
        self._safe = (0, 0)  # (events, cursor) at the block's last settled point
        self._ran_out = False  # the reader needed text after the stream ended
        self._block_name: str | None = None  # the call name read in the current block
        self._bare_block = False  # the block started without a marker (Llama 3)
        self._new_id = unique_id_factory(id_factory or new_call_id)
        self._buf = ""  # text neither emitted nor dropped yet
        self._pos = 0  # reader cursor into _buf
        self._commit = 0  # _buf offset up to which events already account for the text
        self._reader: Reader | None = None
        self._final = False
        self._finished = False
        self._at_start = True  # nothing has been emitted or parsed yet
        self._after_call = False  # the last block produced a call
        self._events: list[ToolCallEvent] = []
        self._next_index = 0
        self._open_index: int | None = None

    # -- public API ----------------------------------------------------------------

    def feed(self, text: str) -> list[ToolCallEvent]:
        """Adds generated text; returns the events it settles."""
        if self._finished:
            raise RuntimeError("feed() after finish()")
        self._buf += text
        self._pump()
        return self._take_events()

    def finish(self) -> list[ToolCallEvent]:
        """Ends the stream: settles held-back text and unfinished calls."""
        if self._finished:
            return []
        self._final = True
        self._pump()
        self._finished = True
        return self._take_events()

    # -- driver ----------------------------------------------------------------------

    def _pump(self) -> None:
        while True:
            if self._reader is None:
                if not self._scan_text():
                    return
                continue
            try:
                next(self._reader)
            except StopIteration:
                # a block without a single call (e.g. an empty list) is just text
                self._close_block(ok=self._commit > 0)
            except NotACall:
                if self._final and self._ran_out:
                    self._close_cut_off()
                else:
                    self._close_block(ok=False)
            else:
                return  # the reader waits for more text

    def _scan_text(self) -> bool:
        """Emits plain content up to the next marker; True when a reader was started."""
        buf = self._buf
        if not buf:
            return False
        if self._at_start and self._opens_at_start():
            stripped = buf.lstrip()
            if not stripped and not self._final:
                return False  # leading whitespace may precede a bare call
            if stripped and stripped[0] in self._start_chars():
                self._at_start = False
                self._start_block(self._read_block_at_start(), len(buf) - len(stripped))
                self._bare_block = True
                return True
        if buf.strip():
            self._at_start = False
        if self._after_call:
            # whitespace between or after calls is layout, not content
            stripped = buf.lstrip(WHITESPACE)
            if not stripped and not self._final:
                self._buf = ""
                return False
            self._after_call = False
            buf = self._buf = stripped
        found = _earliest(buf, self.markers)
        if found is not None:
            offset, marker = found
            # whitespace before a call is layout: it joins the block, so it is dropped
            # if the call parses and given back as content if it does not
            start = len(buf[:offset].rstrip(WHITESPACE))
            self._emit_content(buf[:start])
            self._buf = buf[start:]
            self._start_block(self._read_block(marker), offset - start + len(marker))
            return True
        if self._final:
            # the output ended inside an opening marker: markup, not content
            held = _partial_marker_length(buf, self.markers)
            self._emit_content(buf[: len(buf) - held])
            self._buf = ""
            return False
        else:
            # hold a possible marker start, and the whitespace before it, which is
            # dropped if a call follows
            held = _partial_marker_length(buf, self.markers)
            held = len(buf) - len(buf[: len(buf) - held].rstrip(WHITESPACE))
        self._emit_content(buf[: len(buf) - held])
        self._buf = buf[len(buf) - held :]
        return False

    def _start_block(self, reader: Reader, cursor: int) -> None:
        self._reader = reader
        self._pos = cursor
        self._commit = 0
        self._safe = (len(self._events), 0)
        self._ran_out = False
        self._block_name = None
        self._bare_block = False

    def _close_cut_off(self) -> None:
        """The stream ended inside a block: report the call as far as it got."""
        if self._open_index is None and self._block_name is not None:
            self._start_call(self._block_name)
        if self._open_index is not None:
            self._events.append(ToolCallEnd(self._open_index, False, cut_off=True))
            self._open_index = None
        elif self._bare_block and self._commit == 0:
            # bare JSON at the start (Llama 3) that never named a tool: plain text,
            # unless it could still have become a call (cut off in its name): like a
            # partial marker, that is markup and must not reach content
            self._reader = None
            if not self._could_become_bare_call(self._buf):
                self._emit_content(self._buf)
            self._buf = ""
            return
        self._reader = None
        self._buf = ""
        self._pos = self._commit = 0

    def _close_block(self, ok: bool) -> None:
        self._reader = None
        if not ok and self._defer:
            # nothing of an unsettled call was shown: forget it, as if never read
            del self._events[self._safe[0] :]
            self._open_index = None
            self._commit = self._safe[1]
        self._after_call = self._commit > 0
        if ok:
            self._buf = self._buf[self._pos :]
        else:
            if self._open_index is not None:
                self._end_call(complete=False)
            if self._commit == 0:
                # nothing of this block became a call: its first character is plain
                # text, and scanning resumes right after it
                self._emit_content(self._buf[:1])
                self._buf = self._buf[1:]
            else:
                self._buf = self._buf[self._commit :]
        self._pos = 0
        self._commit = 0

    # -- hooks for families --------------------------------------------------------------

    def _read_block(self, marker: str) -> Reader:
        raise NotImplementedError

    def _opens_at_start(self) -> bool:
        """Whether a call may start, without marker, at the very start of the output."""
        return False

    def _start_chars(self) -> str:
        return ""

    def _read_block_at_start(self) -> Reader:
        raise NotImplementedError

    def _could_become_bare_call(self, text: str) -> bool:
        """Whether output cut off inside a bare block could still have been a call."""
        return False

    # -- events ------------------------------------------------------------------------

    def _take_events(self) -> list[ToolCallEvent]:
        if self._defer and self._reader is not None:
            settled = self._safe[0]
            events, self._events = self._events[:settled], self._events[settled:]
            self._safe = (0, self._safe[1])
            return coalesce(events)
        events, self._events = coalesce(self._events), []
        return events

    def _emit_content(self, text: str) -> None:
        if text:
            self._at_start = False
            self._events.append(ContentDelta(text))

    def _start_call(self, name: str) -> int:
        index = self._next_index
        self._next_index += 1
        self._open_index = index
        self._events.append(ToolCallStart(index, self._new_id(), name))
        self._commit = self._pos
        return index

    def _args_delta(self, index: int, text: str) -> None:
        self._events.append(ToolCallArgsDelta(index, text))
        self._commit = self._pos

    def _end_call(self, complete: bool = True) -> None:
        if self._open_index is not None:
            self._events.append(ToolCallEnd(self._open_index, complete))
            self._open_index = None
        self._commit = self._pos
        if complete:
            self._safe = (len(self._events), self._pos)
            self._block_name = None

    def _complete_call(self, name: str, arguments: str) -> None:
        index = self._start_call(name)
        self._args_delta(index, arguments)
        self._end_call()

    def _check_name(self, name: object, known_only: bool = False) -> None:
        if not isinstance(name, str) or not name.strip():
            raise NotACall
        if known_only and self._known_names and name not in self._known_names:
            raise NotACall

    # -- shared call readers -------------------------------------------------------------

    def _read_arguments_text(self) -> Reads[str]:
        """Reads an arguments value whole: an object, or an object serialised in a string."""
        ch = yield from self._peek(1)
        if ch == "{":
            return (yield from self._read_json(None))
        if ch == '"':
            text = yield from self._read_json_string()
            try:
                decoded = json.loads(text)
            except ValueError:
                raise NotACall from None
            if not isinstance(decoded, dict):
                raise NotACall
            return text
        if (yield from self._accept("null")):
            return "{}"
        raise NotACall

    def _read_arguments_for(self, name: str) -> Reader:
        """Reads a known call's arguments, streaming them when they are an object."""
        yield from self._skip_ws()
        ch = yield from self._peek(1)
        if ch == "{" and self._stream:
            index = self._start_call(name)
            yield from self._read_json(lambda piece: self._args_delta(index, piece))
            self._end_call()
            return
        arguments = yield from self._read_arguments_text()
        self._complete_call(name, arguments)

    def _read_call_object(self, *, require_args: bool = False, known_only: bool = False) -> Reader:
        """Reads {"name": ..., "arguments"|"parameters": {...}} (other keys ignored)."""
        yield from self._expect("{")
        name: str | None = None
        arguments: str | None = None
        emitted = False
        first = True
        while True:
            yield from self._skip_ws()
            if (yield from self._accept("}")):
                break
            if not first:
                yield from self._expect(",")
                yield from self._skip_ws()
            first = False
            key = yield from self._read_json_string()
            yield from self._skip_ws()
            yield from self._expect(":")
            yield from self._skip_ws()
            if key == "name" and name is None:
                name = yield from self._read_json_string()
                self._check_name(name, known_only)
                self._block_name = name
                if arguments is not None:
                    self._complete_call(name, arguments)
                    emitted = True
            elif key in ("arguments", "parameters") and arguments is None and not emitted:
                if name is not None:
                    yield from self._read_arguments_for(name)
                    arguments = ""
                    emitted = True
                else:
                    arguments = yield from self._read_arguments_text()
            else:
                yield from self._read_json(None)
        if emitted:
            return
        if name is None or (arguments is None and require_args):
            raise NotACall
        self._complete_call(name, arguments if arguments is not None else "{}")

    def _read_json_calls(self, **options: bool) -> Reader:
        """One call object, several in a row, or a JSON array of them."""
        if (yield from self._accept("[")):
            yield from self._skip_ws()
            if (yield from self._accept("]")):
                return
            while True:
                yield from self._read_call_object(**options)
                yield from self._skip_ws()
                if (yield from self._accept("]")):
                    return
                yield from self._expect(",")
                yield from self._skip_ws()
        yield from self._read_call_object(**options)
        while True:
            resume = self._pos
            yield from self._skip_ws()
            yield from self._accept(",")
            yield from self._skip_ws()
            if (yield from self._peek(1)) != "{":
                self._pos = resume
                return
            yield from self._read_call_object(**options)

    def _read_xml_function(self) -> Reader:
        """Reads <function=NAME><parameter=KEY>VALUE</parameter>...</function>."""
        yield from self._expect("<function=")
        name = yield from self._read_name(">")
        yield from self._expect(">")
        self._check_name(name)
        self._block_name = name
        schemas = self._parameter_schemas.get(name, {})
        pieces: list[str] = []
        index = self._start_call(name) if self._stream else -1

        def emit(text: str) -> None:
            if self._stream:
                self._args_delta(index, text)
            else:
                pieces.append(text)

        emit("{")
        first = True
        while True:
            yield from self._skip_ws()
            if (yield from self._accept("</function>")):
                break
            yield from self._expect("<parameter=")
            key = yield from self._read_name(">")
            yield from self._expect(">")
            raw = yield from self._read_until("</parameter>")
            value = xml_value_to_json(raw, schemas.get(key))
            emit(("" if first else ", ") + json.dumps(key, ensure_ascii=False) + ": " + value)
            first = False
        emit("}")
        if self._stream:
            self._end_call()
        else:
            self._complete_call(name, "".join(pieces))

    def _read_xml_functions(self) -> Reader:
        yield from self._read_xml_function()
        while True:
            resume = self._pos
            yield from self._skip_ws()
            if (yield from self._peek(len("<function="))) != "<function=":
                self._pos = resume
                return
            yield from self._read_xml_function()


def _earliest(text: str, markers: tuple[str, ...]) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for marker in markers:
        offset = text.find(marker)
        if offset >= 0 and (best is None or offset < best[0]):
            best = (offset, marker)
    return best


def _partial_marker_length(text: str, markers: tuple[str, ...]) -> int:
    """Length of the longest end of `text` that could be the start of a marker."""
    longest = min(len(text), max((len(m) for m in markers), default=1) - 1)
    for length in range(longest, 0, -1):
        tail = text[-length:]
        if any(marker.startswith(tail) for marker in markers):
            return length
    return 0
