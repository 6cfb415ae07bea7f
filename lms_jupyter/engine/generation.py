"""The token loop: one request on one llama_cpp.Llama, run on that model's worker thread.

We drive ``Llama.generate`` ourselves instead of ``create_completion`` so we know *why*
generation stopped (LM Studio's stop reasons), count tokens exactly, hold back text that
may begin a stop string, and stop between any two tokens when the client goes away.
"""
from __future__ import annotations

import codecs
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ..errors import APIError, bad_request, context_length_exceeded

# LM Studio's stop reasons (LLMPredictionStats.ts) and the OpenAI finish_reason of each
STOP_EOS = "eosFound"
STOP_STRING = "stopStringFound"
STOP_MAX_TOKENS = "maxPredictedTokensReached"
STOP_CONTEXT = "contextLengthReached"
STOP_USER = "userStopped"
STOP_FAILED = "failed"
FINISH_REASONS = {STOP_EOS: "stop", STOP_STRING: "stop", STOP_USER: "stop",
                  STOP_MAX_TOKENS: "length", STOP_CONTEXT: "length", STOP_FAILED: "stop"}


@dataclass
class SamplingParams:
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)


@dataclass
class GenerationRequest:
    prompt: str | list[int]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    max_tokens: int | None = None  # None: until the context is full
    stop: list[str] = field(default_factory=list)
    grammar: str | None = None  # GBNF text
    add_bos: bool = True  # for a text prompt whose template did not already add BOS
    draft: object | None = None  # speculative.DraftSettings: decode with a draft model
    # keep special tokens' text (tool-call markers such as <|channel|> or [TOOL_CALLS])
    render_special: bool = False


@dataclass
class Started:
    """The prompt fits and generation is about to begin."""
    prompt_tokens: int


@dataclass
class TextDelta:
    text: str
    tokens: int  # tokens generated so far


@dataclass
class Finished:
    stop_reason: str
    prompt_tokens: int
    completion_tokens: int
    time_to_first_token: float
    generation_time: float
    text: str = ""
    draft_stats: dict | None = None  # speculative decoding counts, when a draft model ran

    @property
    def finish_reason(self) -> str:
        return FINISH_REASONS[self.stop_reason]

    @property
    def tokens_per_second(self) -> float:
        decode = self.generation_time - self.time_to_first_token
        if self.completion_tokens > 1 and decode > 0:
            return (self.completion_tokens - 1) / decode
        return 0.0

    @property
    def usage(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


@dataclass
class Failed:
    error: APIError


class StopStringMatcher:
    """Finds stop strings in streamed text, holding back text that may start one."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""

    def push(self, text: str) -> tuple[str, bool]:
        """Returns (text safe to emit, whether a stop string was hit)."""
        self.pending += text
        if not self.stops:
            out, self.pending = self.pending, ""
            return out, False
        first = min((i for i in (self.pending.find(s) for s in self.stops) if i >= 0),
                    default=-1)
        if first >= 0:
            out, self.pending = self.pending[:first], ""
            return out, True
        hold = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self.pending)), hold, -1):
                if self.pending.endswith(stop[:n]):
                    hold = n
                    break
        cut = len(self.pending) - hold
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


def random_seed() -> int:
    return random.SystemRandom().randrange(0, 2**31 - 1)


def _bias_processor(logit_bias: dict[int, float]):
    import numpy as np

    ids = np.fromiter(logit_bias.keys(), dtype=np.intc)
    values = np.array([(-np.inf if v <= -100 else v) for v in logit_bias.values()],
                      dtype=np.single)

    def apply(input_ids, scores):
        scores[ids] += values
        return scores

    return apply


def token_bytes(llm, token: int, special: bool = False) -> bytes:
    """The exact bytes of one token (llama-cpp-python's helper pads them with NULs)."""
    import ctypes

    import llama_cpp

    buf = ctypes.create_string_buffer(64)
    n = llama_cpp.llama_token_to_piece(llm._model.vocab, token, buf, 64, 0, special)
    if n < 0:
        buf = ctypes.create_string_buffer(-n)
        n = llama_cpp.llama_token_to_piece(llm._model.vocab, token, buf, -n, 0, special)
    return buf.raw[:max(n, 0)]


def tokenize_prompt(llm, prompt: str | list[int], add_bos: bool) -> list[int]:
    if isinstance(prompt, list):
        return list(prompt)
    return llm.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True)


def run_generation(llm, request: GenerationRequest, cancel: threading.Event,
                   emit: Callable[[object], None], on_phase: Callable[[str], None] = lambda p: None,
                   eog: Callable[[int], bool] | None = None,
                   draft_llm=None) -> Finished | None:
    """Generate on the calling thread, reporting Started / TextDelta* / Finished or Failed.

    With ``request.draft`` and ``draft_llm`` the tokens come from speculative decoding;
    everything after the token source (stops, limits, text) is shared.
    """
    started_at = time.perf_counter()
    try:
        tokens = tokenize_prompt(llm, request.prompt, request.add_bos)
    except Exception as exc:  # noqa: BLE001 - tokenizer errors are user input problems
        emit(Failed(bad_request(f"Could not tokenize the prompt: {exc}", "prompt")))
        return None
    n_ctx = llm.n_ctx()
    if not tokens:
        emit(Failed(bad_request("The prompt is empty.", "prompt")))
        return None
    if len(tokens) >= n_ctx:
        emit(Failed(context_length_exceeded(len(tokens), n_ctx)))
        return None
    n_vocab = llm.n_vocab()
    bad_ids = [t for t in request.sampling.logit_bias if not 0 <= t < n_vocab]
    if bad_ids:
        emit(Failed(bad_request(f"logit_bias has token ids outside the vocabulary "
                                f"(0..{n_vocab - 1}): {bad_ids[:5]}", "logit_bias")))
        return None
    grammar = None
    if request.grammar:
        from llama_cpp import LlamaGrammar

        try:
            grammar = LlamaGrammar.from_string(request.grammar, verbose=False)
        except Exception as exc:  # noqa: BLE001
            emit(Failed(bad_request(f"Could not compile the output grammar: {exc}",
                                    "response_format")))
            return None
    emit(Started(len(tokens)))
    on_phase("processingPrompt")

    sampling = request.sampling
    llm.set_seed(sampling.seed if sampling.seed is not None else random_seed())
    processors = None
    if sampling.logit_bias:
        from llama_cpp import LogitsProcessorList

        processors = LogitsProcessorList([_bias_processor(sampling.logit_bias)])
    is_eog = eog or (lambda t: t == llm.token_eos())
    limit = request.max_tokens if request.max_tokens and request.max_tokens > 0 else None
    matcher = StopStringMatcher(request.stop)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    generated = 0
    first_token_at = None
    stop_reason = None
    pieces: list[str] = []
    sampler_settings = dict(
        top_k=sampling.top_k, top_p=sampling.top_p, min_p=sampling.min_p,
        temp=sampling.temperature, repeat_penalty=sampling.repeat_penalty,
        frequency_penalty=sampling.frequency_penalty, presence_penalty=sampling.presence_penalty,
        logits_processor=processors, grammar=grammar)
    draft_stats = None
    if request.draft is not None and draft_llm is not None:
        from .speculative import DraftStats, speculative_tokens

        draft_stats = DraftStats(request.draft.identifier)
        generator = speculative_tokens(llm, draft_llm, tokens, sampler_settings, sampling,
                                       request.draft, draft_stats, is_eog, limit)
    else:
        generator = llm.generate(tokens, reset=True, **sampler_settings)
    try:
        if cancel.is_set():
            stop_reason = STOP_USER
        else:
            for token in generator:
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                    on_phase("generating")
                if cancel.is_set():
                    stop_reason = STOP_USER
                    break
                if is_eog(token):
                    stop_reason = STOP_EOS
                    break
                generated += 1
                text = decoder.decode(token_bytes(llm, token, request.render_special))
                out, hit = matcher.push(text)
                if out:
                    pieces.append(out)
                    emit(TextDelta(out, generated))
                if hit:
                    stop_reason = STOP_STRING
                    break
                if limit is not None and generated >= limit:
                    stop_reason = STOP_MAX_TOKENS
                    break
                if len(tokens) + generated >= n_ctx:
                    stop_reason = STOP_CONTEXT
                    break
    except RuntimeError as exc:
        if draft_llm is not None:
            draft_llm.reset()
        if cancel.is_set():  # the abort callback interrupted llama_decode
            stop_reason = STOP_USER
            llm.reset()
        else:
            llm.reset()
            emit(Failed(APIError(f"Generation failed: {exc}", 500, "server_error")))
            return None
    finally:
        generator.close()
    if stop_reason != STOP_STRING:
        tail = matcher.flush() + decoder.decode(b"", final=True)
        if tail:
            pieces.append(tail)
            emit(TextDelta(tail, generated))
    now = time.perf_counter()
    finished = Finished(stop_reason or STOP_EOS, len(tokens), generated,
                        (first_token_at or now) - started_at, now - started_at, "".join(pieces),
                        draft_stats=draft_stats.as_dict() if draft_stats is not None else None)
    emit(finished)
    return finished
