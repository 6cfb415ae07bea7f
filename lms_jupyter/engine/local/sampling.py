"""One request's sampler for the batching scheduler, with grammars checked lazily.

Each slot samples with its own chain, the one llama-cpp-python's ``Llama._init_sampler``
builds (logit bias, repetition penalties over the last 64 generated tokens, [grammar],
top-k, typical, top-p, min-p, temperature, a seeded ``dist``; or greedy at temperature 0)
and with the same arithmetic, so a seed gives the text the single-request path gives.
Penalties and grammars are stateful, so nothing is shared between requests. Two links run
in numpy on the context's logits row instead of in C: ``logit_bias`` and the plain
repetition penalty (llama.cpp's C penalty looks up every vocabulary token in a hash map,
most of a token's sampling time), and greedy picking is numpy's first maximum.

**Lazy grammars.** Applying a GBNF grammar to the whole vocabulary (49k tokens for
SmolLM2) costs about as much as decoding the token, which made structured output half as
fast as plain text. llama.cpp's common sampler samples without the grammar, checks the one
chosen token and applies the grammar to the vocabulary only when it is rejected; that is
exact for greedy decoding only, because at temperature > 0 it changes the distribution.
Here the result is the full check's, token for token, at any temperature:

- greedy: the unconstrained argmax is checked; if the grammar rejects it, the best
  ``TOP_M`` candidates are checked in one call and the best allowed one is taken;
- sampling with ``top_k = K``: the grammar is applied to the best ``TOP_M`` candidates
  only. With at least K of them allowed, they contain the K best allowed tokens of the
  whole vocabulary, which is all ``top_k`` keeps. With fewer, the allowed tokens outside
  that window (each no likelier than the window's last) could still reach ``top_p``'s
  normaliser; their mass is bounded, and when no value within that bound can move the
  ``top_p`` / ``min_p`` cut (with a margin far above float32 rounding), the surviving set
  is the full check's, so the seeded ``dist`` draws the same token;
- anything else (no ``top_k``, a cut the bound cannot settle, nothing allowed in the
  window) falls back to the full check.

Log-probabilities come from the logits plus ``logit_bias``, before penalties, grammar
and temperature: the model's own distribution as the request biased it.
"""

from __future__ import annotations

import collections
import ctypes
import math

from lms_jupyter.engine.events import TokenLogprob
from lms_jupyter.engine.local import llama
from lms_jupyter.engine.local.logprobs import TokenStrings, token_logprob
from lms_jupyter.engine.request import SamplingParams, random_seed
from lms_jupyter.errors import bad_request

LAZY_GRAMMAR = True  # False: always the full check (tests and benchmarks compare both)
TOP_M = 128  # grammar-check window; <= 128 keeps llama.cpp's top-k on std::partial_sort
PENALTY_LAST_N = 64  # llama-cpp-python's last_n_tokens_size
_MARGIN = 1e-4  # cumulative-probability margin for the top-p cut (float32 error is ~1e-6)
_LOGIT_MARGIN = 1e-3  # logit margin for the min-p cut


def _lib():
    import llama_cpp

    return llama_cpp


class Candidates:
    """A full-vocabulary ``llama_token_data_array`` reused by every grammar request of one
    scheduler (sampling runs on its worker thread only)."""

    def __init__(self, n_vocab: int):
        import numpy as np

        lib = _lib()
        self.n_vocab = n_vocab
        self.data = (lib.llama_token_data * n_vocab)()
        self.view = np.frombuffer(
            self.data, dtype=np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
        )
        self.ids = np.arange(n_vocab, dtype=np.int32)
        self.array = lib.llama_token_data_array(self.data, n_vocab, -1, False)
        self.ref = ctypes.byref(self.array)
        self.one = (lib.llama_token_data * 1)()
        self.one_array = lib.llama_token_data_array(self.one, 1, -1, False)
        self.one_ref = ctypes.byref(self.one_array)

    def fill(self, logits) -> None:
        view = self.view
        view["id"] = self.ids
        view["logit"] = logits
        view["p"] = 0.0
        self.array.size = self.n_vocab
        self.array.selected = -1
        self.array.sorted = False

    def head(self, n: int):
        """The first ``n`` entries (a numpy view)."""
        return self.view[:n]

    def selected_token(self) -> int:
        return int(self.view["id"][self.array.selected])


def compile_grammar(vocab, gbnf: str):
    """A llama.cpp grammar sampler, or a 400 when the GBNF does not parse."""
    lib = _lib()
    sampler = lib.llama_sampler_init_grammar(vocab, gbnf.encode("utf-8"), b"root")
    if not sampler:
        raise bad_request("Could not compile the output grammar.", "response_format")
    return sampler


def _chain(samplers):
    lib = _lib()
    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
    for sampler in samplers:
        lib.llama_sampler_chain_add(chain, sampler)
    return chain


class _RepeatPenalty:
    """llama.cpp's repetition penalty over the last ``PENALTY_LAST_N`` accepted tokens,
    applied to those few logits in numpy instead of a hash lookup for each of the
    vocabulary's tokens (the C sampler's cost, most of a token's sampling time). Same
    float32 arithmetic: ``logit * r`` when ``logit <= 0``, else ``logit / r``."""

    def __init__(self, repeat: float):
        import numpy as np

        self.repeat = np.float32(repeat)
        self.window: collections.deque[int] = collections.deque()
        self.counts: dict[int, int] = {}

    def accept(self, token: int) -> None:
        self.counts[token] = self.counts.get(token, 0) + 1
        if len(self.window) >= PENALTY_LAST_N:
            old = self.window.popleft()
            self.counts[old] -= 1
            if not self.counts[old]:
                del self.counts[old]
        self.window.append(token)

    def apply(self, row) -> None:
        import numpy as np

        if not self.counts:
            return
        ids = np.fromiter(self.counts, dtype=np.int32, count=len(self.counts))
        values = row[ids]
        row[ids] = np.where(values <= 0, values * self.repeat, values / self.repeat)


class SlotSampler:
    """The sampler of one request: ``sample(ctx, batch_index) -> (token, logprob)``.

    ``logit_bias`` and a plain repetition penalty are applied to the context's logits
    row in place (cheap, and exactly llama.cpp's arithmetic); frequency and presence
    penalties keep llama.cpp's own sampler; greedy decoding is numpy's first maximum,
    which is what llama.cpp's greedy sampler picks."""

    def __init__(
        self,
        vocab,
        n_vocab: int,
        sampling: SamplingParams,
        *,
        grammar: str | None = None,
        logprobs: int | None = None,
        candidates: Candidates | None = None,
        lazy: bool | None = None,
        token_piece=None,
    ):
        import numpy as np

        lib = _lib()
        self.n_vocab = n_vocab
        self.sampling = sampling
        self.logprobs = logprobs
        self.lazy = LAZY_GRAMMAR if lazy is None else lazy
        # token -> (text, bytes) for log-probabilities, cached
        self._strings = TokenStrings(token_piece or (lambda token: b""))
        self.candidates = candidates
        self.stats = {"tokens": 0, "window": 0, "full": 0}  # how grammar checks went
        self._owned = []
        seed = sampling.seed if sampling.seed is not None else random_seed()
        temp = sampling.temperature
        self.greedy = temp == 0
        self.top_k = sampling.top_k
        bias = sampling.logit_bias or {}
        self._bias_ids = np.fromiter(bias.keys(), dtype=np.int32, count=len(bias))
        self._bias_values = np.array(
            [-np.inf if v <= -100 else v for v in bias.values()], dtype=np.float32
        )
        self._repeat = None
        pre = []
        if sampling.frequency_penalty or sampling.presence_penalty:
            pre.append(
                lib.llama_sampler_init_penalties(
                    n_vocab,
                    PENALTY_LAST_N,
                    sampling.repeat_penalty,
                    sampling.frequency_penalty,
                    sampling.presence_penalty,
                )
            )
        elif sampling.repeat_penalty != 1.0:
            self._repeat = _RepeatPenalty(sampling.repeat_penalty)
        if temp < 0:
            post = [lib.llama_sampler_init_dist(seed)]
        elif temp == 0:
            post = [lib.llama_sampler_init_greedy()]
        else:
            post = [
                lib.llama_sampler_init_top_k(sampling.top_k),
                lib.llama_sampler_init_typical(1.0, 1),
                lib.llama_sampler_init_top_p(sampling.top_p, 1),
                lib.llama_sampler_init_min_p(sampling.min_p, 1),
                lib.llama_sampler_init_temp(temp),
                lib.llama_sampler_init_dist(seed),
            ]
        self.grammar = None
        self.pre = _chain(pre) if pre else None
        self._owned += [self.pre] if pre else []
        if grammar:
            self.grammar = compile_grammar(vocab, grammar)
            self._owned.append(self.grammar)
            if candidates is None:
                self.candidates = Candidates(n_vocab)
            self.post = _chain(post)
            self.window = lib.llama_sampler_init_top_k(max(TOP_M, 2 * max(self.top_k, 0)))
            self._owned += [self.post, self.window]
            self.chain = None
        else:
            # the chain samples straight from the context's (adjusted) logits row
            self.chain = _chain(pre + post)
            self._owned = [self.chain]
            self.pre = None
        self._argmax = self.greedy and self.chain is not None and not pre

    def close(self) -> None:
        lib = _lib()
        for sampler in self._owned:
            lib.llama_sampler_free(sampler)
        self._owned = []

    # -- sampling ------------------------------------------------------------------------
    def sample(self, ctx, index: int) -> tuple[int, TokenLogprob | None]:
        """Sample (and accept) the token at batch position ``index`` of the last decode."""
        import numpy as np

        lib = _lib()
        row = llama.logits_row(ctx, index, self.n_vocab)
        logprob = None
        if self.logprobs is not None:
            logprob = self._logprob(row, None)
        if len(self._bias_ids):
            row[self._bias_ids] += self._bias_values
        if self._repeat is not None:
            self._repeat.apply(row)
        if self._argmax:
            token = int(np.argmax(row))
        elif self.chain is not None:
            token = int(lib.llama_sampler_sample(self.chain, ctx, index))
        else:
            token = self._sample_with_grammar(row)
        if self._repeat is not None:
            self._repeat.accept(token)
        if logprob is not None:
            logprob = logprob(token)
        return token, logprob

    def _sample_with_grammar(self, logits) -> int:
        lib = _lib()
        cand = self.candidates
        assert cand is not None  # narrowing only: a grammar sampler always has them
        self.stats["tokens"] += 1
        token = None
        # greedy with nothing before the grammar: the argmax straight from the logits, so
        # when the grammar allows it (most tokens of a JSON string) the copy of the
        # vocabulary into the candidates (45 us of a 49k vocabulary) is not needed
        argmax_first = self.lazy and self.greedy and self.pre is None
        if argmax_first and self.sampling.temperature >= 0:
            import numpy as np

            best = int(np.argmax(logits))
            if self._allowed(best):
                token = best
        if token is None:
            cand.fill(logits)
            if self.pre is not None:
                lib.llama_sampler_apply(self.pre, cand.ref)
            token = self._lazy(cand, logits, argmax_checked=argmax_first) if self.lazy else None
        if token is None:  # the full check: the grammar over the whole vocabulary
            self.stats["full"] += 1
            cand.fill(logits)
            if self.pre is not None:
                lib.llama_sampler_apply(self.pre, cand.ref)
            lib.llama_sampler_apply(self.grammar, cand.ref)
            lib.llama_sampler_apply(self.post, cand.ref)
            token = cand.selected_token()
        if self.pre is not None:
            lib.llama_sampler_accept(self.pre, token)
        lib.llama_sampler_accept(self.grammar, token)
        lib.llama_sampler_accept(self.post, token)
        return token

    def _allowed(self, token: int) -> bool:
        lib = _lib()
        cand = self.candidates
        assert cand is not None  # narrowing only: a grammar sampler always has them
        cand.one[0].id = token
        cand.one[0].logit = 1.0
        cand.one[0].p = 0.0
        cand.one_array.size = 1
        cand.one_array.selected = -1
        cand.one_array.sorted = False
        lib.llama_sampler_apply(self.grammar, cand.one_ref)
        return cand.one[0].logit != -math.inf

    def _lazy(self, cand: Candidates, logits, argmax_checked: bool) -> int | None:
        """The full check's token from a small window of candidates, or None when only
        the full check can tell (``argmax_checked``: the caller found the argmax rejected)."""
        import numpy as np

        lib = _lib()
        temp = self.sampling.temperature
        if temp < 0 or (temp > 0 and not 0 < self.top_k < self.n_vocab // 2):
            return None
        if self.greedy and not argmax_checked:
            values = logits if self.pre is None else cand.view["logit"]
            best = int(np.argmax(values))  # the greedy sampler's pick (first maximum)
            if self._allowed(best):
                return best
        # the best TOP_M candidates, sorted (llama.cpp's top-k), then the grammar on them
        lib.llama_sampler_apply(self.window, cand.ref)
        size = int(cand.array.size)
        head = cand.head(size)
        floor = float(head["logit"][size - 1])  # no token outside the window beats it
        lib.llama_sampler_apply(self.grammar, cand.ref)
        self.stats["window"] += 1
        allowed = head["logit"] != -np.inf
        n_allowed = int(allowed.sum())
        if n_allowed == 0:
            return None
        if self.greedy:
            kept = head[allowed]
            top = kept["logit"].max()
            return int(kept["id"][kept["logit"] == top].min())  # first maximum by id
        kept = head[allowed].copy()  # sorted, best first
        if n_allowed < self.top_k and not self._tail_cannot_matter(
            kept["logit"], floor, self.top_k - n_allowed
        ):
            return None
        cand.view[:n_allowed] = kept
        cand.array.size = n_allowed
        cand.array.selected = -1
        cand.array.sorted = True
        lib.llama_sampler_apply(self.post, cand.ref)
        return cand.selected_token()

    def _tail_cannot_matter(self, kept, floor: float, n_missing: int) -> bool:
        """Whether up to ``n_missing`` unseen allowed tokens, each with a logit at most
        ``floor``, would leave the full check's top-p / min-p cut where the window puts
        it (``kept``: the allowed logits of the window, best first)."""
        import numpy as np

        s = self.sampling
        values = kept.astype(np.float64)
        top = values[0]
        if s.top_p < 1.0:
            weights = np.exp(values - top)
            total = weights.sum()
            unseen = n_missing * math.exp(min(floor - top, 0.0))
            cumulative = np.cumsum(weights)
            high = cumulative / total  # the window alone (what the chain will compute)
            low = cumulative / (total + unseen)  # with the most the unseen tokens can add
            cut = int(np.argmax(high >= s.top_p))
            if low[cut] < s.top_p + _MARGIN:
                return False
            return cut == 0 or high[cut - 1] < s.top_p - _MARGIN
        if s.min_p > 0:  # no top-p: min-p alone must drop every unseen token
            return floor < top + math.log(s.min_p) - _LOGIT_MARGIN
        return False

    # -- log-probabilities -------------------------------------------------------------
    def _logprob(self, logits, _token):
        """Log-probabilities from the raw row with ``logit_bias`` applied (before it is
        adjusted in place; the same point :mod:`.logprobs` documents for the single-request
        path); returns a function of the sampled token giving its :class:`TokenLogprob`."""
        import numpy as np

        values = np.array(logits, dtype=np.float32)  # a copy: the row changes next
        if len(self._bias_ids):
            values[self._bias_ids] += self._bias_values
        top_n = self.logprobs or 0
        return lambda token: token_logprob(values, token, top_n, self._strings)
