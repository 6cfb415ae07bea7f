"""Every HTTP route of the extension, and the API call each one serves.

A route names its callables directly (passed to the handler through Tornado's
``initialize``, as jupyter-server-proxy does), so reading this table tells what each URL
does; the handlers only move JSON and SSE between Tornado and :mod:`lms_jupyter.api`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lms_jupyter.api.anthropic import anthropic_error
from lms_jupyter.api.lmstudio.rest import v1_error_body
from lms_jupyter.errors import APIError


@dataclass(frozen=True)
class Endpoint:
    """One method of one route: ``call(services, *path_args[, body][, channel=...])``.

    ``request``/``response`` name the JSON Schemas of :mod:`lms_jupyter.api.schemas` that
    the OpenAPI document (``{base}lms/openapi.json``) gives the body and the answer.
    """

    call: Callable[..., Any]
    doc: str  # the contract, one line (also the OpenAPI summary)
    body: bool = False  # reads a JSON object body
    blocking: bool = False  # runs on a thread (loads, estimates)
    stream: bool = False  # may answer with SSE; gets a channel it can cancel
    scoped: bool = True  # a scoped API token may call it (False: a full Jupyter identity)
    request: str | None = None
    response: str | None = None
    upload: bool = False  # reads a multipart form (``api.files_batches.requests.Upload``)
    query: bool = False  # gets the query string as a dict (list pagination)


def openai_error(error: APIError) -> dict:
    return error.to_dict()


OPENAI = {"error_body": openai_error}
LMSTUDIO_V1 = {"error_body": v1_error_body}
ANTHROPIC = {"error_body": anthropic_error}


def _routes(prefix: str) -> list[tuple[str, dict, dict]]:
    v1, v0, api1 = f"/{prefix}/v1", f"/{prefix}/api/v0", f"/{prefix}/api/v1"
    generation: dict[str, Any] = dict(body=True, stream=True)
    return [
        # OpenAI-compatible
        (
            rf"{v1}/models/?",
            {
                "get": Endpoint(
                    lambda s: s.openai.list_models(),
                    "List the models a request may name (loaded ones; every model with JIT)",
                    response="ModelList",
                )
            },
            OPENAI,
        ),
        (
            rf"{v1}/models/(?P<model_id>.+)",
            {
                "get": Endpoint(
                    lambda s, model_id: s.openai.retrieve_model(model_id),
                    "One model a request may name (ids may hold / and @); 404 model_not_found",
                )
            },
            OPENAI,
        ),
        (
            rf"{v1}/chat/completions/?",
            {
                "post": Endpoint(
                    lambda s, body, channel: s.openai.chat_completions(body, channel),
                    "Chat completion, streamed as SSE with stream=true",
                    **generation,
                    request="ChatCompletionRequest",
                    response="ChatCompletion",
                )
            },
            OPENAI,
        ),
        (
            rf"{v1}/completions/?",
            {
                "post": Endpoint(
                    lambda s, body, channel: s.openai.completions(body, channel),
                    "Text completion of a raw prompt, streamed as SSE with stream=true",
                    **generation,
                    request="CompletionRequest",
                    response="Completion",
                )
            },
            OPENAI,
        ),
        (
            rf"{v1}/responses/?",
            {
                "post": Endpoint(
                    lambda s, body, channel: s.responses.create(body, channel),
                    "Create a response (Responses API: stored turns, function and MCP tools), "
                    "streamed as SSE events with stream=true",
                    **generation,
                )
            },
            OPENAI,
        ),
        (
            rf"{v1}/responses/(?P<response_id>[^/]+)/?",
            {
                "get": Endpoint(
                    lambda s, response_id: s.responses.retrieve(response_id), "A stored response"
                ),
                "delete": Endpoint(
                    lambda s, response_id: s.responses.delete(response_id),
                    "Delete a stored response",
                ),
            },
            OPENAI,
        ),
        # the Anthropic Messages API (Anthropic's error objects; x-api-key accepted)
        (
            rf"{v1}/messages/?",
            {
                "post": Endpoint(
                    lambda s, body, channel: s.anthropic.messages(body, channel),
                    "Anthropic Messages API: a message, streamed as Anthropic's SSE events with "
                    "stream=true",
                    **generation,
                    request="MessagesRequest",
                    response="Message",
                )
            },
            ANTHROPIC,
        ),
        (
            rf"{v1}/messages/count_tokens/?",
            {
                "post": Endpoint(
                    lambda s, body: s.anthropic.count_tokens(body),
                    "Anthropic Messages API: the prompt's token count",
                    body=True,
                    request="CountTokensRequest",
                    response="TokenCount",
                )
            },
            ANTHROPIC,
        ),
        (
            rf"{v1}/embeddings/?",
            {
                "post": Endpoint(
                    lambda s, body: s.openai.embeddings(body),
                    "Embedding vectors for one or more inputs",
                    body=True,
                    request="EmbeddingRequest",
                    response="EmbeddingList",
                )
            },
            OPENAI,
        ),
        # OpenAI Files and Batch API (low priority beside interactive requests)
        (
            rf"{v1}/files/?",
            {
                "get": Endpoint(
                    lambda s, query: s.files.list(query),
                    "Uploaded files and batch output files",
                    query=True,
                ),
                "post": Endpoint(
                    lambda s, upload: s.files.upload(upload),
                    "Upload a file (multipart: file, purpose=batch for JSONL)",
                    upload=True,
                    blocking=True,
                ),
            },
            OPENAI,
        ),
        (
            rf"{v1}/files/(?P<file_id>[^/]+)/?",
            {
                "get": Endpoint(lambda s, file_id: s.files.retrieve(file_id), "One file"),
                "delete": Endpoint(lambda s, file_id: s.files.delete(file_id), "Delete a file"),
            },
            OPENAI,
        ),
        (
            rf"{v1}/files/(?P<file_id>[^/]+)/content/?",
            {
                "get": Endpoint(
                    lambda s, file_id: s.files.content(file_id),
                    "A file's content (batch input, output or error JSONL)",
                )
            },
            OPENAI,
        ),
        (
            rf"{v1}/batches/?",
            {
                "get": Endpoint(
                    lambda s, query: s.batches.list(query), "Batches, newest first", query=True
                ),
                "post": Endpoint(
                    lambda s, body: s.batches.create(body),
                    "Create a batch from an uploaded JSONL file",
                    body=True,
                    blocking=True,
                ),
            },
            OPENAI,
        ),
        (
            rf"{v1}/batches/(?P<batch_id>[^/]+)/?",
            {
                "get": Endpoint(
                    lambda s, batch_id: s.batches.retrieve(batch_id),
                    "A batch's status, request counts and output files",
                )
            },
            OPENAI,
        ),
        (
            rf"{v1}/batches/(?P<batch_id>[^/]+)/cancel/?",
            {
                "post": Endpoint(
                    lambda s, batch_id: s.batches.cancel(batch_id),
                    "Cancel a batch (running requests stop within a token)",
                )
            },
            OPENAI,
        ),
        # LM Studio REST v0
        (
            rf"{v0}/models/?",
            {
                "get": Endpoint(
                    lambda s: s.lmstudio.models_v0(),
                    "Every model on disk with its state",
                    response="ModelsV0",
                )
            },
            OPENAI,
        ),
        (
            rf"{v0}/models/(?P<model_id>.+)",
            {
                "get": Endpoint(
                    lambda s, model_id: s.lmstudio.model_v0(model_id),
                    "One model",
                    response="ModelV0",
                )
            },
            OPENAI,
        ),
        (
            rf"{v0}/ps/?",
            {
                "get": Endpoint(
                    lambda s: s.lmstudio.ps(),
                    "Loaded instances and loads in progress",
                    response="PsList",
                )
            },
            OPENAI,
        ),
        (
            rf"{v0}/engines/?",
            {
                "get": Endpoint(
                    lambda s: s.lmstudio.engines(),
                    "Remote engines: replicas, health, requests in flight",
                )
            },
            OPENAI,
        ),
        (
            rf"{v0}/chat/completions/?",
            {
                "post": Endpoint(
                    lambda s, body, channel: s.lmstudio.v0.chat_completions(body, channel),
                    "Chat completion with LM Studio's stats, model_info and runtime",
                    **generation,
                    request="ChatCompletionRequest",
                    response="ChatCompletion",
                )
            },
            OPENAI,
        ),
        (
            rf"{v0}/completions/?",
            {
                "post": Endpoint(
                    lambda s, body, channel: s.lmstudio.v0.completions(body, channel),
                    "Text completion with LM Studio's stats, model_info and runtime",
                    **generation,
                    request="CompletionRequest",
                    response="Completion",
                )
            },
            OPENAI,
        ),
        (
            rf"{v0}/embeddings/?",
            {
                "post": Endpoint(
                    lambda s, body: s.lmstudio.v0.embeddings(body),
                    "Embedding vectors (as /v1/embeddings)",
                    body=True,
                    request="EmbeddingRequest",
                    response="EmbeddingList",
                )
            },
            OPENAI,
        ),
        (
            rf"{v0}/presets/?",
            {
                "get": Endpoint(
                    lambda s: s.lmstudio.list_presets(), "Saved presets", response="PresetList"
                ),
                "post": Endpoint(
                    lambda s, body: s.lmstudio.create_preset(body),
                    "Save a preset (settings, or an LM Studio preset file)",
                    body=True,
                    request="PresetCreateRequest",
                    response="Preset",
                ),
            },
            OPENAI,
        ),
        (
            rf"{v0}/presets/(?P<name>[^/]+)/?",
            {
                "get": Endpoint(
                    lambda s, name: s.lmstudio.get_preset(name), "One preset", response="Preset"
                ),
                "delete": Endpoint(
                    lambda s, name: s.lmstudio.delete_preset(name),
                    "Delete a preset",
                    response="PresetDeleted",
                ),
            },
            OPENAI,
        ),
        # LM Studio REST v1 (model management)
        (
            rf"{api1}/models/?",
            {
                "get": Endpoint(
                    lambda s: s.lmstudio.models_v1(),
                    "Every model with its loaded instances and their config",
                    response="ModelsV1",
                )
            },
            LMSTUDIO_V1,
        ),
        (
            rf"{api1}/models/load/?",
            {
                "post": Endpoint(
                    lambda s, body: s.lmstudio.load_v1(body),
                    "Load a model (or estimate its memory with estimate_only)",
                    body=True,
                    blocking=True,
                    request="LoadRequest",
                    response="LoadResult",
                )
            },
            LMSTUDIO_V1,
        ),
        (
            rf"{api1}/models/unload/?",
            {
                "post": Endpoint(
                    lambda s, body: s.lmstudio.unload_v1(body),
                    "Unload an instance",
                    body=True,
                    blocking=True,
                    request="UnloadRequest",
                    response="UnloadResult",
                )
            },
            LMSTUDIO_V1,
        ),
        (
            rf"{api1}/models/estimate/?",
            {
                "post": Endpoint(
                    lambda s, body: s.lmstudio.estimate(body),
                    "Memory a load would need, from the GGUF header",
                    body=True,
                    blocking=True,
                    request="EstimateRequest",
                    response="Estimate",
                )
            },
            LMSTUDIO_V1,
        ),
        (
            rf"{api1}/models/download/?",
            {
                "post": Endpoint(
                    lambda s, body: s.downloads.start(body),
                    "Start downloading a model from the Hugging Face Hub (a job)",
                    body=True,
                    blocking=True,
                    request="DownloadRequest",
                    response="DownloadStarted",
                )
            },
            LMSTUDIO_V1,
        ),
        (
            rf"{api1}/models/download/status/(?P<job_id>[^/]+)/?",
            {
                "get": Endpoint(
                    lambda s, job_id: s.downloads.status(job_id),
                    "A download job's status, bytes, speed and error",
                    response="DownloadStatus",
                )
            },
            LMSTUDIO_V1,
        ),
        (
            rf"{api1}/chat/?",
            {
                "post": Endpoint(
                    lambda s, body, channel: s.lmstudio_chat.chat(body, channel),
                    "LM Studio 0.4 native chat: stateful (response_id, previous_response_id), MCP "
                    "integrations, named SSE events with stream=true",
                    **generation,
                    request="NativeChatRequest",
                    response="NativeChatResult",
                )
            },
            LMSTUDIO_V1,
        ),
        # scoped API tokens: managed with the Jupyter identity only
        (
            rf"{api1}/tokens/?",
            {
                "get": Endpoint(
                    lambda s: s.tokens.list(),
                    "Scoped API tokens (name, id, created, last used, expiry)",
                    blocking=True,
                    scoped=False,
                    response="TokenList",
                ),
                "post": Endpoint(
                    lambda s, body: s.tokens.create(body),
                    "Create a scoped API token; its secret is in this answer only",
                    body=True,
                    blocking=True,
                    scoped=False,
                    request="TokenCreateRequest",
                    response="TokenCreated",
                ),
            },
            LMSTUDIO_V1,
        ),
        (
            rf"{api1}/tokens/(?P<token_id>[^/]+)/?",
            {
                "delete": Endpoint(
                    lambda s, token_id: s.tokens.revoke(token_id),
                    "Revoke a scoped API token at once",
                    blocking=True,
                    scoped=False,
                    response="TokenDeleted",
                )
            },
            LMSTUDIO_V1,
        ),
        # this API's own description
        (
            rf"/{prefix}/openapi\.json",
            {
                "get": Endpoint(
                    lambda s: s.openapi,
                    "This API's OpenAPI 3.1 document",
                    response="OpenAPIDocument",
                )
            },
            OPENAI,
        ),
    ]


def lms_handlers(prefix: str) -> list[tuple]:
    """Tornado handler specs for every route under ``/{prefix}``, ending with a catch-all
    that answers unknown paths with a JSON 404 in OpenAI's error shape."""
    from lms_jupyter.server.handlers import EndpointHandler, NotFoundHandler
    from lms_jupyter.server.log_handlers import LogStreamHandler
    from lms_jupyter.server.model_events_handler import ModelEventsHandler

    specs: list[tuple] = [
        (pattern, EndpointHandler, {"endpoints": endpoints, **options})
        for pattern, endpoints, options in _routes(prefix)
    ]
    # lms log stream: an SSE feed from the log bus, not an API call
    specs.append((rf"/{prefix}/api/v0/logs/stream/?", LogStreamHandler))
    specs.append((rf"/{prefix}/api/v0/events/?", ModelEventsHandler))  # model events (SSE)
    specs.append((rf"/{prefix}(/.*)?", NotFoundHandler, OPENAI))
    return specs


def route_table(prefix: str = "lms") -> list[tuple[str, dict]]:
    """(pattern, {method: Endpoint}) for every route (documentation, OpenAPI)."""
    return [(pattern, endpoints) for pattern, endpoints, _options in _routes(prefix)]
