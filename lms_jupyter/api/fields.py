"""One wire field at a time: the readers every endpoint's parser shares.

Each reader takes the request body and returns the checked value or raises a 400 in OpenAI's
error shape naming the field as the client spelled it. What a field is (type, bounds,
aliases, default) is its declaration in :mod:`lms_jupyter.api.spec` (read here, and by the
OpenAPI description in :mod:`lms_jupyter.api.schemas`), so a bound is declared once. The
typed requests built from these readers are in :mod:`lms_jupyter.api.openai.requests` (and
each API's own request module).
"""

from __future__ import annotations

import re

from lms_jupyter.api.spec import lmstudio as lms_spec
from lms_jupyter.api.spec import openai as spec
from lms_jupyter.api.spec import responses as responses_spec

# the primitives every reader runs (re-exported: the APIs' parsers call them by these names)
from lms_jupyter.api.spec.field import MISSING, boolean, number, require_object, text  # noqa: F401
from lms_jupyter.api.spec.openai import (  # noqa: F401
    MAX_BIAS,
    MAX_EMBEDDING_INPUTS,
    MAX_TTL_SECONDS,
    MIN_CONTEXT_LENGTH,
    REASONING_EFFORTS,
    TOKEN_ID_PATTERN,
    TOOL_CHOICES,
)
from lms_jupyter.engine.request import SamplingParams
from lms_jupyter.errors import bad_request
from lms_jupyter.models.memory import parse_gpu_offload

_MISSING = MISSING
# Fields that mean the same setting; the first one present wins, in this order.
ALIASES = {"max_tokens": spec.MAX_TOKENS.aliases}
_TOKEN_ID = re.compile(r"-?[0-9]+")  # matched whole (fullmatch), as TOKEN_ID_PATTERN is


# -- single fields --------------------------------------------------------------------------


def model_name(body: dict) -> str:
    return spec.MODEL.read(body)


def logit_bias(value) -> dict[int, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request("'logit_bias' must map token ids to numbers.", "logit_bias")
    out: dict[int, float] = {}
    for key, bias in value.items():
        if not _TOKEN_ID.fullmatch(str(key)):
            raise bad_request(f"logit_bias key {str(key)[:40]!r} is not a token id.", "logit_bias")
        token = int(key)
        if (
            isinstance(bias, bool)
            or not isinstance(bias, (int, float))
            or not -MAX_BIAS <= bias <= MAX_BIAS
        ):
            raise bad_request(
                f"logit_bias[{key}] must be a number between -{MAX_BIAS} and {MAX_BIAS}.",
                "logit_bias",
            )
        out[token] = float(bias)
    return out


# (name, lo, hi, default, integer) of each sampling field, for the hottest reader
_SAMPLING = tuple((f.name, f.lo, f.hi, f.default, f.integer) for f in spec.SAMPLING)
# name: (lowest, highest, integer), derived from the declarations (for older callers)
SAMPLING_BOUNDS = {f.name: (f.lo, f.hi, f.integer) for f in spec.SAMPLING}


def sampling_params(body: dict) -> SamplingParams:
    values = {
        name: number(body, name, lo, hi, default, integer)
        for name, lo, hi, default, integer in _SAMPLING
    }
    return SamplingParams(**values, logit_bias=logit_bias(body.get("logit_bias")))


def max_tokens(body: dict) -> int | None:
    """None means 'until the context is full' (OpenAI omitted, LM Studio's -1). Every
    alias sent is checked; the first one present wins."""
    chosen = _MISSING
    declared = spec.MAX_TOKENS
    for name in declared.aliases:
        if body.get(name) is not None:
            value = declared.read(body, name)
            if value == 0:
                raise bad_request(f"'{name}' must be positive, or -1 for no limit.", name)
            if chosen is _MISSING:
                chosen = value
    return None if chosen in (_MISSING, -1) else chosen


def stop_strings(body: dict) -> list[str]:
    value = body.get("stop")
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return [s for s in value if s]
    raise bad_request("'stop' must be a string or an array of strings.", "stop")


def stream_flags(body: dict) -> tuple[bool, bool]:
    """(stream, include_usage)."""
    stream = spec.STREAM.read(body)
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not isinstance(options, dict):
        raise bad_request("'stream_options' must be an object.", "stream_options")
    return stream, spec.INCLUDE_USAGE.read(options)


def chat_logprobs(body: dict) -> int | None:
    """Chat's ``logprobs: true`` with ``top_logprobs: N`` (0..20) as the engine's number of
    alternatives; None when log-probabilities are off."""
    wanted = spec.CHAT_LOGPROBS.read(body)
    top = spec.TOP_LOGPROBS.read(body)
    if top is not None and not wanted:
        raise bad_request("'top_logprobs' needs 'logprobs': true.", "top_logprobs")
    return (top or 0) if wanted else None


def completion_logprobs(body: dict) -> int | None:
    """Text completions' legacy ``logprobs: N``: log-probabilities with N alternatives
    (0..20; OpenAI stops at 5)."""
    return spec.COMPLETION_LOGPROBS.read(body)


def ttl_seconds(body: dict) -> float | None:
    """Idle seconds before the model unloads (LM Studio's ``ttl``): a positive number."""
    return spec.TTL.read(body)


def context_length(body: dict) -> int | None:
    """Context length for a load (LM Studio's load field; presets and JIT loads set it)."""
    return spec.CONTEXT_LENGTH.read(body)


def parallel(body: dict) -> int | None:
    """Slots of a load (LM Studio's ``parallel``, "Max Concurrent Predictions")."""
    return lms_spec.PARALLEL.read(body)


def single_choice(body: dict) -> None:
    n = number(body, "n", spec.N.lo, None, integer=True)  # above 1: a message of its own
    if n not in (None, 1):
        raise bad_request("Only n=1 is supported.", "n")


def gpu(body: dict) -> float | None:
    value = body.get("gpu")
    return None if value is None else parse_gpu_offload(value)


def metadata(body: dict) -> dict:
    """OpenAI's ``metadata`` (Responses, Batches): at most 16 string values, keys up to 64
    characters, values up to 512; {} when absent."""
    value = body.get("metadata")
    if value is None:
        return {}
    limits = responses_spec
    if (
        not isinstance(value, dict)
        or len(value) > limits.MAX_METADATA_KEYS
        or not all(
            isinstance(k, str)
            and len(k) <= limits.MAX_METADATA_KEY
            and isinstance(v, str)
            and len(v) <= limits.MAX_METADATA_VALUE
            for k, v in value.items()
        )
    ):
        raise bad_request(
            f"'metadata' must be an object of at most {limits.MAX_METADATA_KEYS} "
            f"string values (keys up to {limits.MAX_METADATA_KEY} characters, "
            f"values up to {limits.MAX_METADATA_VALUE}).",
            "metadata",
        )
    return dict(value)
