"""Streaming tool-call parsers, one per wire format (see families.py).

A parser is fed model text piece by piece and answers with events (events.py). Text
that could still turn into a call marker is held back until it is clear; a call's
arguments stream out as they are generated. Text that only looked like a call comes
back as plain content, so nothing is ever dropped and nothing raises.

Each format is read by a generator ("reader") that pulls characters through
``_peek``/``_expect``; when it needs more text than has arrived it yields, and the
next ``feed`` resumes it. That keeps each format's grammar readable as straight-line
code and makes the result independent of how the text was split into chunks.

Why one module of ~750 lines: the seven formats share the reader machinery of the base
class (peeking, holding back, JSON argument streaming) and differ in a few dozen lines
each; keeping them beside it makes a format's differences easy to compare.
"""

from __future__ import annotations

import json
from typing import Callable, Iterable, Iterator

from . import families
from .events import (
    ContentDelta,
    ToolCallArgsDelta,
    ToolCallEnd,
    ToolCallEvent,
    ToolCallStart,
    coalesce,
    new_call_id,
    unique_id_factory,
)
from .jsonscan import ACCEPT, DONE, DONE_BEFORE, JsonScanner

_WHITESPACE = " \t\n\r"
_MAX_NAME = 128


class _Fail(Exception):
    """The text at the cursor is not (or stops being) a well-formed tool call."""


Reader = Iterator[None]


class ToolCallStreamParser:
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
        self._parameter_schemas = _parameter_schemas(tools or [])
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
            except _Fail:
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
            stripped = buf.lstrip(_WHITESPACE)
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
            start = len(buf[:offset].rstrip(_WHITESPACE))
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
            held = len(buf) - len(buf[: len(buf) - held].rstrip(_WHITESPACE))
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
            del self._events[self._safe[0]:]
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

    # -- reading primitives (generators) -------------------------------------------------

    def _need(self, count: int) -> Reader:
        """Waits until `count` characters follow the cursor, or the stream has ended."""
        while len(self._buf) - self._pos < count and not self._final:
            yield
        if len(self._buf) - self._pos < count:
            self._ran_out = True

    def _peek(self, count: int) -> Iterator[None]:
        yield from self._need(count)
        return self._buf[self._pos : self._pos + count]

    def _accept(self, literal: str) -> Iterator[None]:
        """Consumes `literal` if it comes next; returns whether it did."""
        got = yield from self._peek(len(literal))
        if got == literal:
            self._pos += len(literal)
            return True
        return False

    def _accept_close(self, literal: str) -> Iterator[None]:
        """Consumes a closing marker; at the end of the stream also the start of one
        (generation stopped inside it, which is still the marker, not content)."""
        if (yield from self._accept(literal)):
            return True
        rest = self._buf[self._pos:]
        if self._final and rest and literal.startswith(rest):
            self._pos = len(self._buf)
            return True
        return False

    def _expect(self, literal: str) -> Reader:
        if not (yield from self._accept(literal)):
            raise _Fail

    def _skip_ws(self) -> Reader:
        while True:
            ch = yield from self._peek(1)
            if not ch or ch not in _WHITESPACE:
                return
            self._pos += 1

    def _read_name(self, terminators: str) -> Iterator[None]:
        """Reads a bare identifier (tool or parameter name) up to a terminator."""
        start = self._pos
        while True:
            ch = yield from self._peek(1)
            if not ch:
                raise _Fail
            if ch in terminators or ch in _WHITESPACE or ch in "<>[]\"{}":
                break
            self._pos += 1
            if self._pos - start > _MAX_NAME:
                raise _Fail
        name = self._buf[start : self._pos]
        if not name:
            raise _Fail
        return name

    def _read_until(self, literal: str, max_length: int | None = None) -> Iterator[None]:
        """Reads raw text up to `literal`, consuming both; returns the text."""
        start = self._pos
        while True:
            found = self._buf.find(literal, self._pos)
            if found >= 0:
                if max_length is not None and found - start > max_length:
                    raise _Fail
                self._pos = found + len(literal)
                return self._buf[start:found]
            self._pos = max(self._pos, len(self._buf) - len(literal) + 1)
            if self._final:
                self._ran_out = True
            if self._final or (max_length is not None and self._pos - start > max_length):
                raise _Fail
            yield

    def _read_json(self, on_piece: Callable[[str], None] | None = None) -> Iterator[None]:
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
                raise _Fail
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
                raise _Fail

    def _read_json_string(self) -> Iterator[None]:
        ch = yield from self._peek(1)
        if ch != '"':
            raise _Fail
        raw = yield from self._read_json(None)
        return json.loads(raw)

    def _check_name(self, name: object, known_only: bool = False) -> None:
        if not isinstance(name, str) or not name.strip():
            raise _Fail
        if known_only and self._known_names and name not in self._known_names:
            raise _Fail

    # -- shared call readers -------------------------------------------------------------

    def _read_arguments_text(self) -> Iterator[None]:
        """Reads an arguments value whole: an object, or an object serialised in a string."""
        ch = yield from self._peek(1)
        if ch == "{":
            return (yield from self._read_json(None))
        if ch == '"':
            text = yield from self._read_json_string()
            try:
                decoded = json.loads(text)
            except ValueError:
                raise _Fail from None
            if not isinstance(decoded, dict):
                raise _Fail
            return text
        if (yield from self._accept("null")):
            return "{}"
        raise _Fail

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
            raise _Fail
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
            if not (yield from self._peek(len("<function="))) == "<function=":
                self._pos = resume
                return
            yield from self._read_xml_function()


class HermesParser(ToolCallStreamParser):
    """Hermes / Qwen: <tool_call>{"name": ..., "arguments": {...}}</tool_call>.

    Also reads the XML body Qwen3-Coder and Nemotron 3 put in the same tags:
    <tool_call><function=NAME><parameter=K>V</parameter></function></tool_call>.
    """

    family = families.HERMES
    markers = ("<tool_call>",)

    def _read_block(self, marker: str) -> Reader:
        yield from self._skip_ws()
        if (yield from self._peek(len("<function="))) == "<function=":
            yield from self._read_xml_functions()
        else:
            yield from self._read_json_calls()
        yield from self._skip_ws()
        yield from self._accept_close("</tool_call>")


class GenericParser(ToolCallStreamParser):
    """LM Studio's default tool use: [TOOL_REQUEST]{...}[END_TOOL_REQUEST]."""

    family = families.GENERIC
    markers = ("[TOOL_REQUEST]",)

    def _read_block(self, marker: str) -> Reader:
        yield from self._skip_ws()
        yield from self._read_json_calls()
        yield from self._skip_ws()
        yield from self._accept_close("[END_TOOL_REQUEST]")


class NemotronParser(ToolCallStreamParser):
    """Nemotron-Nano-v2: <TOOLCALL>[{"name": ..., "arguments": {...}}, ...]</TOOLCALL>."""

    family = families.NEMOTRON
    markers = ("<TOOLCALL>",)

    def _read_block(self, marker: str) -> Reader:
        yield from self._skip_ws()
        yield from self._read_json_calls()
        yield from self._skip_ws()
        yield from self._accept_close("</TOOLCALL>")


class MistralParser(ToolCallStreamParser):
    """Mistral: [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...] (v0.3 style) and
    [TOOL_CALLS]NAME[ARGS]{...} (newer), with an optional [CALL_ID]ID before [ARGS]."""

    family = families.MISTRAL
    markers = ("[TOOL_CALLS]",)

    def _read_block(self, marker: str) -> Reader:
        yield from self._skip_ws()
        if (yield from self._peek(1)) in ("[", "{"):
            yield from self._read_json_calls()
            return
        name = yield from self._read_name("[")
        self._check_name(name)
        self._block_name = name
        if (yield from self._accept("[CALL_ID]")):
            yield from self._read_name("[")
        yield from self._expect("[ARGS]")
        yield from self._read_arguments_for(name)


class Llama3Parser(ToolCallStreamParser):
    """Llama 3.1/3.2: {"name": ..., "parameters": {...}} at the start of the output or
    after <|python_tag|>; several calls may follow each other, separated by ';'."""

    family = families.LLAMA3
    markers = ("<|python_tag|>",)

    def _opens_at_start(self) -> bool:
        return True

    def _start_chars(self) -> str:
        return "{["

    def _read_block(self, marker: str) -> Reader:
        yield from self._skip_ws()
        yield from self._read_llama_calls(known_only=False)

    def _read_block_at_start(self) -> Reader:
        yield from self._read_llama_calls(known_only=True)

    def _could_become_bare_call(self, text: str) -> bool:
        return bare_call_prefix(text, self.tool_names)

    def _read_llama_calls(self, known_only: bool) -> Reader:
        options = {"require_args": True, "known_only": known_only}
        if (yield from self._peek(1)) == "[":
            yield from self._read_json_calls(**options)
            return
        yield from self._read_call_object(**options)
        while True:
            resume = self._pos
            yield from self._skip_ws()
            yield from self._accept(";")
            yield from self._skip_ws()
            yield from self._accept("<|python_tag|>")
            if (yield from self._peek(1)) != "{":
                self._pos = resume
                return
            yield from self._read_call_object(**options)


class SeedOssParser(ToolCallStreamParser):
    """Seed-OSS: <seed:tool_call><function=NAME><parameter=K>V</parameter></function></seed:tool_call>."""

    family = families.SEED_OSS
    markers = ("<seed:tool_call>",)

    def _read_block(self, marker: str) -> Reader:
        yield from self._skip_ws()
        yield from self._read_xml_functions()
        yield from self._skip_ws()
        yield from self._accept_close("</seed:tool_call>")


HARMONY_CALL_MARKER = "<|channel|>commentary to=functions."


class HarmonyParser(ToolCallStreamParser):
    """gpt-oss (harmony): <|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{...}<|call|>.

    Meant to read the content stream of reasoning.HarmonySplitter, which passes call
    messages on in exactly this form; the recipient-first header
    <|start|>assistant to=functions.NAME<|channel|>commentary json<|message|> is read too.
    """

    family = families.HARMONY
    markers = (HARMONY_CALL_MARKER, "<|start|>assistant to=functions.")

    def _read_block(self, marker: str) -> Reader:
        name = yield from self._read_name("<")
        self._check_name(name)
        self._block_name = name
        yield from self._read_until("<|message|>", max_length=64)
        yield from self._read_arguments_for(name)
        yield from self._skip_ws()
        yield from self._accept_close("<|call|>")


PARSERS: dict[str, type[ToolCallStreamParser]] = {
    parser.family: parser
    for parser in (
        HermesParser,
        GenericParser,
        NemotronParser,
        MistralParser,
        Llama3Parser,
        SeedOssParser,
        HarmonyParser,
    )
}


def make_parser(
    family: str,
    tool_names: Iterable[str] = (),
    tools: list[dict] | None = None,
    *,
    stream_arguments: bool = True,
    id_factory: Callable[[], str] | None = None,
) -> ToolCallStreamParser:
    """A fresh stream parser for `family`. `tools` (optional, OpenAI format) lets the
    XML formats turn parameter text into the JSON types the schema asks for."""
    try:
        parser_class = PARSERS[family]
    except KeyError:
        raise ValueError(f"unknown tool-call family {family!r}") from None
    return parser_class(
        tool_names, tools, stream_arguments=stream_arguments, id_factory=id_factory
    )


# -- helpers ------------------------------------------------------------------------------


def bare_call_prefix(text: str, tool_names: Iterable[str]) -> bool:
    """Whether `text` is the start of a bare-JSON call that had not finished its name:
    a prefix of ``{"name": "<a known tool>"`` (or of a list of calls), JSON whitespace
    allowed between tokens. With no known tools any name could follow, as in
    ``_check_name``. The grammar for forced Llama 3 calls writes the name first, and so
    does the model, so a call cut off later than its name is reported as a call."""
    compact, in_string, escaped = [], False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch in _WHITESPACE:
            continue
        else:
            in_string = ch == '"'
        compact.append(ch)
    seen = "".join(compact)
    if seen.startswith("["):
        seen = seen[1:]
    if not seen:
        return bool(compact)  # "[" alone
    opening = '{"name":"'
    if len(seen) <= len(opening):
        return opening.startswith(seen)
    if not seen.startswith(opening):
        return False
    partial = seen[len(opening):]
    names = list(tool_names)
    if not names:
        return '"' not in partial and "\\" not in partial
    return any(name.startswith(partial) for name in names)


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


def _parameter_schemas(tools: list[dict]) -> dict[str, dict[str, dict]]:
    """tool name -> {parameter name: its JSON schema}, for typing XML parameter values."""
    schemas: dict[str, dict[str, dict]] = {}
    for tool in tools:
        function = tool.get("function", tool) if isinstance(tool, dict) else {}
        name = function.get("name")
        parameters = function.get("parameters") or {}
        properties = parameters.get("properties") if isinstance(parameters, dict) else None
        if isinstance(name, str) and isinstance(properties, dict):
            schemas[name] = properties
    return schemas


def _schema_types(schema: dict | None) -> set[str]:
    if not isinstance(schema, dict):
        return set()
    declared = schema.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {t for t in declared if isinstance(t, str)}
    if "enum" in schema and isinstance(schema["enum"], list):
        return {_json_type(value) for value in schema["enum"]}
    types: set[str] = set()
    for option in schema.get("anyOf", []) + schema.get("oneOf", []):
        types |= _schema_types(option)
    return types


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def xml_value_to_json(raw: str, schema: dict | None = None) -> str:
    """Turns an XML-style parameter value into JSON text.

    The value is raw text, so its type comes from the parameter's schema when known;
    without one, text that parses as JSON keeps that type and the rest is a string.
    """
    value = raw[1:] if raw.startswith("\n") else raw
    value = value[:-1] if value.endswith("\n") else value
    types = _schema_types(schema)
    if types == {"string"}:
        return json.dumps(value, ensure_ascii=False)
    try:
        decoded = json.loads(value)
    except ValueError:
        return json.dumps(value, ensure_ascii=False)
    kind = _json_type(decoded)
    if not types or kind in types or (kind == "integer" and "number" in types):
        return json.dumps(decoded, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False)
