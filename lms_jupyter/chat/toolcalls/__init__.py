"""Tool calling without transport: family detection, stream parsers, generic fallback,
tool-name normalisation. The grammar that forces calls lives in lms_jupyter.grammar."""

from lms_jupyter.chat.toolcalls.events import (
    ContentDelta,
    ToolCallArgsDelta,
    ToolCallEnd,
    ToolCallEvent,
    ToolCallStart,
    new_call_id,
)
from lms_jupyter.chat.toolcalls.families import (
    FAMILIES,
    GENERIC,
    HARMONY,
    HERMES,
    LLAMA3,
    MISTRAL,
    NEMOTRON,
    SEED_OSS,
    detect_family,
    template_supports_tools,
)
from lms_jupyter.chat.toolcalls.generic import (
    convert_messages_for_generic,
    forced_tool_system_prompt,
    format_tool_request,
    generic_tool_system_prompt,
)
from lms_jupyter.chat.toolcalls.names import (
    model_names_in_history,
    normalize_tool_names,
    original_tool_name,
    snake_case,
)
from lms_jupyter.chat.toolcalls.parsers import (
    ToolCallStreamParser,
    make_parser,
    xml_value_to_json,
)

__all__ = [
    "ContentDelta",
    "ToolCallArgsDelta",
    "ToolCallEnd",
    "ToolCallEvent",
    "ToolCallStart",
    "ToolCallStreamParser",
    "FAMILIES",
    "GENERIC",
    "HARMONY",
    "HERMES",
    "LLAMA3",
    "MISTRAL",
    "NEMOTRON",
    "SEED_OSS",
    "convert_messages_for_generic",
    "detect_family",
    "forced_tool_system_prompt",
    "format_tool_request",
    "generic_tool_system_prompt",
    "make_parser",
    "model_names_in_history",
    "new_call_id",
    "normalize_tool_names",
    "original_tool_name",
    "snake_case",
    "template_supports_tools",
    "xml_value_to_json",
]
