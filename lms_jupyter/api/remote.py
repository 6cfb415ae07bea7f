"""Preparing a request for a remote model: the typed request back into the engine's wire
body, and the ``Prepared`` that :class:`~.drive.Generation` runs.

A local model needs its prompt rendered here; a remote engine renders its own, so
preparing for it means writing the typed request as an OpenAI body for the upstream id.
What the client sent explicitly goes along (sampling fields it named, ``response_format``,
tools, ``seed``, ...); defaults stay the engine's. LM Studio-kind engines also get
LM Studio's own fields (``ttl``, ``draft_model``, ``preset``). The answer comes back as
chunks that :class:`~.decode.ChunkOutput` turns into the usual typed events.
"""

from __future__ import annotations

from lms_jupyter.api.openai.decode import ChunkOutput
from lms_jupyter.api.openai.requests import ChatRequest, CompletionRequest, GenerationFields
from lms_jupyter.api.prepared import Prepared
from lms_jupyter.engine.remote.models import RemoteModel, RemoteRequest
from lms_jupyter.engine.request import SamplingParams

_DEFAULTS = SamplingParams()
# fields relayed as sent, when the client sent them and no typed field covers them
_PASS_THROUGH = ("response_format", "logprobs", "top_logprobs", "user", "metadata")
_LMSTUDIO_ONLY = ("preset", "draft_max_tokens", "truncate")


def _common(model: RemoteModel, request: GenerationFields) -> dict:
    wire = getattr(request, "wire", None) or {}
    body: dict = {
        "model": model.upstream_id,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    sampling = request.sampling
    for name in (
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
        "seed",
    ):
        value = getattr(sampling, name)
        if name in wire or value != getattr(_DEFAULTS, name):
            body[name] = value
    if sampling.logit_bias:
        body["logit_bias"] = {str(k): v for k, v in sampling.logit_bias.items()}
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.stop:
        body["stop"] = list(request.stop)
    for name in _PASS_THROUGH:
        if wire.get(name) is not None:
            body[name] = wire[name]
    if model.kind == "lmstudio":
        if request.ttl is not None:
            body["ttl"] = request.ttl
        if request.draft is not None:
            body["draft_model"] = request.draft.model
        for name in _LMSTUDIO_ONLY:
            if wire.get(name) is not None:
                body[name] = wire[name]
    return body


def chat_body(model: RemoteModel, request: ChatRequest) -> dict:
    """The upstream ``/v1/chat/completions`` body (always streamed upstream)."""
    body = _common(model, request)
    body["messages"] = [dict(m) for m in request.messages]
    features = request.features
    settings = features.tools
    if settings.tools:
        body["tools"] = settings.tools
        body["tool_choice"] = settings.choice
        if settings.parallel is not None:
            body["parallel_tool_calls"] = settings.parallel
    if features.reasoning_effort is not None:
        body["reasoning_effort"] = features.reasoning_effort
    return body


def completion_body(model: RemoteModel, request: CompletionRequest) -> dict:
    body = _common(model, request)
    body["prompt"] = request.prompt
    return body


def prepare_remote_chat(
    model: RemoteModel, request: ChatRequest, reasoning_field: str = "both"
) -> Prepared:
    relay = RemoteRequest("/v1/chat/completions", chat_body(model, request))
    return Prepared(
        model,
        relay,
        lambda: ChunkOutput(reasoning_field),
        stream=request.stream,
        include_usage=request.include_usage,
    )


def prepare_remote_completion(model: RemoteModel, request: CompletionRequest) -> Prepared:
    relay = RemoteRequest("/v1/completions", completion_body(model, request), text=True)
    echo = request.prompt if request.echo and isinstance(request.prompt, str) else ""
    return Prepared(
        model, relay, echo=echo, stream=request.stream, include_usage=request.include_usage
    )
