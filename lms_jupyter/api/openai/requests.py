"""Wire fields become typed requests here, and only here.

Every endpoint's body (and every front that builds one: ``%%chat``, ``%lms load``, the
sidebar through HTTP) goes through one parser that checks each field once, with one set
of bounds, and returns a typed object: :class:`ChatRequest`, :class:`CompletionRequest`,
:class:`EmbeddingRequest`, ``engine.options.LoadRequest``. Below this module nobody
re-checks a field. A bad field is a 400 in OpenAI's error shape naming the field the
client sent (``max_completion_tokens``, not an internal alias); a bad value that came
from a preset says so and names the preset.

What each field is (type, bounds, aliases, default) is declared once in
:mod:`lms_jupyter.api.spec` (why dataclasses and not pydantic models: see
:mod:`lms_jupyter.api.spec.field`); the same declarations give the OpenAPI schemas and the
presets' checks (``_PRESET_READERS``). The single-field readers are in
:mod:`lms_jupyter.api.fields` (shared with every other API's parser); tools, structured
output and reasoning in :mod:`.features`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lms_jupyter.api.fields import (
    ALIASES,
    MAX_EMBEDDING_INPUTS,
    chat_logprobs,
    completion_logprobs,
    context_length,
    gpu,
    max_tokens,
    model_name,
    parallel,
    require_object,
    sampling_params,
    single_choice,
    stop_strings,
    stream_flags,
    text,
    ttl_seconds,
)
from lms_jupyter.api.openai.features import (
    ChatFeatures,
    chat_features,
    check_tool_history,
    response_format_grammar,
)
from lms_jupyter.api.openai.fim import completion_suffix
from lms_jupyter.api.spec import lmstudio as lms_spec
from lms_jupyter.api.spec import openai as spec
from lms_jupyter.api.spec.lmstudio import MAX_NAME_LENGTH, MAX_TOKEN_LIFETIME  # noqa: F401
from lms_jupyter.api.spec.openai import DEFAULT_DRAFT_TOKENS, MAX_DRAFT_TOKENS  # noqa: F401
from lms_jupyter.chat.templates import normalise_messages
from lms_jupyter.engine.options import LoadRequest
from lms_jupyter.engine.request import SamplingParams
from lms_jupyter.errors import APIError, bad_request

# -- typed requests ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DraftRequest:
    """Speculative decoding: which model drafts, and how many tokens it may look ahead."""

    model: str
    max_tokens: int


@dataclass
class GenerationFields:
    """What chat and text completions share: the model, its load, sampling, limits."""

    model: str
    sampling: SamplingParams = field(default_factory=SamplingParams)
    max_tokens: int | None = None  # None: until the context is full
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False
    ttl: float | None = None  # for a JIT load, or to refresh a JIT model's TTL
    context_length: int | None = None  # for a JIT load
    draft: DraftRequest | None = None
    # the body as sent (presets applied): a remote engine gets the fields the client named
    wire: dict = field(default_factory=dict, repr=False, compare=False)
    logprobs: int | None = None  # alternatives per token; None: no log-probabilities


@dataclass
class ChatRequest(GenerationFields):
    messages: list[dict] = field(default_factory=list)  # normalised: roles checked, text flat
    features: ChatFeatures = field(default_factory=ChatFeatures)


@dataclass
class CompletionRequest(GenerationFields):
    prompt: str | list[int] = ""
    echo: bool = False
    suffix: str | None = None  # text after the insertion point (fill-in-the-middle)


@dataclass
class EmbeddingRequest:
    model: str
    inputs: list[str | list[int]]  # texts, or the model's token ids (embedded as given)
    encoding_format: str = "float"
    dimensions: int | None = None
    ttl: float | None = None
    context_length: int | None = None  # for a JIT load
    truncate: bool = False  # cut inputs longer than the model takes (else a 400)


def _draft(body: dict) -> DraftRequest | None:
    name = spec.DRAFT_MODEL.read(body)
    look_ahead = spec.DRAFT_MAX_TOKENS.read(body)
    return None if name is None else DraftRequest(name, look_ahead)


def generation_fields(body: dict) -> dict:
    """The GenerationFields of any generation body (chat, text, Responses)."""
    single_choice(body)
    stream, include_usage = stream_flags(body)
    return dict(
        model=model_name(body),
        sampling=sampling_params(body),
        max_tokens=max_tokens(body),
        stop=stop_strings(body),
        stream=stream,
        include_usage=include_usage,
        ttl=ttl_seconds(body),
        context_length=context_length(body),
        draft=_draft(body),
        wire=body,
    )


def chat_request(body) -> ChatRequest:
    """POST /v1/chat/completions (and /api/v0's) as a typed request."""
    body = require_object(body)
    common = generation_fields(body)
    messages = normalise_messages(body.get("messages"))
    check_tool_history(messages)
    return ChatRequest(
        **common, messages=messages, features=chat_features(body), logprobs=chat_logprobs(body)
    )


def _is_token_ids(value) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    )


def token_ids(value: list, name: str) -> list[int]:
    """A non-empty array of token ids (their range is the model's vocabulary, which the
    engine checks: a 400 naming ``name``)."""
    negative = [t for t in value if t < 0]
    if negative:
        raise bad_request(f"{name} has negative token ids: {negative[:5]}.", name)
    return list(value)


def completion_prompt(value) -> str | list[int]:
    """``prompt``: a non-empty string or an array of token ids, alone or as the only
    element of an array (``["text"]``, ``[[15339, 1917]]``)."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], (str, list)):
        value = value[0]
    if isinstance(value, str) and value:
        return value
    if _is_token_ids(value):
        return token_ids(value, "prompt")
    if (
        isinstance(value, list)
        and len(value) > 1
        and all(isinstance(v, str) or _is_token_ids(v) for v in value)
    ):
        raise bad_request(f"Only one prompt per request is supported (got {len(value)}).", "prompt")
    raise bad_request(
        "'prompt' must be a non-empty string or an array of token ids (or one "
        "of them in an array).",
        "prompt",
    )


def completion_request(body) -> CompletionRequest:
    """POST /v1/completions as a typed request; ``prompt`` may be token ids."""
    body = require_object(body)
    common = generation_fields(body)
    prompt = completion_prompt(body.get("prompt"))
    echo = spec.ECHO.read(body)
    logprobs = completion_logprobs(body)
    if echo and logprobs is not None:
        raise bad_request(
            "'logprobs' with 'echo' would need the prompt's log-probabilities, "
            "which are not computed; send one or the other.",
            "echo",
        )
    return CompletionRequest(
        **common, prompt=prompt, echo=echo, logprobs=logprobs, suffix=completion_suffix(body)
    )


def embedding_inputs(value) -> list[str | list[int]]:
    """``input``: a string, an array of strings, an array of token ids, or an array of
    such arrays (what langchain-openai sends by default)."""
    if isinstance(value, str) or _is_token_ids(value):
        value = [value]
    if not isinstance(value, list) or not value:
        raise bad_request(
            "'input' must be a non-empty string, an array of strings, an array "
            "of token ids or an array of token-id arrays.",
            "input",
        )
    inputs: list[str | list[int]] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            if not item:
                raise bad_request(f"input[{i}] is an empty string.", f"input[{i}]")
            inputs.append(item)
        elif _is_token_ids(item):
            inputs.append(token_ids(item, f"input[{i}]"))
        elif isinstance(item, list) and not item:
            raise bad_request(f"input[{i}] is an empty array of token ids.", f"input[{i}]")
        else:
            raise bad_request(
                f"input[{i}] must be a non-empty string or an array of token ids.", f"input[{i}]"
            )
    if len(inputs) > MAX_EMBEDDING_INPUTS:
        raise bad_request(
            f"At most {MAX_EMBEDDING_INPUTS} inputs per request (got {len(inputs)}).", "input"
        )
    return inputs


def embedding_request(body) -> EmbeddingRequest:
    """POST /v1/embeddings as a typed request."""
    body = require_object(body)
    inputs = embedding_inputs(body.get("input"))
    return EmbeddingRequest(
        model_name(body),
        inputs,
        spec.ENCODING_FORMAT.read(body),
        spec.DIMENSIONS.read(body),
        ttl_seconds(body),
        context_length(body),
        spec.TRUNCATE.read(body),
    )


def load_request(body) -> LoadRequest:
    """LM Studio's load fields (POST /api/v1/models/load, ``lms load``) as a LoadRequest."""
    body = require_object(body)
    flash_attention = lms_spec.FLASH_ATTENTION.read(body)
    lms_spec.EVAL_BATCH_SIZE.read(body)  # accepted; fixed at 512
    lms_spec.ESTIMATE_ONLY.read(body)  # read by the load endpoint; checked for every load body
    lms_spec.ECHO_LOAD_CONFIG.read(body)
    return LoadRequest(
        model=model_name(body),
        identifier=lms_spec.IDENTIFIER.read(body),
        context_length=context_length(body),
        ttl=ttl_seconds(body),
        flash_attention=flash_attention,
        gpu=gpu(body),
        force=lms_spec.FORCE.read(body),
        parallel=parallel(body),
    )


# -- presets ----------------------------------------------------------------------------------

# how each preset setting is checked: the declaration of the request field of the same name
# (LM Studio's preset files hold ``stop`` as a list, checked in preset_settings)
_COMPOSITE_READERS = {"max_tokens": max_tokens, "response_format": response_format_grammar}
_PRESET_READERS = {
    f.name: _COMPOSITE_READERS.get(f.name, f.read)
    for f in lms_spec.PRESET_FIELDS
    if f.name != "stop"
}
PRESET_SETTINGS = tuple(f.name for f in lms_spec.PRESET_FIELDS)


def preset_settings(settings) -> dict:
    """A preset's settings (request field names), checked with the requests' own rules,
    so a preset that saves is a preset that applies."""
    if not isinstance(settings, dict):
        raise bad_request("A preset's settings must be an object.", "settings")
    unknown = sorted(set(settings) - set(PRESET_SETTINGS))
    if unknown:
        raise bad_request(
            f"Unknown preset settings: {', '.join(unknown)}. Known: "
            f"{', '.join(sorted(PRESET_SETTINGS))}.",
            "settings",
        )
    out = {}
    for name, value in settings.items():
        if value is None:
            continue
        if name == "stop":  # LM Studio's files hold a list
            if not (isinstance(value, list) and all(isinstance(s, str) for s in value)):
                raise bad_request("Preset setting 'stop' must be an array of strings.", name)
        else:
            _PRESET_READERS[name]({name: value})
        out[name] = value
    return out


def merge_preset(preset, body: dict) -> dict:
    """The request with ``preset``'s settings wherever the request has none (an alias
    counts: ``max_completion_tokens`` keeps a preset's ``max_tokens`` out). The preset's
    system prompt goes first unless the request has its own."""
    merged = dict(body)
    for name, value in preset.settings.items():
        if name == "system_prompt":
            continue
        if all(merged.get(alias) is None for alias in ALIASES.get(name, (name,))):
            merged[name] = value
    prompt = preset.settings.get("system_prompt")
    messages = merged.get("messages")
    if (
        prompt
        and isinstance(messages, list)
        and not any(
            isinstance(m, dict) and m.get("role") in ("system", "developer") for m in messages
        )
    ):
        merged["messages"] = [{"role": "system", "content": prompt}, *messages]
    return merged


def apply_preset(body, presets) -> dict:
    """``body`` with its ``preset`` filled in (request fields win). Errors in what the
    preset supplied name the preset, not a field the client never sent."""
    body = require_object(body)
    if body.get("preset") is None:
        return body
    if not isinstance(body["preset"], str) or not body["preset"].strip():
        raise bad_request("'preset' must be a non-empty string.", "preset")
    preset = presets.get(body["preset"])
    try:
        preset_settings(preset.settings)
    except APIError as exc:
        raise bad_request(
            f'Preset "{preset.name}" has an invalid setting: {exc.message}', "preset"
        ) from None
    merged = merge_preset(preset, body)
    merged.pop("preset", None)
    return merged


# -- API tokens and names that become files ------------------------------------------------


def short_name(body: dict, name: str = "name") -> str:
    """A required display name: a non-empty string of at most MAX_NAME_LENGTH characters,
    no control characters (NUL included); returned stripped."""
    raw = body.get(name)
    if isinstance(raw, str) and len(raw) > MAX_NAME_LENGTH:
        raise bad_request(
            f"'{name}' must be at most {MAX_NAME_LENGTH} characters (got {len(raw)}).", name
        )
    if isinstance(raw, str) and any(ord(ch) < 32 or ord(ch) == 127 for ch in raw):
        raise bad_request(f"'{name}' must not contain control characters.", name)
    value = text(body, name, required=True)
    assert value is not None  # required: a missing name is a 400 above, never None
    return value


@dataclass(frozen=True)
class TokenCreateRequest:
    name: str
    expires_in: float | None = None  # seconds; None: never expires


def token_create_request(body) -> TokenCreateRequest:
    """POST /api/v1/tokens: ``{"name", "expires_in"?}`` (seconds)."""
    body = require_object(body)
    expires_in = lms_spec.TOKEN_CREATE["expires_in"].read(body)
    return TokenCreateRequest(short_name(body), expires_in)
