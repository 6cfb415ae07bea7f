"""The token loop: one request on one llama_cpp.Llama, run on that model's worker thread.

We drive ``Llama.generate`` ourselves instead of ``create_completion`` so we know *why*
generation stopped (LM Studio's stop reasons), count tokens exactly, hold back text that
may begin a stop string, and stop between any two tokens when the client goes away.

It comes in three steps, each usable on its own (a batching scheduler needs the same
checks and the same per-token text handling for every slot): :func:`check_prompt`
tokenizes and refuses what cannot run, :func:`sampler_settings` turns the request's
sampling into llama-cpp-python's, and :class:`TokenText` turns sampled tokens into text,
applying stop strings and limits (and, when asked, keeps each token's log-probability
with the text it releases: see :mod:`.logprobs`).
"""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import Callable

from lms_jupyter.engine.events import (
    STOP_CONTEXT,
    STOP_EOS,
    STOP_MAX_TOKENS,
    STOP_STRING,
    STOP_USER,
    Failed,
    Finished,
    Started,
    TextDelta,
    TokenLogprob,
)
from lms_jupyter.engine.local import llama
from lms_jupyter.engine.local.logprobs import HeldLogprobs, LogprobRecorder
from lms_jupyter.engine.request import GenerationRequest, SamplingParams, random_seed  # noqa: F401
from lms_jupyter.errors import APIError, bad_request, context_length_exceeded


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
        first = min((i for i in (self.pending.find(s) for s in self.stops) if i >= 0), default=-1)
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


def _bias_processor(logit_bias: dict[int, float]):
    import numpy as np

    ids = np.fromiter(logit_bias.keys(), dtype=np.intc)
    values = np.array([(-np.inf if v <= -100 else v) for v in logit_bias.values()], dtype=np.single)

    def apply(input_ids, scores):
        scores[ids] += values
        return scores

    return apply


def check_prompt(llm, request: GenerationRequest) -> list[int]:
    """The prompt's tokens, or an APIError for what cannot run: a prompt that does not
    tokenize, is empty or does not fit the context, or logit_bias ids outside the
    vocabulary."""
    if isinstance(request.prompt, list):
        tokens = list(request.prompt)
    else:
        try:
            tokens = llama.tokenize(llm, request.prompt, add_bos=request.add_bos)
        except Exception as exc:  # noqa: BLE001 - tokenizer errors are user input problems
            raise bad_request(f"Could not tokenize the prompt: {exc}", "prompt") from None
    if not tokens:
        raise bad_request("The prompt is empty.", "prompt")
    n_ctx = llm.n_ctx()
    if len(tokens) >= n_ctx:
        raise context_length_exceeded(len(tokens), n_ctx)
    n_vocab = llm.n_vocab()
    for field_name, ids in (
        ("prompt", tokens if isinstance(request.prompt, list) else []),
        ("logit_bias", request.sampling.logit_bias),
    ):
        bad_ids = [t for t in ids if not 0 <= t < n_vocab]
        if bad_ids:
            raise bad_request(
                f"{field_name} has token ids outside the vocabulary "
                f"(0..{n_vocab - 1}): {bad_ids[:5]}",
                field_name,
            )
    return tokens


def sampler_settings(
    llm, request: GenerationRequest, recorder: LogprobRecorder | None = None
) -> dict:
    """llama-cpp-python's sampler keyword arguments for the request (seeds ``llm``).

    ``recorder`` (when the request asks for log-probabilities) goes right after the
    logit-bias processor, ahead of penalties and the grammar in llama-cpp-python's chain."""
    sampling = request.sampling
    grammar = None
    if request.grammar:
        from llama_cpp import LlamaGrammar

        try:
            grammar = LlamaGrammar.from_string(request.grammar, verbose=False)
        except Exception as exc:  # noqa: BLE001
            raise bad_request(
                f"Could not compile the output grammar: {exc}", "response_format"
            ) from None
    llm.set_seed(sampling.seed if sampling.seed is not None else random_seed())
    stages = [_bias_processor(sampling.logit_bias)] if sampling.logit_bias else []
    if recorder is not None:
        stages.append(recorder)
    processors = None
    if stages:
        from llama_cpp import LogitsProcessorList

        processors = LogitsProcessorList(stages)
    return dict(
        top_k=sampling.top_k,
        top_p=sampling.top_p,
        min_p=sampling.min_p,
        temp=sampling.temperature,
        repeat_penalty=sampling.repeat_penalty,
        frequency_penalty=sampling.frequency_penalty,
        presence_penalty=sampling.presence_penalty,
        logits_processor=processors,
        grammar=grammar,
    )


class TokenText:
    """Sampled tokens -> text for one request: UTF-8 across token boundaries, stop strings
    held back until they are ruled out, and every reason to stop but the end of the
    prompt's context (which the caller knows).

    Log-probabilities: ``push(token, logprob)`` keeps the token's
    :class:`~.events.TokenLogprob` with the text it produced; :meth:`delta` hands out the
    released text together with the entries of the tokens it completes (text held back
    for a possible stop string carries its tokens along; tokens of a stop string that
    matched are dropped, those of the end-of-generation token never recorded). Callers
    emit ``text.delta(text.push(token, logprob))`` and ``text.delta(text.flush())``.
    """

    def __init__(
        self, llm, request: GenerationRequest, n_prompt: int, is_eog: Callable[[int], bool]
    ):
        self.llm = llm
        self.render_special = request.render_special
        self.limit = request.max_tokens if request.max_tokens and request.max_tokens > 0 else None
        self.n_room = llm.n_ctx() - n_prompt
        self.is_eog = is_eog
        self.matcher = StopStringMatcher(request.stop)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.generated = 0
        self.stop_reason: str | None = None
        self.wants_logprobs = request.logprobs is not None
        self.logprobs = HeldLogprobs()

    def push(self, token: int, logprob: TokenLogprob | None = None) -> str:
        """The text this token releases; sets ``stop_reason`` when generation must end.
        ``logprob`` is the token's entry when the request asked for log-probabilities."""
        if self.is_eog(token):
            self.stop_reason = STOP_EOS
            return ""
        self.generated += 1
        text = self.decoder.decode(llama.token_bytes(self.llm, token, self.render_special))
        out, hit = self.matcher.push(text)
        if self.wants_logprobs:
            self.logprobs.add(logprob, len(text))
            self.logprobs.release(len(out), stopped=hit)
        if hit:
            self.stop_reason = STOP_STRING
        elif self.limit is not None and self.generated >= self.limit:
            self.stop_reason = STOP_MAX_TOKENS
        elif self.generated >= self.n_room:
            self.stop_reason = STOP_CONTEXT
        return out

    def flush(self) -> str:
        """Text held back for a stop string that never came (nothing after a hit)."""
        if self.stop_reason == STOP_STRING:
            return ""
        self.logprobs.release_all()
        return self.matcher.flush() + self.decoder.decode(b"", final=True)

    def delta(self, text: str) -> TextDelta | None:
        """The event for released ``text`` with its tokens' log-probabilities (None when
        there is nothing to report)."""
        if not self.wants_logprobs:
            return TextDelta(text) if text else None
        logprobs = self.logprobs.take()
        return TextDelta(text, logprobs) if text or logprobs else None


def run_generation(
    llm,
    request: GenerationRequest,
    cancel: threading.Event,
    emit: Callable[[object], None],
    on_phase: Callable[[str], None] = lambda p: None,
    eog: Callable[[int], bool] | None = None,
    draft_llm=None,
) -> Finished | None:
    """Generate on the calling thread, reporting Started / TextDelta* / Finished or Failed.

    With ``request.draft`` and ``draft_llm`` the tokens come from speculative decoding;
    everything after the token source (stops, limits, text) is shared.
    """
    started_at = time.perf_counter()
    recorder = (
        None
        if request.logprobs is None
        else LogprobRecorder(llm, request.logprobs, request.render_special)
    )
    try:
        tokens = check_prompt(llm, request)
        settings = sampler_settings(llm, request, recorder)
    except APIError as exc:
        emit(Failed(exc))
        return None
    cached = 0 if request.draft is not None else llama.keep_prefix(llm, tokens)
    emit(Started(len(tokens), cached, llama.prompt_text(llm, request.prompt)))
    on_phase("processingPrompt")
    text = TokenText(llm, request, len(tokens), eog or (lambda t: t == llm.token_eos()))
    draft_stats = None
    if request.draft is not None and draft_llm is not None:
        from lms_jupyter.engine.local.speculative import DraftStats, speculative_tokens

        draft_stats = DraftStats(request.draft.identifier)
        generator = speculative_tokens(
            llm,
            draft_llm,
            tokens,
            settings,
            request.sampling,
            request.draft,
            draft_stats,
            text.is_eog,
            text.limit,
        )
    else:
        generator = llm.generate(tokens, reset=True, **settings)
    first_token_at = None
    try:
        if cancel.is_set():
            text.stop_reason = STOP_USER
        else:
            for token in generator:
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                    on_phase("generating")
                if cancel.is_set():
                    text.stop_reason = STOP_USER
                    break
                delta = text.delta(text.push(token, recorder.take(token) if recorder else None))
                if delta is not None:
                    emit(delta)
                if text.stop_reason:
                    break
    except RuntimeError as exc:
        if draft_llm is not None:
            draft_llm.reset()
        llm.reset()
        if not cancel.is_set():  # else the abort callback interrupted llama_decode
            emit(Failed(APIError(f"Generation failed: {exc}", 500, "server_error")))
            return None
        text.stop_reason = STOP_USER
    finally:
        generator.close()
    tail = text.delta(text.flush())
    if tail is not None:
        emit(tail)
    now = time.perf_counter()
    finished = Finished(
        text.stop_reason or STOP_EOS,
        len(tokens),
        text.generated,
        (first_token_at or now) - started_at,
        now - started_at,
        draft_stats=draft_stats.as_dict() if draft_stats is not None else None,
        cached_tokens=cached,
    )
    emit(finished)
    return finished
