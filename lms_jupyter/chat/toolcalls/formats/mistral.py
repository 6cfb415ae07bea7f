"""Mistral tool calls after [TOOL_CALLS]: a JSON list (v0.3) or NAME[ARGS]{...}."""

from __future__ import annotations

from lms_jupyter.chat.toolcalls import families
from lms_jupyter.chat.toolcalls.formats.base import ToolCallStreamParser
from lms_jupyter.chat.toolcalls.formats.reading import Reader


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
