"""Llama 3.1/3.2 tool calls: bare JSON at the start of the output, or after <|python_tag|>."""

from __future__ import annotations

from collections.abc import Iterable

from lms_jupyter.chat.toolcalls import families
from lms_jupyter.chat.toolcalls.formats.base import ToolCallStreamParser
from lms_jupyter.chat.toolcalls.formats.reading import WHITESPACE, Reader


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
        elif ch in WHITESPACE:
            continue
        else:
            in_string = ch == '"'
        compact.append(ch)
    seen = "".join(compact)
    seen = seen.removeprefix("[")
    if not seen:
        return bool(compact)  # "[" alone
    opening = '{"name":"'
    if len(seen) <= len(opening):
        return opening.startswith(seen)
    if not seen.startswith(opening):
        return False
    partial = seen[len(opening) :]
    names = list(tool_names)
    if not names:
        return '"' not in partial and "\\" not in partial
    return any(name.startswith(partial) for name in names)
