"""What one generation asks of a model: the typed request that crosses the worker boundary.

The API layer builds it (:mod:`lms_jupyter.api.prepare`), the server or kernel sends it to the
model's worker process, and the worker's scheduler runs it; so it lives outside
:mod:`lms_jupyter.engine.local` (the code that only runs inside a worker).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lms_jupyter.engine.drafts import DraftSettings


MAX_TOP_LOGPROBS = 20  # OpenAI's bound for top_logprobs (and ours for legacy logprobs)


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
    draft: DraftSettings | None = None  # decode with a draft model (speculative decoding)
    # keep special tokens' text (tool-call markers such as <|channel|> or [TOOL_CALLS])
    render_special: bool = False
    logprobs: int | None = None  # report log-probabilities with N alternatives (None: off)


def random_seed() -> int:
    return random.SystemRandom().randrange(0, 2**31 - 1)
