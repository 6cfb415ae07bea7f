"""JSON Schemas (2020-12, as OpenAPI 3.1 uses them) of every request and answer body.

Request schemas are built from :mod:`.requests`' own tables (``SAMPLING_BOUNDS``,
``ALIASES``, ``MIN_CONTEXT_LENGTH``, ``TOOL_CHOICES``, ...), so the contract a client
reads is the one the parser enforces: a body the schema rejects is a 400, and a body
the parser rejects breaks a rule the schema states or one it cannot state (a model that
does not exist, a tool name used twice, a token id outside the vocabulary). Answer
schemas hold the fields clients rely on and allow more (LM Studio adds fields over time).

The route table (:mod:`lms_jupyter.server.routes`) names these schemas per endpoint;
``server/openapi.py`` assembles the document. Nothing here is used to validate requests:
:mod:`.requests` stays the only place that does.
"""
from __future__ import annotations

from lms_jupyter.api import fields as api_fields
from lms_jupyter.api.openai import requests as rq

NON_BLANK = r"\S"  # text(): a string with something besides whitespace


def nullable(schema: dict) -> dict:
    """``schema`` or null (the parsers treat a null field as absent)."""
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def _number(lo=None, hi=None, integer=False, exclusive_lo=False) -> dict:
    schema: dict = {"type": "integer" if integer else "number"}
    if lo is not None:
        schema["exclusiveMinimum" if exclusive_lo else "minimum"] = lo
    if hi is not None:
        schema["maximum"] = hi
    return nullable(schema)


BOOLEAN = {"type": ["boolean", "null"]}
TEXT = {"type": "string", "pattern": NON_BLANK}
OPTIONAL_TEXT = nullable(TEXT)
MODEL = {**TEXT, "description": "A model key, publisher/key, key@quantization or a loaded "
         "instance's identifier", "examples": ["smollm2-135m-instruct"]}
TTL = _number(0, api_fields.MAX_TTL_SECONDS, exclusive_lo=True)
CONTEXT_LENGTH = _number(api_fields.MIN_CONTEXT_LENGTH, None, integer=True)
NAME = {"type": "string", "maxLength": rq.MAX_NAME_LENGTH,
        "pattern": r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$"}


def _sampling() -> dict:
    props = {name: _number(lo, hi, integer) for name, (lo, hi, integer)
             in api_fields.SAMPLING_BOUNDS.items()}
    props["logit_bias"] = nullable({
        "type": "object", "propertyNames": {"pattern": api_fields.TOKEN_ID_PATTERN},
        "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100}})
    for alias in api_fields.ALIASES["max_tokens"]:
        props[alias] = {**_number(-1, None, integer=True), "not": {"const": 0},
                        "description": "-1: until the context is full"}
    return props


STOP = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}},
                  {"type": "null"}]}


def _generation_fields() -> dict:
    return {
        "model": MODEL, **_sampling(), "stop": STOP, "stream": BOOLEAN,
        "stream_options": nullable({"type": "object",
                                    "properties": {"include_usage": BOOLEAN}}),
        "n": _number(1, 1, integer=True), "ttl": TTL, "context_length": CONTEXT_LENGTH,
        "draft_model": OPTIONAL_TEXT,
        "draft_max_tokens": _number(1, rq.MAX_DRAFT_TOKENS, integer=True),
        "preset": OPTIONAL_TEXT,
    }


_TEXT_PART = {"type": "object", "required": ["type"],
              "properties": {"type": {"enum": ["text", "input_text", "output_text"]}}}
_TOOL_CALL = {"type": "object", "required": ["function"], "properties": {
    "function": {"type": "object", "required": ["name"],
                 "properties": {"name": {"type": "string"}}}}}
MESSAGE = {
    "type": "object", "required": ["role"],
    "properties": {
        "role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": {"anyOf": [{"type": "string"}, {"type": "null"},
                              {"type": "array", "items": _TEXT_PART}]},
        "tool_calls": nullable({"type": "array", "items": _TOOL_CALL}),
    },
}
_FUNCTION: dict = {"type": "object", "required": ["name"], "properties": {
    "name": TEXT, "description": nullable({"type": "string"}),
    "parameters": nullable({"type": "object"}), "strict": BOOLEAN}}
TOOL = {"anyOf": [
    {"type": "object", "required": ["function"],
     "properties": {"type": {"const": "function"}, "function": _FUNCTION}},
    {"type": "object", "required": ["name"],  # the flat (Responses) shape
     "properties": {"type": {"const": "function"}, **_FUNCTION["properties"]}},
]}
TOOL_CHOICE = {"anyOf": [
    {"enum": list(api_fields.TOOL_CHOICES)}, {"type": "null"},
    {"type": "object", "properties": {"type": {"const": "function"}}},
]}
RESPONSE_FORMAT = nullable({
    "type": "object", "required": ["type"],
    "properties": {
        "type": {"enum": ["text", "json_object", "json_schema"]},
        "json_schema": {"type": "object", "required": ["schema"], "properties": {
            "name": nullable({"type": "string"}), "strict": BOOLEAN,
            "schema": {"type": ["object", "string"]}}},
    },
    "if": {"properties": {"type": {"const": "json_schema"}}},
    "then": {"required": ["type", "json_schema"]},
})


def chat_request() -> dict:
    return {"type": "object", "required": ["model", "messages"], "properties": {
        **_generation_fields(),
        "messages": {"type": "array", "minItems": 1, "items": MESSAGE},
        "tools": nullable({"type": "array", "items": TOOL}),
        "tool_choice": TOOL_CHOICE, "parallel_tool_calls": BOOLEAN,
        "response_format": RESPONSE_FORMAT,
        "reasoning_effort": nullable({"enum": list(api_fields.REASONING_EFFORTS)}),
        "reasoning": nullable({"type": "object", "properties": {
            "effort": nullable({"enum": list(api_fields.REASONING_EFFORTS)})}}),
    }}


_NON_EMPTY_STRING = {"type": "string", "minLength": 1}
_TOKEN_IDS = {"type": "array", "minItems": 1, "items": {"type": "integer"}}


def completion_request() -> dict:
    prompt = {"anyOf": [_NON_EMPTY_STRING, _TOKEN_IDS,
                        {"type": "array", "minItems": 1, "maxItems": 1,
                         "items": {"anyOf": [_NON_EMPTY_STRING, _TOKEN_IDS]}}]}
    return {"type": "object", "required": ["model", "prompt"], "properties": {
        **_generation_fields(), "prompt": prompt, "echo": BOOLEAN,
        "suffix": nullable({"type": "string"})}}


def embedding_request() -> dict:
    return {"type": "object", "required": ["model", "input"], "properties": {
        "model": MODEL,
        "input": {"anyOf": [_NON_EMPTY_STRING, {
            "type": "array", "minItems": 1, "maxItems": api_fields.MAX_EMBEDDING_INPUTS,
            "items": _NON_EMPTY_STRING}]},
        "encoding_format": nullable({"enum": ["float", "base64"]}),
        "dimensions": _number(1, None, integer=True), "ttl": TTL,
        "context_length": CONTEXT_LENGTH, "truncate": BOOLEAN,
    }}


GPU = {"anyOf": [{"type": ["boolean", "null", "string"]},
                 {"type": "number", "minimum": 0, "maximum": 1}],
       "description": "'off', 'max' or the share of layers (0..1) to offload"}


def load_request() -> dict:
    return {"type": "object", "required": ["model"], "properties": {
        "model": MODEL, "identifier": OPTIONAL_TEXT, "context_length": CONTEXT_LENGTH,
        "ttl": TTL, "flash_attention": BOOLEAN, "gpu": GPU, "force": BOOLEAN,
        "eval_batch_size": _number(1, None, integer=True), "estimate_only": BOOLEAN,
        "echo_load_config": BOOLEAN}}


def preset_create_request() -> dict:
    settings: dict[str, dict] = {name: {} for name in rq.PRESET_SETTINGS}
    return {"type": "object", "properties": {
        "name": NAME, "settings": nullable({"type": "object", "properties": settings}),
        "overwrite": BOOLEAN},
        "description": "{name, settings} with request field names, the same fields flat, "
                       "or an LM Studio *.preset.json document (identifier, name, operation, "
                       "load)"}


_BLOCK = {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}
_TEXT_BLOCK = {"type": "object", "required": ["type", "text"],
               "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}


def messages_request(counting: bool = False) -> dict:
    """Anthropic's ``POST /v1/messages`` (``counting``: ``/v1/messages/count_tokens``)."""
    props = {
        "model": MODEL,
        "messages": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["role", "content"], "properties": {
                "role": {"enum": ["user", "assistant"]},
                "content": {"anyOf": [{"type": "string"},
                                      {"type": "array", "items": _BLOCK}]}}}},
        "system": {"anyOf": [{"type": "string"}, {"type": "null"},
                             {"type": "array", "items": _TEXT_BLOCK}]},
        "tools": nullable({"type": "array", "items": {
            "type": "object", "required": ["name", "input_schema"], "properties": {
                "type": {"enum": ["custom", None]}, "name": TEXT,
                "description": nullable({"type": "string"}),
                "input_schema": {"type": "object"}}}}),
        "tool_choice": nullable({"type": "object", "required": ["type"], "properties": {
            "type": {"enum": ["auto", "any", "tool", "none"]}, "name": {"type": "string"},
            "disable_parallel_tool_use": BOOLEAN}}),
        "stop_sequences": nullable({"type": "array", "maxItems": 16,
                                    "items": {"type": "string"}}),
        "temperature": _number(0, 1), "top_p": _number(0, 1),
        "top_k": _number(0, None, integer=True),
        "metadata": nullable({"type": "object"}),
        "thinking": nullable({"type": "object", "required": ["type"], "properties": {
            "type": {"enum": ["enabled", "disabled", "adaptive"]},
            "budget_tokens": _number(1, None, integer=True)}}),
        "ttl": TTL, "context_length": CONTEXT_LENGTH,
    }
    required = ["model", "messages"]
    if not counting:
        props["max_tokens"] = {"type": "integer", "minimum": 1}
        props["stream"] = BOOLEAN
        required.append("max_tokens")
    return {"type": "object", "required": required, "properties": props}


_NATIVE_SAMPLING = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed",
                    "max_output_tokens")
_INTEGRATIONS = nullable({"type": "array", "items": {"anyOf": [
    {"type": "string"},
    {"type": "object", "properties": {
        "type": {"enum": ["ephemeral_mcp", "mcp", "plugin"]},
        "server_label": {"type": "string"}, "server_url": {"type": "string"},
        "allowed_tools": {"type": ["array", "object", "null"]},
        "headers": {"type": ["object", "null"]}}}]}})


def native_chat_request() -> dict:
    """LM Studio 0.4's ``POST /api/v1/chat``."""
    sampling = {k: v for k, v in _sampling().items() if k in _NATIVE_SAMPLING}
    previous = nullable({"type": "string", "minLength": 1})
    return {"type": "object", "required": ["model", "input"], "properties": {
        "model": MODEL, **sampling, "stream": BOOLEAN, "store": BOOLEAN,
        "input": {"anyOf": [TEXT, {"type": "array", "minItems": 1, "items": {
            "anyOf": [{"type": "string"}, {"type": "object", "properties": {
                "type": {"enum": ["message", "text", "image", "file"]},
                "content": {"type": "string"}}}]}}]},
        "system_prompt": nullable({"type": "string"}),
        "reasoning": nullable({"enum": ["off", "low", "medium", "high", "on"]}),
        "context_length": CONTEXT_LENGTH, "ttl": TTL, "preset": OPTIONAL_TEXT,
        "previous_response_id": previous, "thread_id": previous,
        "integrations": _INTEGRATIONS, "mcp_servers": _INTEGRATIONS,
        "tool_choice": nullable({"enum": ["auto", "required", "none"]}),
    }}


REQUESTS = {
    "MessagesRequest": messages_request,
    "CountTokensRequest": lambda: messages_request(counting=True),
    "NativeChatRequest": native_chat_request,
    "ChatCompletionRequest": chat_request,
    "CompletionRequest": completion_request,
    "EmbeddingRequest": embedding_request,
    "LoadRequest": load_request,
    "EstimateRequest": load_request,
    "UnloadRequest": lambda: {"type": "object", "required": ["instance_id"],
                              "properties": {"instance_id": TEXT}},
    "DownloadRequest": lambda: {"type": "object", "required": ["model"], "properties": {
        "model": TEXT, "quantization": OPTIONAL_TEXT}},
    "PresetCreateRequest": preset_create_request,
    "TokenCreateRequest": lambda: {"type": "object", "required": ["name"], "properties": {
        "name": NAME, "expires_in": _number(1, rq.MAX_TOKEN_LIFETIME)}},
}


# -- answers ---------------------------------------------------------------------------------

_STR, _INT, _NUM = {"type": "string"}, {"type": "integer"}, {"type": "number"}
_OBJ, _NULL_STR = {"type": "object"}, {"type": ["string", "null"]}
_ANY_TIME = {"type": ["string", "null"], "description": "ISO 8601, UTC"}


def _obj(required: list[str], **props) -> dict:
    return {"type": "object", "required": required, "properties": props}


ERROR = _obj(["error"], error=_obj(["message", "type"], message=_STR, type=_STR,
                                   param=_NULL_STR, code=_NULL_STR))
USAGE = _obj(["prompt_tokens", "completion_tokens", "total_tokens"],
             prompt_tokens=_INT, completion_tokens=_INT, total_tokens=_INT)
_CHAT_CHOICE = _obj(["index", "message", "finish_reason"], index=_INT,
                    message=_obj(["role"], role={"const": "assistant"},
                                 content=_NULL_STR),
                    finish_reason=_NULL_STR)
_TEXT_CHOICE = _obj(["index", "text", "finish_reason"], index=_INT, text=_STR,
                    finish_reason=_NULL_STR)
_MODEL_ROW = _obj(["id", "object"], id=_STR, object=_STR)
_TOKEN_ROW = _obj(["id", "name", "created_at", "expires_at", "last_used_at"], id=_STR,
                  name=_STR, created_at=_STR, expires_at=_ANY_TIME, last_used_at=_ANY_TIME,
                  expired={"type": "boolean"})
_PRESET = _obj(["name", "settings"], name=_STR, identifier=_NULL_STR, settings=_OBJ)
_DOWNLOAD_STATES = ["downloading", "paused", "completed", "failed", "already_downloaded"]


def _list_of(item: dict) -> dict:
    return _obj(["object", "data"], object={"const": "list"},
                data={"type": "array", "items": item})


RESPONSES = {
    "Error": lambda: ERROR,
    "ModelList": lambda: _list_of(_MODEL_ROW),
    "ChatCompletion": lambda: _obj(["id", "object", "created", "model", "choices"],
                                   id=_STR, object={"const": "chat.completion"},
                                   created=_INT, model=_STR, usage=USAGE,
                                   choices={"type": "array", "items": _CHAT_CHOICE}),
    "Completion": lambda: _obj(["id", "object", "created", "model", "choices"],
                               id=_STR, object={"const": "text_completion"}, created=_INT,
                               model=_STR, usage=USAGE,
                               choices={"type": "array", "items": _TEXT_CHOICE}),
    "EmbeddingList": lambda: _obj(["object", "data", "model", "usage"],
                                  object={"const": "list"}, model=_STR, data={
                                      "type": "array", "items": _obj(
                                          ["object", "embedding", "index"],
                                          object={"const": "embedding"}, index=_INT,
                                          embedding={"type": ["array", "string"]})},
                                  usage=_obj(["prompt_tokens", "total_tokens"],
                                             prompt_tokens=_INT, total_tokens=_INT)),
    "ModelsV0": lambda: _list_of(_MODEL_ROW),
    "ModelV0": lambda: _obj(["id", "object", "type", "state"], id=_STR, object=_STR,
                            type=_STR, state={"enum": ["loaded", "not-loaded"]}),
    "PsList": lambda: _list_of(_obj(["identifier", "status", "queued"], identifier=_STR,
                                    status=_STR, queued=_INT)),
    "ModelsV1": lambda: _obj(["models"], models={"type": "array", "items": _obj(
        ["type", "key", "loaded_instances"], type=_STR, key=_STR,
        loaded_instances={"type": "array"})}),
    "LoadResult": lambda: {"anyOf": [
        _obj(["instance_id", "status"], instance_id=_STR, status={"const": "loaded"},
             load_time_seconds=_NUM, type=_STR),
        _obj(["model", "estimated_total_bytes"], model=_STR, estimated_total_bytes=_INT)]},
    "UnloadResult": lambda: _obj(["instance_id"], instance_id=_STR),
    "Estimate": lambda: _obj(["model", "estimated_total_bytes"], model=_STR,
                             estimated_total_bytes=_INT),
    "DownloadStarted": lambda: _obj(["status"], status={"enum": _DOWNLOAD_STATES},
                                    job_id=_STR),
    "DownloadStatus": lambda: _obj(["job_id", "status"], job_id=_STR,
                                   status={"enum": _DOWNLOAD_STATES}),
    "PresetList": lambda: _list_of(_PRESET),
    "Preset": lambda: _PRESET,
    "PresetDeleted": lambda: _obj(["deleted"], deleted=_STR),
    "TokenCreated": lambda: _obj(["id", "name", "token", "created_at", "expires_at"],
                                 id=_STR, name=_STR,
                                 token={"type": "string", "pattern": "^sk-lmj-"},
                                 created_at=_STR, expires_at=_ANY_TIME),
    "TokenList": lambda: _list_of(_TOKEN_ROW),
    "TokenDeleted": lambda: _obj(["id", "deleted"], id=_STR, deleted={"const": True}),
    "Message": lambda: _obj(["id", "type", "role", "model", "content", "stop_reason",
                             "usage"], id={"type": "string", "pattern": "^msg_"},
                            type={"const": "message"}, role={"const": "assistant"},
                            model=_STR, content={"type": "array", "items": _BLOCK},
                            stop_reason={"enum": ["end_turn", "max_tokens", "stop_sequence",
                                                  "tool_use"]},
                            stop_sequence=_NULL_STR,
                            usage=_obj(["input_tokens", "output_tokens"], input_tokens=_INT,
                                       output_tokens=_INT,
                                       cache_read_input_tokens=_INT)),
    "TokenCount": lambda: _obj(["input_tokens"], input_tokens=_INT),
    "NativeChatResult": lambda: _obj(
        ["model_instance_id", "output", "stats"], model_instance_id=_STR,
        output={"type": "array", "items": _obj(["type"], type={
            "enum": ["message", "reasoning", "tool_call"]})},
        stats=_obj(["input_tokens", "total_output_tokens", "tokens_per_second",
                    "time_to_first_token_seconds"], input_tokens=_INT,
                   total_output_tokens=_INT, reasoning_output_tokens=_INT,
                   tokens_per_second=_NUM, time_to_first_token_seconds=_NUM),
        response_id=_STR),
    "OpenAPIDocument": lambda: _obj(["openapi", "paths"], openapi=_STR, paths=_OBJ),
}


def component_schemas() -> dict:
    """Every named schema, for ``components.schemas``."""
    out = {name: build() for name, build in REQUESTS.items()}
    out.update({name: build() for name, build in RESPONSES.items()})
    return out
