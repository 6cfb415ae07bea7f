"""What a generation reports, token by token, to whoever waits for it.

A worker thread emits ``Started``, then ``TextDelta``s, then ``Finished`` (or ``Failed``
at any point). These are engine facts (text, token counts, timings, why it stopped);
the chat layer turns them into answer / reasoning / tool-call events, and the fronts
into their wire formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lms_jupyter.engine.instance import StopReason
from lms_jupyter.errors import APIError

# LM Studio's stop reasons (LLMPredictionStats.ts) and the OpenAI finish_reason of each
STOP_EOS = StopReason.EOS
STOP_STRING = StopReason.STOP_STRING
STOP_MAX_TOKENS = StopReason.MAX_TOKENS
STOP_CONTEXT = StopReason.CONTEXT
STOP_USER = StopReason.USER
STOP_FAILED = StopReason.FAILED
FINISH_REASONS: dict[str, str] = {
    STOP_EOS: "stop",
    STOP_STRING: "stop",
    STOP_USER: "stop",
    STOP_MAX_TOKENS: "length",
    STOP_CONTEXT: "length",
    STOP_FAILED: "stop",
}


@dataclass
class Started:
    """The prompt fits and generation is about to begin."""

    prompt_tokens: int
    cached_tokens: int = 0  # prompt tokens whose KV cache was reused, not evaluated
    prompt_text: str | None = None  # a token-id prompt as text (for the log stream)


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token with its log-probability and the likeliest alternatives,
    computed from the logits the sampler used (after logit_bias, before grammar masking)."""

    token: str
    logprob: float
    bytes: tuple[int, ...]
    top: tuple[TokenLogprob, ...] = ()  # alternatives (their own ``top`` is empty)


@dataclass
class TextDelta:
    """Newly generated text (never splits a UTF-8 character or a stop string).

    ``logprobs`` (when the request asked for them) has one entry per token whose text this
    delta releases; text held back for a possible stop string carries its tokens along."""

    text: str
    logprobs: list[TokenLogprob] | None = None


@dataclass
class Finished:
    """Generation ended normally; exact token counts and timings."""

    stop_reason: str
    prompt_tokens: int
    completion_tokens: int
    time_to_first_token: float
    generation_time: float
    draft_stats: dict | None = None  # speculative decoding counts, when a draft model ran
    cached_tokens: int = 0  # prompt tokens whose KV cache was reused, not evaluated
    # reasoning tokens as a remote engine counted them (None: count them here)
    reasoning_tokens: int | None = None
    # the counts are the relay's estimate: the remote engine reported none (issue 26)
    usage_estimated: bool = False

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
        """OpenAI's usage object for chat and text completions."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            **({"estimated": True} if self.usage_estimated else {}),
        }


@dataclass
class Failed:
    """Generation could not run or broke off; the error says why, in the API's terms."""

    error: APIError


@dataclass
class EmbeddingResult:
    """What one embedding request produced."""

    vectors: object  # numpy float32 array (n_inputs, n_dims), rows L2-normalised
    prompt_tokens: int  # tokens embedded, special tokens included
    truncated: list[int] = field(default_factory=list)  # inputs cut to the limit
