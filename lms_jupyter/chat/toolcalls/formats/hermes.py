"""Hermes / Qwen tool calls: JSON (or the XML body) inside <tool_call> tags."""

from __future__ import annotations

from lms_jupyter.chat.toolcalls import families
from lms_jupyter.chat.toolcalls.formats.base import ToolCallStreamParser
from lms_jupyter.chat.toolcalls.formats.reading import Reader


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
