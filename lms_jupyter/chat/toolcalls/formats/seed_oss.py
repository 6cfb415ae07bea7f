"""Seed-OSS tool calls: the XML <function=...> form inside <seed:tool_call> tags."""

from __future__ import annotations

from lms_jupyter.chat.toolcalls import families
from lms_jupyter.chat.toolcalls.formats.base import ToolCallStreamParser
from lms_jupyter.chat.toolcalls.formats.reading import Reader


class SeedOssParser(ToolCallStreamParser):
    """Seed-OSS: <seed:tool_call><function=NAME><parameter=K>V</parameter></function></seed:tool_call>."""

    family = families.SEED_OSS
    markers = ("<seed:tool_call>",)

    def _read_block(self, marker: str) -> Reader:
        yield from self._skip_ws()
        yield from self._read_xml_functions()
        yield from self._skip_ws()
        yield from self._accept_close("</seed:tool_call>")
