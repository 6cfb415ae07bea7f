"""Wire fields become typed requests here, and only here.

Every endpoint's body (and every front that builds one: ``%%chat``, ``%lms load``, the
sidebar through HTTP) goes through one parser that checks each field once, with one set
of bounds, and returns a typed object: :class:`ChatRequest`, :class:`CompletionRequest`,
:class:`EmbeddingRequest`, ``engine.options.LoadRequest``. Below this module nobody
re-checks a field. A bad field is a 400 in OpenAI's error shape naming the field the
client sent (``max_completion_tokens``, not an internal alias); a bad value that came
from a preset says so and names the preset.

Why dataclasses and not pydantic models: the errors must be OpenAI's, one message per
field in words a client understands, naming the client's own spelling of aliased fields
(``max_tokens``/``max_completion_tokens``/``max_output_tokens``) and JSON paths such as
``messages[2].tool_calls``; the checks depend on each other (``tool_choice`` on
``tools``; presets fill gaps first); and importing the package must stay cheap. A
pydantic model would need a custom validator per field and an error translator, and
would still leave half of the rules outside the model. Field types and bounds are
tables here (``SAMPLING_BOUNDS``, ``ALIASES``), which is also what the API's OpenAPI
description reads.

Why one module over 500 lines: it is the single place every wire field is checked, by
design; splitting it by endpoint would scatter shared fields again.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from lms_jupyter.api.fim import completion_suffix

from ..chat.grammar import UnsupportedSchemaError, grammar_for_response_format
from ..chat.templates import normalise_messages
from ..engine.generation import SamplingParams
from ..engine.logprobs import MAX_TOP_LOGPROBS
from ..engine.options import MAX_PARALLEL, LoadRequest
from ..errors import APIError, bad_request
from ..models.memory import parse_gpu_offload

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
    chosen = _MISSING
    for name in ALIASES["max_tokens"]:
        if body.get(name) is not None:
            value = number(body, name, -1, None, integer=True)
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


# -- tools, structured output, reasoning ------------------------------------------------------

@dataclass
class ToolSettings:
    """The validated tool fields: ``tools`` is None when the request offers none."""

    tools: list[dict] | None = None
    choice: str | dict = "auto"  # "none" | "auto" | "required" | {"type": "function", ...}
    parallel: bool | None = None  # parallel_tool_calls as sent (None: not sent)

    @property
    def offered(self) -> bool:
        """Whether the model is told about the tools and its calls are parsed."""
        return bool(self.tools) and self.choice != "none"

    @property
    def forced(self) -> bool:
        """Whether a grammar must make the model call a tool."""
        return self.offered and self.choice != "auto"

    @property
    def forced_name(self) -> str | None:
        return self.choice["function"]["name"] if isinstance(self.choice, dict) else None


def function_tool(tool, i: int) -> dict:
    """One tool in the nested chat-completions shape. The flat Responses shape
    (``{"type": "function", "name": ...}``) is accepted, and its errors name its own
    fields (``tools[0].name``, not ``tools[0].function.name``)."""
    where = f"tools[{i}]"
    if not isinstance(tool, dict):
        raise bad_request(f"{where} must be an object.", where)
    kind = tool.get("type", "function")
    if kind != "function":
        raise bad_request(f"{where}.type must be 'function' (got {kind!r}).", f"{where}.type")
    function, fields = tool.get("function"), f"{where}.function"
    if function is None and "name" in tool:  # {"type": "function", "name": ..., ...}
        function, fields = {k: v for k, v in tool.items() if k != "type"}, where
    if not isinstance(function, dict):
        raise bad_request(f"{where}.function must be an object.", f"{where}.function")
    name = function.get("name")
    if not isinstance(name, str) or not name.strip():
        raise bad_request(f"{fields}.name must be a non-empty string.", f"{fields}.name")
    for key, kind_name, kind_type in (("description", "a string", str),
                                      ("parameters", "a JSON schema object", dict),
                                      ("strict", "a boolean", bool)):
        value = function.get(key)
        if value is not None and not isinstance(value, kind_type):
            raise bad_request(f"{fields}.{key} must be {kind_name}.", f"{fields}.{key}")
    return {"type": "function", "function": dict(function)}


def tools(value) -> list[dict] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise bad_request("'tools' must be an array of tool objects.", "tools")
    return unique_tools([function_tool(tool, i) for i, tool in enumerate(value)])


def unique_tools(checked: list[dict]) -> list[dict] | None:
    """Checked tools (nested shape), refused when two share a name."""
    names = [tool["function"]["name"] for tool in checked]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise bad_request(f"Tool names must be unique (repeated: {', '.join(duplicates)}).",
                          "tools")
    return checked or None


def tool_choice(value, offered: list[dict] | None) -> str | dict:
    names = [tool["function"]["name"] for tool in offered or []]
    if value is None:
        return "auto"
    if isinstance(value, str):
        if value not in TOOL_CHOICES:
            raise bad_request("'tool_choice' must be 'none', 'auto', 'required' or "
                              f"{{\"type\": \"function\", \"function\": {{\"name\": ...}}}} "
                              f"(got {value!r}).", "tool_choice")
        if value == "required" and not names:
            raise bad_request("tool_choice 'required' needs a non-empty 'tools' array.",
                              "tool_choice")
        return value
    if not isinstance(value, dict) or value.get("type", "function") != "function":
        raise bad_request("'tool_choice' must be a string or "
                          "{\"type\": \"function\", \"function\": {\"name\": ...}}.",
                          "tool_choice")
    function = value.get("function")
    name = function.get("name") if isinstance(function, dict) else value.get("name")
    if not isinstance(name, str) or not name:
        raise bad_request("'tool_choice.function.name' must be a non-empty string.",
                          "tool_choice")
    if name not in names:
        known = ", ".join(names) if names else "none"
        raise bad_request(f"tool_choice names the function {name!r}, which is not in 'tools' "
                          f"(tools: {known}).", "tool_choice")
    return {"type": "function", "function": {"name": name}}


def tool_settings(body: dict) -> ToolSettings:
    offered = tools(body.get("tools"))
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise bad_request("'parallel_tool_calls' must be a boolean.", "parallel_tool_calls")
    return ToolSettings(offered, tool_choice(body.get("tool_choice"), offered), parallel)


def response_format_grammar(body: dict) -> str | None:
    """The GBNF that enforces ``response_format``; None for plain text."""
    value = body.get("response_format")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request("'response_format' must be an object such as {\"type\": \"text\"}.",
                          "response_format")
    kind = value.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        raise bad_request("'response_format.type' must be 'text', 'json_object' or "
                          f"'json_schema' (got {kind!r}).", "response_format")
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict):
            raise bad_request("'response_format.json_schema' must be an object with 'name' and "
                              "'schema'.", "response_format")
        if spec.get("name") is not None and not isinstance(spec.get("name"), str):
            raise bad_request("'response_format.json_schema.name' must be a string.",
                              "response_format")
        if spec.get("strict") is not None and not isinstance(spec.get("strict"), bool):
            raise bad_request("'response_format.json_schema.strict' must be a boolean.",
                              "response_format")
        if not isinstance(spec.get("schema"), (dict, str)):
            raise bad_request("'response_format.json_schema.schema' must be a JSON schema "
                              "object.", "response_format")
    try:
        return grammar_for_response_format(value)
    except UnsupportedSchemaError as exc:
        raise bad_request(f"Unsupported response_format schema: {exc}.",
                          "response_format") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise bad_request(f"Invalid response_format: {exc}.", "response_format") from None


def reasoning_effort(body: dict) -> str | None:
    """``reasoning_effort`` (chat completions) or ``reasoning.effort`` (Responses style)."""
    effort, param = body.get("reasoning_effort"), "reasoning_effort"
    if effort is None and body.get("reasoning") is not None:
        reasoning = body["reasoning"]
        if not isinstance(reasoning, dict):
            raise bad_request("'reasoning' must be an object such as {\"effort\": \"low\"}.",
                              "reasoning")
        effort, param = reasoning.get("effort"), "reasoning.effort"
    if effort is None:
        return None
    if not isinstance(effort, str) or effort not in REASONING_EFFORTS:
        raise bad_request(f"'{param}' must be one of {', '.join(REASONING_EFFORTS)} "
                          f"(got {str(effort)[:40]!r}).", param)
    return effort


@dataclass
class ChatFeatures:
    """Tools, structured output and reasoning effort of one chat request."""

    tools: ToolSettings = field(default_factory=ToolSettings)
    format_grammar: str | None = None  # GBNF enforcing response_format
    reasoning_effort: str | None = None


def chat_features(body: dict) -> ChatFeatures:
    return ChatFeatures(tool_settings(body), response_format_grammar(body),
                        reasoning_effort(body))


def check_tool_history(messages: list[dict]) -> None:
    """Assistant tool_calls must be a list of objects; clear 400s instead of template errors."""
    for i, message in enumerate(messages):
        calls = message.get("tool_calls")
        if calls is None:
            continue
        if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
            raise bad_request(f"messages[{i}].tool_calls must be an array of objects.",
                              f"messages[{i}].tool_calls")
        for j, call in enumerate(calls):
            function = call.get("function")
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise bad_request(f"messages[{i}].tool_calls[{j}].function.name must be a "
                                  "string.", f"messages[{i}].tool_calls")


# -- typed requests ---------------------------------------------------------------------------

@dataclass(frozen=True)
class DraftRequest:
    """Speculative decoding: which model drafts, and how many tokens it may look ahead."""

    model: str
    max_tokens: int


DEFAULT_DRAFT_TOKENS = 8
MAX_DRAFT_TOKENS = 64


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
    name = text(body, "draft_model")
    look_ahead = number(body, "draft_max_tokens", 1, MAX_DRAFT_TOKENS, DEFAULT_DRAFT_TOKENS,
                        integer=True)
    return None if name is None else DraftRequest(name, look_ahead)


def generation_fields(body: dict) -> dict:
    """The GenerationFields of any generation body (chat, text, Responses)."""
    single_choice(body)
    stream, include_usage = stream_flags(body)
    return dict(model=model_name(body), sampling=sampling_params(body),
                max_tokens=max_tokens(body), stop=stop_strings(body), stream=stream,
                include_usage=include_usage, ttl=ttl_seconds(body),
                context_length=context_length(body), draft=_draft(body), wire=body)


def chat_request(body) -> ChatRequest:
    """POST /v1/chat/completions (and /api/v0's) as a typed request."""
    body = require_object(body)
    common = generation_fields(body)
    messages = normalise_messages(body.get("messages"))
    check_tool_history(messages)
    return ChatRequest(**common, messages=messages, features=chat_features(body),
                       logprobs=chat_logprobs(body))


def _is_token_ids(value) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in value)


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
    if isinstance(value, list) and len(value) > 1 and all(
            isinstance(v, str) or _is_token_ids(v) for v in value):
        raise bad_request(f"Only one prompt per request is supported (got {len(value)}).",
                          "prompt")
    raise bad_request("'prompt' must be a non-empty string or an array of token ids (or one "
                      "of them in an array).", "prompt")


def completion_request(body) -> CompletionRequest:
    """POST /v1/completions as a typed request; ``prompt`` may be token ids."""
    body = require_object(body)
    common = generation_fields(body)
    prompt = completion_prompt(body.get("prompt"))
    echo = boolean(body, "echo")
    logprobs = completion_logprobs(body)
    if echo and logprobs is not None:
        raise bad_request("'logprobs' with 'echo' would need the prompt's log-probabilities, "
                          "which are not computed; send one or the other.", "echo")
    return CompletionRequest(**common, prompt=prompt, echo=echo, logprobs=logprobs,
                             suffix=completion_suffix(body))


def embedding_inputs(value) -> list[str | list[int]]:
    """``input``: a string, an array of strings, an array of token ids, or an array of
    such arrays (what langchain-openai sends by default)."""
    if isinstance(value, str) or _is_token_ids(value):
        value = [value]
    if not isinstance(value, list) or not value:
        raise bad_request("'input' must be a non-empty string, an array of strings, an array "
                          "of token ids or an array of token-id arrays.", "input")
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
            raise bad_request(f"input[{i}] must be a non-empty string or an array of token ids.",
                              f"input[{i}]")
    if len(inputs) > MAX_EMBEDDING_INPUTS:
        raise bad_request(f"At most {MAX_EMBEDDING_INPUTS} inputs per request (got "
                          f"{len(inputs)}).", "input")
    return inputs


def embedding_request(body) -> EmbeddingRequest:
    """POST /v1/embeddings as a typed request."""
    body = require_object(body)
    inputs = embedding_inputs(body.get("input"))
    encoding = body.get("encoding_format")
    encoding = "float" if encoding is None else encoding  # "" is not a format
    if encoding not in ("float", "base64"):
        raise bad_request("'encoding_format' must be 'float' or 'base64'.", "encoding_format")
    return EmbeddingRequest(model_name(body), inputs, encoding,
                            number(body, "dimensions", 1, None, integer=True), ttl_seconds(body),
                            context_length(body), boolean(body, "truncate"))


def load_request(body) -> LoadRequest:
    """LM Studio's load fields (POST /api/v1/models/load, ``lms load``) as a LoadRequest."""
    body = require_object(body)
    flash_attention = body.get("flash_attention")
    if flash_attention is not None and not isinstance(flash_attention, bool):
        raise bad_request("'flash_attention' must be a boolean.", "flash_attention")
    number(body, "eval_batch_size", 1, None, integer=True)  # accepted; fixed at 512
    boolean(body, "estimate_only")  # read by the load endpoint; checked for every load body
    boolean(body, "echo_load_config")
    return LoadRequest(model=model_name(body), identifier=text(body, "identifier"),
                       context_length=context_length(body), ttl=ttl_seconds(body),
                       flash_attention=flash_attention, gpu=gpu(body),
                       force=boolean(body, "force"), parallel=parallel(body))


# -- presets ----------------------------------------------------------------------------------

# how each preset setting is checked: a reader of the request field of the same name
_PRESET_READERS = {
    "temperature": lambda b: sampling_params(b),
    "top_k": lambda b: sampling_params(b),
    "top_p": lambda b: sampling_params(b),
    "min_p": lambda b: sampling_params(b),
    "repeat_penalty": lambda b: sampling_params(b),
    "presence_penalty": lambda b: sampling_params(b),
    "frequency_penalty": lambda b: sampling_params(b),
    "seed": lambda b: sampling_params(b),
    "max_tokens": max_tokens,
    "context_length": context_length,
    "response_format": response_format_grammar,
    "system_prompt": lambda b: text(b, "system_prompt"),
    "flash_attention": lambda b: boolean(b, "flash_attention"),
}


PRESET_SETTINGS = (*_PRESET_READERS, "stop")


def preset_settings(settings) -> dict:
    """A preset's settings (request field names), checked with the requests' own rules,
    so a preset that saves is a preset that applies."""
    if not isinstance(settings, dict):
        raise bad_request("A preset's settings must be an object.", "settings")
    unknown = sorted(set(settings) - set(_PRESET_READERS) - {"stop"})
    if unknown:
        raise bad_request(f"Unknown preset settings: {', '.join(unknown)}. Known: "
                          f"{', '.join(sorted([*_PRESET_READERS, 'stop']))}.", "settings")
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
    if prompt and isinstance(messages, list) and not any(
            isinstance(m, dict) and m.get("role") in ("system", "developer") for m in messages):
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
        raise bad_request(f"Preset \"{preset.name}\" has an invalid setting: {exc.message}",
                          "preset") from None
    merged = merge_preset(preset, body)
    merged.pop("preset", None)
    return merged


# -- API tokens and names that become files ------------------------------------------------

MAX_NAME_LENGTH = 200  # preset and token names (a preset name becomes a file name)


def short_name(body: dict, name: str = "name") -> str:
    """A required display name: a non-empty string of at most MAX_NAME_LENGTH characters,
    no control characters (NUL included); returned stripped."""
    raw = body.get(name)
    if isinstance(raw, str) and len(raw) > MAX_NAME_LENGTH:
        raise bad_request(f"'{name}' must be at most {MAX_NAME_LENGTH} characters "
                          f"(got {len(raw)}).", name)
    if isinstance(raw, str) and any(ord(ch) < 32 or ord(ch) == 127 for ch in raw):
        raise bad_request(f"'{name}' must not contain control characters.", name)
    return text(body, name, required=True)


@dataclass(frozen=True)
class TokenCreateRequest:
    name: str
    expires_in: float | None = None  # seconds; None: never expires


MAX_TOKEN_LIFETIME = 100 * 365 * 24 * 3600


def token_create_request(body) -> TokenCreateRequest:
    """POST /api/v1/tokens: ``{"name", "expires_in"?}`` (seconds)."""
    body = require_object(body)
    expires_in = number(body, "expires_in", 1, MAX_TOKEN_LIFETIME)
    return TokenCreateRequest(short_name(body), expires_in)
