"""Validate request fields and turn them into generation settings.

Every check raises an OpenAI-style 400 naming the offending field, so bad input never
reaches llama.cpp (where it would crash or hang) and never becomes a 500.
"""
from __future__ import annotations

from ..errors import bad_request
from ..engine.generation import SamplingParams

_MISSING = object()


def require_object(body) -> dict:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def number(body: dict, name: str, lo=None, hi=None, default=_MISSING, integer=False):
    value = body.get(name, default)
    if value is _MISSING or value is None:
        return None if default is _MISSING else default
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        if integer and isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise bad_request(f"'{name}' must be {kind}.", name)
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


def sampling_params(body: dict, defaults: SamplingParams | None = None) -> SamplingParams:
    d = defaults or SamplingParams()
    return SamplingParams(
        temperature=number(body, "temperature", 0, 5, d.temperature),
        top_p=number(body, "top_p", 0, 1, d.top_p),
        top_k=number(body, "top_k", 0, None, d.top_k, integer=True),
        min_p=number(body, "min_p", 0, 1, d.min_p),
        repeat_penalty=number(body, "repeat_penalty", 0.01, 10, d.repeat_penalty),
        presence_penalty=number(body, "presence_penalty", -2, 2, d.presence_penalty),
        frequency_penalty=number(body, "frequency_penalty", -2, 2, d.frequency_penalty),
        seed=number(body, "seed", None, None, d.seed, integer=True),
        logit_bias=logit_bias(body.get("logit_bias")),
    )


def logit_bias(value) -> dict[int, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request("'logit_bias' must map token ids to numbers.", "logit_bias")
    out: dict[int, float] = {}
    for key, bias in value.items():
        try:
            token = int(key)
        except (TypeError, ValueError):
            raise bad_request(f"logit_bias key {key!r} is not a token id.", "logit_bias") from None
        if isinstance(bias, bool) or not isinstance(bias, (int, float)) or not -100 <= bias <= 100:
            raise bad_request(f"logit_bias[{key}] must be a number between -100 and 100.",
                              "logit_bias")
        out[token] = float(bias)
    return out


def max_tokens(body: dict) -> int | None:
    """None means 'until the context is full' (OpenAI omitted, LM Studio's -1)."""
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        if body.get(name) is not None:
            value = number(body, name, -1, None, integer=True)
            if value == 0:
                raise bad_request(f"'{name}' must be positive, or -1 for no limit.", name)
            return None if value == -1 else value
    return None


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


def ttl_seconds(body: dict) -> float | None:
    return number(body, "ttl", 1, None)


def context_length(body: dict) -> int | None:
    """Context length for a JIT load (LM Studio's /api/v1/chat field; presets set it)."""
    return number(body, "context_length", 64, None, integer=True)


def single_choice(body: dict) -> None:
    n = number(body, "n", 1, None, integer=True)
    if n not in (None, 1):
        raise bad_request("Only n=1 is supported.", "n")


def model_name(body: dict) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad_request("'model' is required and must be a non-empty string.", "model")
    return model.strip()
