"""One wire field at a time: the readers and bounds every endpoint's parser shares.

Each reader takes the request body and a field name and returns the checked value or raises a
400 in OpenAI's error shape naming the field as the client spelled it. The bounds are tables
(``SAMPLING_BOUNDS``, ``ALIASES``), which the OpenAPI description (:mod:`lms_jupyter.api.schemas`)
reads too, so a bound is declared once. The typed requests built from these readers are in
:mod:`lms_jupyter.api.openai.requests` (and each API's own request module).
"""
from __future__ import annotations

import math
import re
from typing import Literal, cast, overload

from lms_jupyter.engine.request import MAX_TOP_LOGPROBS, SamplingParams
from lms_jupyter.engine.options import MAX_PARALLEL
from lms_jupyter.errors import bad_request
from lms_jupyter.models.memory import parse_gpu_offload


_MISSING = object()

# Fields that mean the same setting; the first one present wins, in this order.
ALIASES = {"max_tokens": ("max_completion_tokens", "max_tokens", "max_output_tokens")}

# name: (lowest, highest, integer)
SAMPLING_BOUNDS = {
    "temperature": (0, 5, False),
    "top_p": (0, 1, False),
    "top_k": (0, None, True),
    "min_p": (0, 1, False),
    "repeat_penalty": (0.01, 10, False),
    "presence_penalty": (-2, 2, False),
    "frequency_penalty": (-2, 2, False),
    "seed": (None, None, True),
}
TOKEN_ID_PATTERN = r"^-?[0-9]+$"  # logit_bias keys
_TOKEN_ID = re.compile(r"-?[0-9]+")  # matched whole (fullmatch), as the pattern is
MIN_CONTEXT_LENGTH = 64
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600
MAX_EMBEDDING_INPUTS = 2048
TOOL_CHOICES = ("none", "auto", "required")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")


# -- single fields --------------------------------------------------------------------------

def require_object(body) -> dict:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def number(body: dict, name: str, lo=None, hi=None, default=_MISSING, integer=False):
    """``body[name]`` as a number within bounds; missing or null gives ``default``."""
    value = body.get(name, default)
    if value is _MISSING or value is None:
        return None if default is _MISSING else default
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        if integer and isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise bad_request(f"'{name}' must be {kind}.", name)
    if not math.isfinite(value):
        raise bad_request(f"'{name}' must be a finite number.", name)
    if lo is not None and value < lo or hi is not None and value > hi:
        bounds = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise bad_request(f"'{name}' must be {bounds} (got {value}).", name)
    return value


def boolean(body: dict, name: str, default: bool = False) -> bool:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_request(f"'{name}' must be a boolean.", name)
    return value


@overload
def text(body: dict, name: str, required: Literal[True]) -> str: ...
@overload
def text(body: dict, name: str, required: bool = False) -> str | None: ...
def text(body: dict, name: str, required: bool = False) -> str | None:
    """A non-empty string (stripped), or None when absent and not required."""
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        needed = "is required and must" if required else "must"
        raise bad_request(f"'{name}' {needed} be a non-empty string.", name)
    return value.strip()


def model_name(body: dict) -> str:
    return text(body, "model", required=True)


def logit_bias(value) -> dict[int, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request("'logit_bias' must map token ids to numbers.", "logit_bias")
    out: dict[int, float] = {}
    for key, bias in value.items():
        if not _TOKEN_ID.fullmatch(str(key)):
            raise bad_request(f"logit_bias key {str(key)[:40]!r} is not a token id.",
                              "logit_bias")
        token = int(key)
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not -100 <= bias <= 100:
            raise bad_request(f"logit_bias[{key}] must be a number between -100 and 100.",
                              "logit_bias")
        out[token] = float(bias)
    return out


def sampling_params(body: dict) -> SamplingParams:
    defaults = SamplingParams()
    values = {name: number(body, name, lo, hi, getattr(defaults, name), integer)
              for name, (lo, hi, integer) in SAMPLING_BOUNDS.items()}
    return SamplingParams(**values, logit_bias=logit_bias(body.get("logit_bias")))


def max_tokens(body: dict) -> int | None:
    """None means 'until the context is full' (OpenAI omitted, LM Studio's -1). Every
    alias sent is checked; the first one present wins."""
    chosen: object = _MISSING
    for name in ALIASES["max_tokens"]:
        if body.get(name) is not None:
            value = number(body, name, -1, None, integer=True)
            if value == 0:
                raise bad_request(f"'{name}' must be positive, or -1 for no limit.", name)
            if chosen is _MISSING:
                chosen = value
    return None if chosen in (_MISSING, -1) else cast(int, chosen)  # number(integer=True)


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
    stream = boolean(body, "stream")
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not isinstance(options, dict):
        raise bad_request("'stream_options' must be an object.", "stream_options")
    return stream, boolean(options, "include_usage")


def chat_logprobs(body: dict) -> int | None:
    """Chat's ``logprobs: true`` with ``top_logprobs: N`` (0..20) as the engine's number of
    alternatives; None when log-probabilities are off."""
    wanted = boolean(body, "logprobs")
    top = number(body, "top_logprobs", 0, MAX_TOP_LOGPROBS, integer=True)
    if top is not None and not wanted:
        raise bad_request("'top_logprobs' needs 'logprobs': true.", "top_logprobs")
    return (top or 0) if wanted else None


def completion_logprobs(body: dict) -> int | None:
    """Text completions' legacy ``logprobs: N``: log-probabilities with N alternatives
    (0..20; OpenAI stops at 5)."""
    return number(body, "logprobs", 0, MAX_TOP_LOGPROBS, integer=True)


def ttl_seconds(body: dict) -> float | None:
    """Idle seconds before the model unloads (LM Studio's ``ttl``): a positive number."""
    value = number(body, "ttl", None, MAX_TTL_SECONDS)
    if value is not None and value <= 0:
        raise bad_request(f"'ttl' must be a positive number of seconds (got {value}).", "ttl")
    return value


def context_length(body: dict) -> int | None:
    """Context length for a load (LM Studio's load field; presets and JIT loads set it)."""
    return number(body, "context_length", MIN_CONTEXT_LENGTH, None, integer=True)


def parallel(body: dict) -> int | None:
    """Slots of a load (LM Studio's ``parallel``, "Max Concurrent Predictions")."""
    return number(body, "parallel", 1, MAX_PARALLEL, integer=True)


def single_choice(body: dict) -> None:
    n = number(body, "n", 1, None, integer=True)
    if n not in (None, 1):
        raise bad_request("Only n=1 is supported.", "n")


def gpu(body: dict) -> float | None:
    value = body.get("gpu")
    return None if value is None else parse_gpu_offload(value)


