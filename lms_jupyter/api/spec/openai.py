"""The OpenAI-compatible bodies' fields (``/v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings``, and their ``/api/v0`` twins), each declared once.

The readers of :mod:`lms_jupyter.api.fields` and :mod:`lms_jupyter.api.openai.requests`
check these declarations, :mod:`lms_jupyter.api.schemas` turns the bodies into the OpenAPI
document's schemas, and presets check their settings with the same fields
(``PRESET_FIELDS``). LM Studio's additions ride on the same bodies: ``ttl``,
``context_length`` (for a just-in-time load), ``draft_model``, ``preset``.
"""

from __future__ import annotations

from lms_jupyter.api.spec.field import Body, Field, nullable
from lms_jupyter.engine.drafts import DEFAULT_DRAFT_TOKENS, MAX_DRAFT_TOKENS
from lms_jupyter.engine.request import MAX_TOP_LOGPROBS, SamplingParams

MIN_CONTEXT_LENGTH = 64
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600
MAX_EMBEDDING_INPUTS = 2048
TOKEN_ID_PATTERN = r"^-?[0-9]+$"  # logit_bias keys
MAX_BIAS = 100  # logit_bias values: -MAX_BIAS..MAX_BIAS
TOOL_CHOICES = ("none", "auto", "required")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")
FORMAT_TYPES = ("text", "json_object", "json_schema")
ROLES = ("system", "developer", "user", "assistant", "tool")
ENCODING_FORMATS = ("float", "base64")

_DEFAULTS = SamplingParams()


def _sampling(name: str, lo, hi, integer: bool = False, description: str | None = None):
    return Field(
        name,
        "integer" if integer else "number",
        lo,
        hi,
        default=getattr(_DEFAULTS, name),
        description=description,
    )


# -- what every generation body has ---------------------------------------------------------

MODEL = Field(
    "model",
    "text",
    required=True,
    nullable=False,
    description="A model key, publisher/key, key@quantization or a loaded instance's identifier",
    extra={"examples": ["smollm2-135m-instruct"]},
)
SAMPLING = (
    _sampling("temperature", 0, 5),
    _sampling("top_p", 0, 1),
    _sampling("top_k", 0, None, integer=True),
    _sampling("min_p", 0, 1),
    _sampling("repeat_penalty", 0.01, 10),
    _sampling("presence_penalty", -2, 2),
    _sampling("frequency_penalty", -2, 2),
    _sampling("seed", None, None, integer=True),
)
LOGIT_BIAS = Field(
    "logit_bias",
    "composite",
    shape={
        "type": "object",
        "propertyNames": {"pattern": TOKEN_ID_PATTERN},
        "additionalProperties": {"type": "number", "minimum": -MAX_BIAS, "maximum": MAX_BIAS},
    },
)
# None means "until the context is full" (OpenAI omitted, LM Studio's -1)
MAX_TOKENS = Field(
    "max_tokens",
    "integer",
    -1,
    None,
    aliases=("max_completion_tokens", "max_tokens", "max_output_tokens"),
    extra={"not": {"const": 0}},
    description="-1: until the context is full",
)
STOP = Field(
    "stop",
    "composite",
    nullable=False,
    shape={
        "anyOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}},
            {"type": "null"},
        ]
    },
)
STREAM = Field("stream", "boolean", default=False)
INCLUDE_USAGE = Field("include_usage", "boolean", default=False)
STREAM_OPTIONS = Field(
    "stream_options",
    "composite",
    shape={"type": "object", "properties": {"include_usage": INCLUDE_USAGE.schema()}},
)
N = Field("n", "integer", 1, 1)  # one choice: the schema says so; the reader says why
TTL = Field("ttl", "number", 0, MAX_TTL_SECONDS, exclusive_lo=True, unit="seconds")
CONTEXT_LENGTH = Field("context_length", "integer", MIN_CONTEXT_LENGTH, None)
DRAFT_MODEL = Field("draft_model", "text")
DRAFT_MAX_TOKENS = Field(
    "draft_max_tokens", "integer", 1, MAX_DRAFT_TOKENS, default=DEFAULT_DRAFT_TOKENS
)
PRESET = Field("preset", "text")

GENERATION = Body(
    (
        MODEL,
        *SAMPLING,
        LOGIT_BIAS,
        MAX_TOKENS,
        STOP,
        STREAM,
        STREAM_OPTIONS,
        N,
        TTL,
        CONTEXT_LENGTH,
        DRAFT_MODEL,
        DRAFT_MAX_TOKENS,
        PRESET,
    )
)

# -- chat completions -----------------------------------------------------------------------

_TEXT_PART = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"enum": ["text", "input_text", "output_text"]}},
}
_TOOL_CALL = {
    "type": "object",
    "required": ["function"],
    "properties": {
        "function": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}},
        }
    },
}
MESSAGE = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"enum": list(ROLES)},
        "content": {
            "anyOf": [{"type": "string"}, {"type": "null"}, {"type": "array", "items": _TEXT_PART}]
        },
        "tool_calls": nullable({"type": "array", "items": _TOOL_CALL}),
    },
}
_BOOLEAN = nullable({"type": "boolean"})
_FUNCTION: dict = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"\S"},
        "description": nullable({"type": "string"}),
        "parameters": nullable({"type": "object"}),
        "strict": _BOOLEAN,
    },
}
TOOL = {
    "anyOf": [
        {
            "type": "object",
            "required": ["function"],
            "properties": {"type": {"const": "function"}, "function": _FUNCTION},
        },
        {
            "type": "object",
            "required": ["name"],  # the flat (Responses) shape
            "properties": {"type": {"const": "function"}, **_FUNCTION["properties"]},
        },
    ]
}

MESSAGES = Field(
    "messages",
    "composite",
    required=True,
    nullable=False,
    shape={"type": "array", "minItems": 1, "items": MESSAGE},
)
TOOLS = Field("tools", "composite", shape={"type": "array", "items": TOOL})
TOOL_CHOICE_ALTERNATIVES = [
    {"enum": list(TOOL_CHOICES)},
    {"type": "null"},
    {"type": "object", "properties": {"type": {"const": "function"}}},
]
TOOL_CHOICE = Field(
    "tool_choice", "composite", nullable=False, shape={"anyOf": TOOL_CHOICE_ALTERNATIVES}
)
PARALLEL_TOOL_CALLS = Field("parallel_tool_calls", "boolean", default=None)
RESPONSE_FORMAT = Field(
    "response_format",
    "composite",
    shape={
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"enum": list(FORMAT_TYPES)},
            "json_schema": {
                "type": "object",
                "required": ["schema"],
                "properties": {
                    "name": nullable({"type": "string"}),
                    "strict": _BOOLEAN,
                    "schema": {"type": ["object", "string"]},
                },
            },
        },
        "if": {"properties": {"type": {"const": "json_schema"}}},
        "then": {"required": ["type", "json_schema"]},
    },
)
REASONING_EFFORT = Field("reasoning_effort", "enum", enum=REASONING_EFFORTS)
REASONING = Field(
    "reasoning",
    "composite",
    shape={"type": "object", "properties": {"effort": REASONING_EFFORT.schema()}},
)
# Log-probabilities are read, not documented: ``top_logprobs`` needs ``logprobs: true``,
# a rule between two fields that the request schemas here do not state.
CHAT_LOGPROBS = Field("logprobs", "boolean", default=False, documented=False)
TOP_LOGPROBS = Field("top_logprobs", "integer", 0, MAX_TOP_LOGPROBS, documented=False)

CHAT = GENERATION.with_fields(
    MESSAGES,
    TOOLS,
    TOOL_CHOICE,
    PARALLEL_TOOL_CALLS,
    RESPONSE_FORMAT,
    REASONING_EFFORT,
    REASONING,
    CHAT_LOGPROBS,
    TOP_LOGPROBS,
)

# -- text completions -----------------------------------------------------------------------

_NON_EMPTY_STRING = {"type": "string", "minLength": 1}
_TOKEN_IDS = {"type": "array", "minItems": 1, "items": {"type": "integer"}}
PROMPT = Field(
    "prompt",
    "composite",
    required=True,
    nullable=False,
    shape={
        "anyOf": [
            _NON_EMPTY_STRING,
            _TOKEN_IDS,
            {
                "type": "array",
                "minItems": 1,
                "maxItems": 1,
                "items": {"anyOf": [_NON_EMPTY_STRING, _TOKEN_IDS]},
            },
        ]
    },
)
ECHO = Field("echo", "boolean", default=False)
# legacy ``logprobs: N`` (0..20; OpenAI stops at 5); not documented: it excludes ``echo``
COMPLETION_LOGPROBS = Field("logprobs", "integer", 0, MAX_TOP_LOGPROBS, documented=False)
# OpenAI's ``suffix``: the text after the insertion point, kept exactly (whitespace matters in
# code; empty is allowed), so fill-in-the-middle when the GGUF declares FIM tokens
# (read by :func:`lms_jupyter.api.openai.fim.completion_suffix`)
SUFFIX = Field(
    "suffix",
    "composite",
    shape={"type": "string"},
    description="Text after the completion (fill-in-the-middle with the model's "
    "FIM tokens; ignored by models without them)",
)

COMPLETION = GENERATION.with_fields(PROMPT, ECHO, COMPLETION_LOGPROBS, SUFFIX)

# -- embeddings -----------------------------------------------------------------------------

INPUT = Field(
    "input",
    "composite",
    required=True,
    nullable=False,
    shape={
        "anyOf": [
            _NON_EMPTY_STRING,
            {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_EMBEDDING_INPUTS,
                "items": _NON_EMPTY_STRING,
            },
        ]
    },
)
ENCODING_FORMAT = Field("encoding_format", "enum", enum=ENCODING_FORMATS, default="float")
DIMENSIONS = Field("dimensions", "integer", 1, None)
TRUNCATE = Field(
    "truncate",
    "boolean",
    default=False,
    description="Cut inputs longer than the model takes (else a 400)",
)

EMBEDDING = Body((MODEL, INPUT, ENCODING_FORMAT, DIMENSIONS, TTL, CONTEXT_LENGTH, TRUNCATE))
