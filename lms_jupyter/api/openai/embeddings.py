"""``POST /v1/embeddings`` (and LM Studio's ``/api/v0/embeddings``) as plain Python.

Request: OpenAI's ``model``, ``input`` (a string or an array of strings, or token ids: one
array or an array of arrays, embedded as given after a vocabulary check), ``dimensions``
(Matryoshka truncation, re-normalised), ``encoding_format`` (``float`` or ``base64``:
little-endian float32, as the openai client decodes it), plus ``truncate`` (default false)
and LM Studio's ``ttl``. Response: OpenAI's list of ``embedding`` objects with
``usage.prompt_tokens`` (every token embedded, special tokens included).

An input longer than the model takes is a 400 ``context_length_exceeded`` whose ``param``
names it (``input[3]``). With ``"truncate": true`` it is cut to fit instead, and the response
carries ``"truncated": [3]``: the indices of the inputs that were cut (an empty list when
none were; the field is there only when the request asked for truncation).

The blocking entry point serves the kernel (``lms_jupyter.embed``, ``%lms embed``).
"""

from __future__ import annotations

import asyncio
import base64

from lms_jupyter.api.openai.requests import EmbeddingRequest, embedding_request
from lms_jupyter.api.results import JSONResponse
from lms_jupyter.engine.channel import run_blocking
from lms_jupyter.errors import bad_request


def acquire(api, request: EmbeddingRequest):
    """The loaded instance for the request (JIT-loads it; blocking)."""
    return api.manager.acquire(
        request.model, ttl=request.ttl, context_length=request.context_length
    )


def check_dimensions(model, request: EmbeddingRequest) -> None:
    variant = model.variant
    size = variant.arch_value("embedding_length_out") or variant.arch_value("embedding_length")
    if request.dimensions is not None and size and request.dimensions > size:
        raise bad_request(
            f"'dimensions' must be at most {size} for {model.identifier} "
            f"(got {request.dimensions}).",
            "dimensions",
        )


def response_body(model, request: EmbeddingRequest, result) -> dict:
    """OpenAI's embeddings list for an :class:`~lms_jupyter.engine.local.embedding.EmbeddingResult`."""
    import numpy as np

    from lms_jupyter.engine.vectors import truncate_dimensions

    if request.dimensions is not None and request.dimensions > result.vectors.shape[1]:
        raise bad_request(
            f"'dimensions' must be at most {result.vectors.shape[1]} for "
            f"{model.identifier} (got {request.dimensions}).",
            "dimensions",
        )
    vectors = truncate_dimensions(result.vectors, request.dimensions)
    data = []
    for i, row in enumerate(vectors):
        if request.encoding_format == "base64":
            payload = base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
        else:
            payload = row.astype(np.float64).tolist()
        data.append({"object": "embedding", "embedding": payload, "index": i})
    body = {
        "object": "list",
        "data": data,
        "model": model.identifier,
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
    }
    if request.truncate:
        body["truncated"] = list(result.truncated)
    return body


async def embeddings(api, body) -> JSONResponse:
    """The server's entry point: validation here, the load off the event loop, the
    embedding on the model's worker thread."""
    request = embedding_request(body)
    model = await run_blocking(acquire, api, request)
    check_dimensions(model, request)
    result = await asyncio.wrap_future(model.embed(request.inputs, request.truncate))
    return JSONResponse(response_body(model, request, result))


def embeddings_sync(api, body) -> dict:
    """The kernel's entry point (blocking): the same request and response as over HTTP."""
    request = embedding_request(body)
    model = acquire(api, request)
    check_dimensions(model, request)
    result = model.embed(request.inputs, request.truncate).result()
    return response_body(model, request, result)
