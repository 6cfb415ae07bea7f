"""JSON Schemas (2020-12, as OpenAPI 3.1 uses them) of every request and answer body.

Request schemas are derived from the field declarations (:mod:`lms_jupyter.api.spec`) that
the parsers check, so the contract a client reads is the one the parser enforces: a body
the schema rejects is a 400, and a body the parser rejects breaks a rule the schema states
or one it cannot state (a model that does not exist, a tool name used twice, a token id
outside the vocabulary). Answer schemas hold the fields clients rely on and allow more
(LM Studio adds fields over time).

The route table (:mod:`lms_jupyter.server.routes`) names these schemas per endpoint;
``server/openapi.py`` assembles the document, and ``scripts/gen_ts_types.py`` the sidebar's
TypeScript types from it. Nothing here validates requests: the parsers do.
"""

from __future__ import annotations

from lms_jupyter.api.spec import anthropic as anthropic_spec
from lms_jupyter.api.spec import lmstudio as lms_spec
from lms_jupyter.api.spec import openai as oa_spec
from lms_jupyter.api.spec import responses as responses_spec

REQUESTS = {
    "MessagesRequest": anthropic_spec.MESSAGES.schema,
    "CountTokensRequest": anthropic_spec.COUNT_TOKENS.schema,
    "NativeChatRequest": lms_spec.NATIVE_CHAT.schema,
    "ChatCompletionRequest": oa_spec.CHAT.schema,
    "CompletionRequest": oa_spec.COMPLETION.schema,
    "EmbeddingRequest": oa_spec.EMBEDDING.schema,
    "ResponseCreateRequest": responses_spec.RESPONSE_CREATE.schema,
    "BatchCreateRequest": responses_spec.BATCH_CREATE.schema,
    "LoadRequest": lms_spec.LOAD.schema,
    "EstimateRequest": lms_spec.LOAD.schema,
    "UnloadRequest": lms_spec.UNLOAD.schema,
    "DownloadRequest": lms_spec.DOWNLOAD.schema,
    "PresetCreateRequest": lms_spec.PRESET_CREATE.schema,
    "TokenCreateRequest": lms_spec.TOKEN_CREATE.schema,
}


# -- answers ---------------------------------------------------------------------------------

_STR, _INT, _NUM = {"type": "string"}, {"type": "integer"}, {"type": "number"}
_OBJ, _NULL_STR = {"type": "object"}, {"type": ["string", "null"]}
_ANY_TIME = {"type": ["string", "null"], "description": "ISO 8601, UTC"}


def _obj(required: list[str], **props) -> dict:
    return {"type": "object", "required": required, "properties": props}


ERROR = _obj(
    ["error"],
    error=_obj(["message", "type"], message=_STR, type=_STR, param=_NULL_STR, code=_NULL_STR),
)
USAGE = _obj(
    ["prompt_tokens", "completion_tokens", "total_tokens"],
    prompt_tokens=_INT,
    completion_tokens=_INT,
    total_tokens=_INT,
)
_CHAT_CHOICE = _obj(
    ["index", "message", "finish_reason"],
    index=_INT,
    message=_obj(["role"], role={"const": "assistant"}, content=_NULL_STR),
    finish_reason=_NULL_STR,
)
_TEXT_CHOICE = _obj(
    ["index", "text", "finish_reason"], index=_INT, text=_STR, finish_reason=_NULL_STR
)
_MODEL_ROW = _obj(["id", "object"], id=_STR, object=_STR)
_TOKEN_ROW = _obj(
    ["id", "name", "created_at", "expires_at", "last_used_at"],
    id=_STR,
    name=_STR,
    created_at=_STR,
    expires_at=_ANY_TIME,
    last_used_at=_ANY_TIME,
    expired={"type": "boolean"},
)
_PRESET = _obj(["name", "settings"], name=_STR, identifier=_NULL_STR, settings=_OBJ)
_DOWNLOAD_STATES = ["downloading", "paused", "completed", "failed", "already_downloaded"]


def _list_of(item: dict) -> dict:
    return _obj(["object", "data"], object={"const": "list"}, data={"type": "array", "items": item})


def _completion(object_name: str, choice: dict) -> dict:
    """A chat completion or a text completion: OpenAI's shape, told apart by ``object``."""
    return _obj(
        ["id", "object", "created", "model", "choices"],
        id=_STR,
        object={"const": object_name},
        created=_INT,
        model=_STR,
        usage=USAGE,
        choices={"type": "array", "items": choice},
    )


RESPONSES = {
    "Error": lambda: ERROR,
    "ModelList": lambda: _list_of(_MODEL_ROW),
    "ChatCompletion": lambda: _completion("chat.completion", _CHAT_CHOICE),
    "Completion": lambda: _completion("text_completion", _TEXT_CHOICE),
    "EmbeddingList": lambda: _obj(
        ["object", "data", "model", "usage"],
        object={"const": "list"},
        model=_STR,
        data={
            "type": "array",
            "items": _obj(
                ["object", "embedding", "index"],
                object={"const": "embedding"},
                index=_INT,
                embedding={"type": ["array", "string"]},
            ),
        },
        usage=_obj(["prompt_tokens", "total_tokens"], prompt_tokens=_INT, total_tokens=_INT),
    ),
    "ModelsV0": lambda: _list_of(_MODEL_ROW),
    "ModelV0": lambda: _obj(
        ["id", "object", "type", "state"],
        id=_STR,
        object=_STR,
        type=_STR,
        state={"enum": ["loaded", "not-loaded"]},
    ),
    "PsList": lambda: _list_of(
        _obj(["identifier", "status", "queued"], identifier=_STR, status=_STR, queued=_INT)
    ),
    "ModelsV1": lambda: _obj(
        ["models"],
        models={
            "type": "array",
            "items": _obj(
                ["type", "key", "loaded_instances"],
                type=_STR,
                key=_STR,
                loaded_instances={"type": "array"},
            ),
        },
    ),
    "LoadResult": lambda: {
        "anyOf": [
            _obj(
                ["instance_id", "status"],
                instance_id=_STR,
                status={"const": "loaded"},
                load_time_seconds=_NUM,
                type=_STR,
            ),
            _obj(["model", "estimated_total_bytes"], model=_STR, estimated_total_bytes=_INT),
        ]
    },
    "UnloadResult": lambda: _obj(["instance_id"], instance_id=_STR),
    "Estimate": lambda: _obj(
        ["model", "estimated_total_bytes"], model=_STR, estimated_total_bytes=_INT
    ),
    "DownloadStarted": lambda: _obj(["status"], status={"enum": _DOWNLOAD_STATES}, job_id=_STR),
    "DownloadStatus": lambda: _obj(
        ["job_id", "status"], job_id=_STR, status={"enum": _DOWNLOAD_STATES}
    ),
    "PresetList": lambda: _list_of(_PRESET),
    "Preset": lambda: _PRESET,
    "PresetDeleted": lambda: _obj(["deleted"], deleted=_STR),
    "TokenCreated": lambda: _obj(
        ["id", "name", "token", "created_at", "expires_at"],
        id=_STR,
        name=_STR,
        token={"type": "string", "pattern": "^sk-lmj-"},
        created_at=_STR,
        expires_at=_ANY_TIME,
    ),
    "TokenList": lambda: _list_of(_TOKEN_ROW),
    "TokenDeleted": lambda: _obj(["id", "deleted"], id=_STR, deleted={"const": True}),
    "Message": lambda: _obj(
        ["id", "type", "role", "model", "content", "stop_reason", "usage"],
        id={"type": "string", "pattern": "^msg_"},
        type={"const": "message"},
        role={"const": "assistant"},
        model=_STR,
        content={"type": "array", "items": anthropic_spec.BLOCK},
        stop_reason={"enum": ["end_turn", "max_tokens", "stop_sequence", "tool_use"]},
        stop_sequence=_NULL_STR,
        usage=_obj(
            ["input_tokens", "output_tokens"],
            input_tokens=_INT,
            output_tokens=_INT,
            cache_read_input_tokens=_INT,
        ),
    ),
    "TokenCount": lambda: _obj(["input_tokens"], input_tokens=_INT),
    "NativeChatResult": lambda: _obj(
        ["model_instance_id", "output", "stats"],
        model_instance_id=_STR,
        output={
            "type": "array",
            "items": _obj(["type"], type={"enum": ["message", "reasoning", "tool_call"]}),
        },
        stats=_obj(
            [
                "input_tokens",
                "total_output_tokens",
                "tokens_per_second",
                "time_to_first_token_seconds",
            ],
            input_tokens=_INT,
            total_output_tokens=_INT,
            reasoning_output_tokens=_INT,
            tokens_per_second=_NUM,
            time_to_first_token_seconds=_NUM,
        ),
        response_id=_STR,
    ),
    "OpenAPIDocument": lambda: _obj(["openapi", "paths"], openapi=_STR, paths=_OBJ),
}


def component_schemas() -> dict:
    """Every named schema, for ``components.schemas``."""
    out = {name: build() for name, build in REQUESTS.items()}
    out.update({name: build() for name, build in RESPONSES.items()})
    return out
