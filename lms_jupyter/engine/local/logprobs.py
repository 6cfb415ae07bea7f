"""Log-probabilities of generated tokens (OpenAI's ``logprobs`` / ``top_logprobs``).

Which logits: the model's raw logits **after ``logit_bias``** and **before** repetition
penalties, grammar masking (``response_format``, forced tool calls) and the truncation
and temperature of sampling (top-k, top-p, min-p). A log-softmax over the whole
vocabulary gives each token's log-probability. So the figures describe what the model
(steered by the caller's bias) thinks of each token, not the grammar's or the sampler's
narrowed choice: under a grammar the chosen token may not be the top alternative.
This is the point llama.cpp exposes in its sampler chain: our logit-bias processor is
the chain's first stage, and :class:`LogprobRecorder` runs right after it.

:func:`token_logprob` is the one computation (a logits row and the chosen token ->
:class:`~.events.TokenLogprob`); the single-request loop records rows with
:class:`LogprobRecorder`, and a batched scheduler that holds logits rows itself can call
it directly. Nothing here runs unless a request asks for log-probabilities.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from lms_jupyter.engine.events import TokenLogprob
from lms_jupyter.engine.local import llama
from lms_jupyter.engine.request import MAX_TOP_LOGPROBS  # noqa: F401

FLOOR = -9999.0  # what OpenAI reports for a token with no probability at all (JSON has no -inf)


class TokenStrings:
    """A token's (text, bytes) as generation renders it, cached per id; ``piece`` gives a
    token's bytes."""

    def __init__(self, piece: Callable[[int], bytes]):
        self.piece = piece
        self._cache: dict[int, tuple[str, tuple[int, ...]]] = {}

    @classmethod
    def for_llm(cls, llm, special: bool = False) -> TokenStrings:
        return cls(lambda token: llama.token_bytes(llm, token, special))

    def __call__(self, token: int) -> tuple[str, tuple[int, ...]]:
        hit = self._cache.get(token)
        if hit is None:
            raw = self.piece(token)
            hit = self._cache[token] = (raw.decode("utf-8", errors="replace"), tuple(raw))
        return hit


def token_logprob(logits, token: int, top_n: int, strings: TokenStrings) -> TokenLogprob:
    """``token``'s log-probability under ``logits`` (one row, the whole vocabulary) and
    the ``top_n`` likeliest alternatives, best first (the chosen token may be among them)."""
    import numpy as np

    row = np.asarray(logits, dtype=np.float32)
    peak = float(row.max())
    log_total = peak + float(np.log(np.exp(row - peak).sum(dtype=np.float64)))
    text, raw = strings(token)
    top: tuple[TokenLogprob, ...] = ()
    if top_n > 0:
        n = min(top_n, row.shape[0])
        ids = np.argpartition(row, -n)[-n:]
        ids = ids[np.argsort(-row[ids], kind="stable")]
        top = tuple(_entry(strings, int(i), float(row[i]) - log_total) for i in ids)
    return TokenLogprob(text, _finite(float(row[token]) - log_total), raw, top)


def _entry(strings: TokenStrings, token: int, logprob) -> TokenLogprob:
    text, raw = strings(token)
    return TokenLogprob(text, _finite(logprob), raw)


def _finite(value) -> float:
    value = float(value)
    return value if value > FLOOR else FLOOR


class LogprobRecorder:
    """A llama-cpp-python logits processor that keeps the logits of every sampling step,
    to be matched with the token that step chose (:meth:`take`, in sampling order).

    It changes nothing: it returns the scores it was given. Placed right after the
    logit-bias processor, it sees the post-bias, pre-penalty, pre-grammar logits (see the
    module docstring). Each sampling step calls it exactly once, for plain decoding and
    for speculative verification alike, so steps and emitted tokens pair up one to one.
    """

    def __init__(self, llm, top_n: int, special: bool = False):
        self.top_n = top_n
        self.strings = TokenStrings.for_llm(llm, special)
        self._steps: deque = deque()

    def __call__(self, _input_ids, scores):
        import numpy as np

        self._steps.append(np.array(scores, dtype=np.float32))  # a copy: the buffer is reused
        return scores

    def take(self, token: int) -> TokenLogprob | None:
        """The entry for the token the oldest recorded step chose (None if none recorded)."""
        if not self._steps:
            return None
        return token_logprob(self._steps.popleft(), token, self.top_n, self.strings)


class HeldLogprobs:
    """Each token's :class:`TokenLogprob` held with the span of text it produced, until
    that text is released (what :class:`~.generation.TokenText` emits).

    Offsets count characters of decoded text. A token whose bytes end inside a UTF-8
    character produces no text yet and goes with the next character. When a stop string
    cuts the text, tokens with any released text go out and the rest are dropped.
    """

    def __init__(self):
        self.decoded = 0  # characters decoded so far
        self.released = 0  # characters released so far
        self._held: deque = deque()  # (TokenLogprob, start, end)
        self.ready: list[TokenLogprob] = []

    def add(self, logprob: TokenLogprob | None, n_chars: int) -> None:
        start = self.decoded
        self.decoded += n_chars
        if logprob is not None:
            self._held.append((logprob, start, self.decoded))

    def release(self, n_chars: int, stopped: bool = False) -> None:
        self.released += n_chars
        held = self._held
        while held:
            _, start, end = held[0]
            whole = end <= self.released and (start < end or start < self.released)
            if not (whole or (stopped and start < self.released)):
                break
            self.ready.append(held.popleft()[0])
        if stopped:
            held.clear()

    def release_all(self) -> None:
        self.ready.extend(entry[0] for entry in self._held)
        self._held.clear()

    def take(self) -> list[TokenLogprob]:
        ready, self.ready = self.ready, []
        return ready
