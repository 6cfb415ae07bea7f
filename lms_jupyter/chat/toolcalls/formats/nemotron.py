"""Nemotron-Nano-v2 tool calls: a JSON list inside <TOOLCALL> tags."""

from __future__ import annotations

from lms_jupyter.chat.toolcalls import families
from lms_jupyter.chat.toolcalls.formats.base import ToolCallStreamParser
from lms_jupyter.chat.toolcalls.formats.reading import Reader


class NemotronParser(ToolCallStreamParser):
    """Nemotron-Nano-v2: <TOOLCALL>[{"name": ..., "arguments": {...}}, ...]</TOOLCALL>."""

    family = families.NEMOTRON
    markers = ("<TOOLCALL>",)

    def _read_block(self, marker: str) -> Reader:
        yield from self._skip_ws()
        yield from self._read_json_calls()
        yield from self._skip_ws()
        yield from self._accept_close("</TOOLCALL>")
