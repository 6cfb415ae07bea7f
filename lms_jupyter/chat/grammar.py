"""GBNF grammars for llama.cpp: JSON Schema output, any JSON object, forced tool calls.

llama-cpp-python ignores OpenAI's ``json_schema`` response format and never forces a
tool call, so we build the grammars ourselves. The compiler lives in
lms_jupyter/chat/gbnf/ (rule building, integer ranges, JSON Schema, tool calls,
composing grammars); this module is where callers import it from.
"""

from __future__ import annotations

from lms_jupyter.chat.gbnf.compose import union_gbnf
from lms_jupyter.chat.gbnf.json_schema import (
    UnsupportedSchemaError,
    grammar_for_response_format,
    json_object_gbnf,
    json_schema_to_gbnf,
)
from lms_jupyter.chat.gbnf.rules import COMPACT, LOOSE, gbnf_literal
from lms_jupyter.chat.gbnf.tool_calls import tool_call_gbnf

__all__ = [
    "COMPACT",
    "LOOSE",
    "UnsupportedSchemaError",
    "gbnf_literal",
    "grammar_for_response_format",
    "json_object_gbnf",
    "json_schema_to_gbnf",
    "tool_call_gbnf",
    "union_gbnf",
]
