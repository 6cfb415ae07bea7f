"""gpt-oss (harmony) tool calls: a commentary message addressed to functions.NAME."""

from __future__ import annotations

from lms_jupyter.chat.toolcalls import families
from lms_jupyter.chat.toolcalls.formats.base import ToolCallStreamParser
from lms_jupyter.chat.toolcalls.formats.reading import Reader

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
