"""The Anthropic Messages API's body (``POST /v1/messages`` and ``count_tokens``), each
field declared once.

:mod:`lms_jupyter.api.anthropic.request` reads these declarations and translates the body
into the OpenAI-shaped chat body (whose own declarations then check it again, as for every
chat request); :mod:`lms_jupyter.api.schemas` turns :data:`MESSAGES` into the OpenAPI
schema. ``temperature`` is Anthropic's own field (0..1, not OpenAI's 0..5).
"""

from __future__ import annotations

from lms_jupyter.api.spec import openai as oa
from lms_jupyter.api.spec.field import Body, Field, nullable

ROLES = ("user", "assistant")
TOOL_CHOICES = ("auto", "any", "tool", "none")
THINKING_TYPES = ("enabled", "disabled", "adaptive")
MAX_STOP_SEQUENCES = 16
DEFAULT_THINKING_BUDGET = 4096

_BOOLEAN = nullable({"type": "boolean"})
BLOCK = {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}
_TEXT_BLOCK = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
}

TEMPERATURE = Field("temperature", "number", 0, 1)
MAX_TOKENS = Field("max_tokens", "integer", 1, None, required=True, nullable=False)
BUDGET_TOKENS = Field("budget_tokens", "integer", 1, None, default=DEFAULT_THINKING_BUDGET)
STREAM = oa.STREAM

# count_tokens' body: the fields of a message but max_tokens and stream
COUNT_TOKENS = Body(
    (
        oa.MODEL,
        Field(
            "messages",
            "composite",
            required=True,
            nullable=False,
            shape={
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["role", "content"],
                    "properties": {
                        "role": {"enum": list(ROLES)},
                        "content": {
                            "anyOf": [{"type": "string"}, {"type": "array", "items": BLOCK}]
                        },
                    },
                },
            },
        ),
        Field(
            "system",
            "composite",
            nullable=False,
            shape={
                "anyOf": [
                    {"type": "string"},
                    {"type": "null"},
                    {"type": "array", "items": _TEXT_BLOCK},
                ]
            },
        ),
        Field(
            "tools",
            "composite",
            shape={
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "input_schema"],
                    "properties": {
                        "type": {"enum": ["custom", None]},
                        "name": {"type": "string", "pattern": r"\S"},
                        "description": nullable({"type": "string"}),
                        "input_schema": {"type": "object"},
                    },
                },
            },
        ),
        Field(
            "tool_choice",
            "composite",
            shape={
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"enum": list(TOOL_CHOICES)},
                    "name": {"type": "string"},
                    "disable_parallel_tool_use": _BOOLEAN,
                },
            },
        ),
        Field(
            "stop_sequences",
            "composite",
            shape={"type": "array", "maxItems": MAX_STOP_SEQUENCES, "items": {"type": "string"}},
        ),
        TEMPERATURE,
        Field("top_p", "number", 0, 1),
        Field("top_k", "integer", 0, None),
        Field("metadata", "composite", shape={"type": "object"}),
        Field(
            "thinking",
            "composite",
            shape={
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"enum": list(THINKING_TYPES)},
                    "budget_tokens": Field("budget_tokens", "integer", 1, None).schema(),
                },
            },
        ),
        oa.TTL,
        oa.CONTEXT_LENGTH,
    )
)
MESSAGES = COUNT_TOKENS.with_fields(MAX_TOKENS, STREAM)
