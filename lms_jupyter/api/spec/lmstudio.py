"""LM Studio's REST bodies' fields (``/api/v1/models/load`` and ``estimate``, ``unload``,
``download``, presets, API tokens, the native ``/api/v1/chat``), each declared once.

A field LM Studio's REST API shares with the OpenAI bodies (``model``, ``ttl``,
``context_length``, the sampling fields) is the OpenAI declaration itself
(:mod:`lms_jupyter.api.spec.openai`), so a bound cannot differ between the two surfaces.
"""

from __future__ import annotations

from lms_jupyter.api.spec import openai as oa
from lms_jupyter.api.spec.field import Body, Field
from lms_jupyter.engine.options import MAX_PARALLEL

MAX_NAME_LENGTH = 200  # preset and token names (a preset name becomes a file name)
MAX_TOKEN_LIFETIME = 100 * 365 * 24 * 3600
NATIVE_REASONING = ("off", "low", "medium", "high", "on")
NATIVE_TOOL_CHOICES = ("auto", "required", "none")

# -- loads ----------------------------------------------------------------------------------

IDENTIFIER = Field("identifier", "text")
FLASH_ATTENTION = Field("flash_attention", "boolean", default=None)
GPU = Field(
    "gpu",
    "composite",
    nullable=False,
    shape={
        "anyOf": [
            {"type": ["boolean", "null", "string"]},
            {"type": "number", "minimum": 0, "maximum": 1},
        ]
    },
    description="'off', 'max' or the share of layers (0..1) to offload",
)
FORCE = Field("force", "boolean", default=False)
# Slots ("Max Concurrent Predictions"); read, not documented: the fuzzed document keeps the
# fields it had when this declaration was written.
PARALLEL = Field("parallel", "integer", 1, MAX_PARALLEL, documented=False)
EVAL_BATCH_SIZE = Field("eval_batch_size", "integer", 1, None)  # accepted; fixed at 512
ESTIMATE_ONLY = Field("estimate_only", "boolean", default=False)
ECHO_LOAD_CONFIG = Field("echo_load_config", "boolean", default=False)

LOAD = Body(
    (
        oa.MODEL,
        IDENTIFIER,
        oa.CONTEXT_LENGTH,
        oa.TTL,
        FLASH_ATTENTION,
        GPU,
        FORCE,
        EVAL_BATCH_SIZE,
        ESTIMATE_ONLY,
        ECHO_LOAD_CONFIG,
        PARALLEL,
    )
)
UNLOAD = Body((Field("instance_id", "text", required=True, nullable=False),))
DOWNLOAD = Body(
    (Field("model", "text", required=True, nullable=False), Field("quantization", "text"))
)

# -- presets --------------------------------------------------------------------------------

SYSTEM_PROMPT = Field("system_prompt", "text")
# what a preset may set: request fields, checked by the requests' own declarations
PRESET_FIELDS = (
    *oa.SAMPLING,
    oa.MAX_TOKENS,
    oa.CONTEXT_LENGTH,
    oa.RESPONSE_FORMAT,
    SYSTEM_PROMPT,
    FLASH_ATTENTION,
    oa.STOP,
)
NAME = Field(
    "name",
    "composite",
    nullable=False,
    shape={
        "type": "string",
        "maxLength": MAX_NAME_LENGTH,
        "pattern": r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$",
    },
)
PRESET_CREATE = Body(
    (
        NAME,
        Field(
            "settings",
            "composite",
            shape={"type": "object", "properties": {f.name: {} for f in PRESET_FIELDS}},
        ),
        Field("overwrite", "boolean", default=True),
    ),
    description="{name, settings} with request field names, the same fields flat, or an LM "
    "Studio *.preset.json document (identifier, name, operation, load)",
)

# -- API tokens -----------------------------------------------------------------------------

TOKEN_CREATE = Body(
    (
        Field("name", "composite", required=True, nullable=False, shape=NAME.shape),
        Field(
            "expires_in",
            "number",
            1,
            MAX_TOKEN_LIFETIME,
            description="Seconds until the token expires (none: never)",
        ),
    )
)

# -- the native chat (/api/v1/chat) ---------------------------------------------------------

_SAME_SAMPLING = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed")
_INTEGRATIONS = {
    "type": "array",
    "items": {
        "anyOf": [
            {"type": "string"},
            {
                "type": "object",
                "properties": {
                    "type": {"enum": ["ephemeral_mcp", "mcp", "plugin"]},
                    "server_label": {"type": "string"},
                    "server_url": {"type": "string"},
                    "allowed_tools": {"type": ["array", "object", "null"]},
                    "headers": {"type": ["object", "null"]},
                },
            },
        ]
    },
}
_PREVIOUS = {"type": "string", "minLength": 1}

NATIVE_CHAT = Body(
    (
        oa.MODEL,
        *(f for f in oa.SAMPLING if f.name in _SAME_SAMPLING),
        Field(
            "max_output_tokens",
            "integer",
            -1,
            None,
            extra=oa.MAX_TOKENS.extra,
            description=oa.MAX_TOKENS.description,
        ),
        oa.STREAM,
        Field("store", "boolean", default=True),
        Field(
            "input",
            "composite",
            required=True,
            nullable=False,
            shape={
                "anyOf": [
                    {"type": "string", "pattern": r"\S"},
                    {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "anyOf": [
                                {"type": "string"},
                                {
                                    "type": "object",
                                    "properties": {
                                        "type": {"enum": ["message", "text", "image", "file"]},
                                        "content": {"type": "string"},
                                    },
                                },
                            ]
                        },
                    },
                ]
            },
        ),
        Field("system_prompt", "composite", shape={"type": "string"}),
        Field("reasoning", "enum", enum=NATIVE_REASONING),
        oa.CONTEXT_LENGTH,
        oa.TTL,
        oa.PRESET,
        Field("previous_response_id", "composite", shape=_PREVIOUS),
        Field(
            "thread_id",
            "composite",
            shape=_PREVIOUS,
            description="LM Studio's preview name of previous_response_id",
        ),
        Field("integrations", "composite", shape=_INTEGRATIONS),
        Field(
            "mcp_servers",
            "composite",
            shape=_INTEGRATIONS,
            description="LM Studio's preview name of integrations",
        ),
        Field("tool_choice", "enum", enum=NATIVE_TOOL_CHOICES),
    )
)
