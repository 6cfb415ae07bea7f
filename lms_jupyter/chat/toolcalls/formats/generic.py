"""LM Studio's default tool use, for templates without tools: [TOOL_REQUEST]...[END_TOOL_REQUEST]."""

from __future__ import annotations

from lms_jupyter.chat.toolcalls import families
from lms_jupyter.chat.toolcalls.formats.base import ToolCallStreamParser
from lms_jupyter.chat.toolcalls.formats.reading import Reader


class GenericParser(ToolCallStreamParser):
    """LM Studio's default tool use: [TOOL_REQUEST]{...}[END_TOOL_REQUEST]."""

    family = families.GENERIC
    markers = ("[TOOL_REQUEST]",)

    def _read_block(self, marker: str) -> Reader:
        yield from self._skip_ws()
        yield from self._read_json_calls()
        yield from self._skip_ws()
        yield from self._accept_close("[END_TOOL_REQUEST]")
