"""The Responses API's (``POST /v1/responses``) and the Files and Batch APIs' fields, each
declared once.

A Responses body is a generation body (:data:`lms_jupyter.api.spec.openai.GENERATION`:
sampling, ``max_output_tokens``, LM Studio's ``ttl``/``preset``/``draft_model``) with the
fields below; :mod:`lms_jupyter.api.responses.request` reads them. The Files and Batch
fields are read by :mod:`lms_jupyter.api.files_batches.requests`.
"""

from __future__ import annotations

from lms_jupyter.api.spec import openai as oa
from lms_jupyter.api.spec.field import Body, Field

MAX_METADATA_KEYS = 16
MAX_METADATA_KEY = 64  # characters
MAX_METADATA_VALUE = 512  # characters
TRUNCATIONS = ("auto", "disabled")

METADATA = Field(
    "metadata",
    "composite",
    shape={
        "type": "object",
        "maxProperties": MAX_METADATA_KEYS,
        "propertyNames": {"maxLength": MAX_METADATA_KEY},
        "additionalProperties": {"type": "string", "maxLength": MAX_METADATA_VALUE},
    },
)

# -- Responses ------------------------------------------------------------------------------

BACKGROUND = Field(
    "background",
    "boolean",
    default=False,
    description="Background responses are not supported (true is a 400)",
)
TRUNCATION = Field("truncation", "enum", enum=TRUNCATIONS)
MAX_TOOL_CALLS = Field("max_tool_calls", "integer", 1, None)
STORE = Field("store", "boolean", default=True)
_TEXT_FORMAT = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"enum": list(oa.FORMAT_TYPES)},
        "name": {"type": ["string", "null"]},
        "description": {"type": ["string", "null"]},
        "strict": {"type": ["boolean", "null"]},
        "schema": {"type": "object"},
    },
}

_TOOL_FILTER = {
    "anyOf": [
        {"type": "array", "items": {"type": "string"}},
        {
            "type": "object",
            "properties": {
                "tool_names": {"type": "array", "items": {"type": "string"}},
                "read_only": {"type": "boolean"},
            },
        },
    ]
}
MCP_TOOL = {
    "type": "object",
    "required": ["type", "server_label", "server_url"],
    "properties": {
        "type": {"const": "mcp"},
        "server_label": {"type": "string", "pattern": r"\S"},
        "server_url": {"type": "string", "description": "http:// or https://, no credentials"},
        "allowed_tools": {"anyOf": [_TOOL_FILTER, {"type": "null"}]},
        "require_approval": {
            "anyOf": [
                {"enum": ["always", "never"]},
                {"type": "object", "properties": {"always": _TOOL_FILTER, "never": _TOOL_FILTER}},
                {"type": "null"},
            ]
        },
        "headers": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
        "authorization": {"type": ["string", "null"]},
        "server_description": {"type": ["string", "null"]},
    },
}
TOOLS = Field(
    "tools", "composite", shape={"type": "array", "items": {"anyOf": [*oa.TOOL["anyOf"], MCP_TOOL]}}
)
TOOL_CHOICE = Field(
    "tool_choice",
    "composite",
    nullable=False,
    shape={
        "anyOf": [
            *oa.TOOL_CHOICE_ALTERNATIVES,
            {
                "type": "object",
                "required": ["type", "server_label"],
                "properties": {
                    "type": {"const": "mcp"},
                    "server_label": {"type": "string"},
                    "name": {"type": ["string", "null"]},
                },
            },
        ]
    },
)

RESPONSE_CREATE = oa.GENERATION.with_fields(
    Field(
        "input",
        "composite",
        required=True,
        nullable=False,
        shape={
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "minItems": 1, "items": {"type": "object"}},
            ]
        },
    ),
    Field("instructions", "composite", shape={"type": "string"}),
    TOOLS,
    TOOL_CHOICE,
    oa.PARALLEL_TOOL_CALLS,
    MAX_TOOL_CALLS,
    Field(
        "text",
        "composite",
        shape={
            "type": "object",
            "properties": {"format": {"anyOf": [_TEXT_FORMAT, {"type": "null"}]}},
        },
    ),
    oa.REASONING,
    Field("previous_response_id", "composite", shape={"type": "string", "minLength": 1}),
    STORE,
    METADATA,
    TRUNCATION,
    BACKGROUND,
    Field("include", "composite", shape={"type": "array", "items": {"type": "string"}}),
    Field("user", "composite", shape={"type": "string"}),
    description="POST /v1/responses (the input items are checked by the parser)",
)

# -- Files and Batches ----------------------------------------------------------------------

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses")
ORDERS = ("asc", "desc")

PURPOSE = Field("purpose", "enum", enum=PURPOSES, required=True, nullable=False)
BATCH_CREATE = Body(
    (
        Field(
            "input_file_id",
            "composite",
            required=True,
            nullable=False,
            shape={"type": "string", "minLength": 1},
            description="The id of a file uploaded with purpose 'batch'",
        ),
        Field("endpoint", "enum", enum=ENDPOINTS, required=True, nullable=False),
        Field(
            "completion_window",
            "composite",
            required=True,
            nullable=False,
            shape={"type": "string", "pattern": r"^[0-9]+h$"},
            description="'24h' (or another '<hours>h' up to '168h')",
        ),
        METADATA,
    )
)
# list pagination (query parameters: strings on the wire, these are their meanings)
LIST_QUERY = Body(
    (
        Field("after", "composite", nullable=False, shape={"type": "string"}),
        Field("limit", "integer", 1, None, nullable=False),
        Field("order", "enum", enum=ORDERS, default="desc", nullable=False),
        Field("purpose", "composite", nullable=False, shape={"type": "string"}),
    )
)
