"""Streaming tool-call parsers, one per wire format (see families.py): the registry.

The parsers live in toolcalls/formats/ (the shared driver in base.py, the reading
primitives in reading.py, one module per family); this module maps a family to its
parser and re-exports the public names from their old place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from lms_jupyter.chat.toolcalls.formats.base import ToolCallStreamParser
from lms_jupyter.chat.toolcalls.formats.generic import GenericParser
from lms_jupyter.chat.toolcalls.formats.harmony import (
    HARMONY_CALL_MARKER,
    HarmonyParser,
)
from lms_jupyter.chat.toolcalls.formats.hermes import HermesParser
from lms_jupyter.chat.toolcalls.formats.llama3 import Llama3Parser, bare_call_prefix
from lms_jupyter.chat.toolcalls.formats.mistral import MistralParser
from lms_jupyter.chat.toolcalls.formats.nemotron import NemotronParser
from lms_jupyter.chat.toolcalls.formats.reading import Reader
from lms_jupyter.chat.toolcalls.formats.seed_oss import SeedOssParser
from lms_jupyter.chat.toolcalls.formats.xml_values import xml_value_to_json

__all__ = [
    "HARMONY_CALL_MARKER",
    "PARSERS",
    "GenericParser",
    "HarmonyParser",
    "HermesParser",
    "Llama3Parser",
    "MistralParser",
    "NemotronParser",
    "Reader",
    "SeedOssParser",
    "ToolCallStreamParser",
    "bare_call_prefix",
    "make_parser",
    "xml_value_to_json",
]

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
    return parser_class(tool_names, tools, stream_arguments=stream_arguments, id_factory=id_factory)
