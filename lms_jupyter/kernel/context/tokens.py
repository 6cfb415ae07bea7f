"""Counting and cutting text in tokens: the model's own tokenizer when one is at hand
(a local ``ModelInstance`` has ``tokenize``/``detokenize``), else an estimate of four
characters a token, which is close for English and code on the small models we run."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4


class TokenCounter(Protocol):
    name: str  # "tokenizer" or "estimate", shown with --show-prompt

    def count(self, text: str) -> int: ...
    def truncate(self, text: str, tokens: int) -> str: ...


class EstimateCounter:
    """chars / 4: used when no tokenizer is reachable (remote model, nothing loaded)."""

    name = "estimate"

    def count(self, text: str) -> int:
        return math.ceil(len(text) / CHARS_PER_TOKEN)

    def truncate(self, text: str, tokens: int) -> str:
        return text[: max(0, tokens) * CHARS_PER_TOKEN]


class TokenizerCounter:
    """The model's tokenizer (``tokenize(text, add_bos, special)`` and ``detokenize``);
    falls back to the estimate for good if the model goes away mid-way."""

    name = "tokenizer"

    def __init__(self, tokenize: Callable, detokenize: Callable | None = None):
        self._tokenize = tokenize
        self._detokenize = detokenize
        self._fallback: EstimateCounter | None = None
        self._estimate = EstimateCounter()

    def _tokens(self, text: str) -> list[int] | None:
        if self._fallback is not None:
            return None
        try:
            return list(self._tokenize(text, add_bos=False, special=False))
        except Exception as exc:  # noqa: BLE001 - a gone worker must not break a prompt
            log.info("tokenizer unavailable (%s); estimating tokens from characters", exc)
            self._fallback = EstimateCounter()
            self.name = "estimate"
            return None

    def count(self, text: str) -> int:
        tokens = self._tokens(text)
        return self._estimate.count(text) if tokens is None else len(tokens)

    def truncate(self, text: str, tokens: int) -> str:
        ids = self._tokens(text)
        if ids is None:
            return self._estimate.truncate(text, tokens)
        if len(ids) <= tokens:
            return text
        if self._detokenize is not None:
            try:
                cut = self._detokenize(ids[: max(0, tokens)])
                return cut.decode("utf-8", "ignore") if isinstance(cut, bytes) else cut
            except Exception as exc:  # noqa: BLE001 - cut by characters instead
                log.debug("detokenize failed: %s", exc)
        # no detokenizer: shrink by characters until it fits
        cut = text[: tokens * CHARS_PER_TOKEN]
        while cut and self.count(cut) > tokens:
            cut = cut[: int(len(cut) * 0.9)]
        return cut


def counter_for(instance) -> TokenCounter:
    """A counter for a loaded model instance (or None / a remote one: the estimate)."""
    tokenize = getattr(instance, "tokenize", None)
    if instance is None or not callable(tokenize):
        return EstimateCounter()
    return TokenizerCounter(tokenize, getattr(instance, "detokenize", None))
