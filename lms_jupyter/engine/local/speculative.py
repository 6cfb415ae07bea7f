"""Speculative decoding with a real draft model (LM Studio's ``draft_model``).

A small draft model proposes a few tokens greedily; the main model evaluates them in one
batch with logits for every position and samples each position with *the same sampler
chain plain decoding uses*, accepting drafts while they equal its own choice. The first
disagreement is replaced by the main model's token and both KV caches are rolled back.

Because verification draws exactly one main-model sample per emitted token, in the same
order and from the same sampler state, the output is the output of plain decoding: at
temperature 0 (greedy), and at any temperature for the same seed. Acceptance is by exact
match (not rejection sampling on draft probabilities), which only affects speed.

One caveat is llama.cpp's numerics: a batch of N tokens is not always bit-identical to N
single-token steps (e.g. Gemma 3's attention kernels), so a near-tie can flip. SmolLM2 is
bit-exact. LM Studio and llama.cpp's own speculative decoding share this property.

Prompts longer than ``n_batch`` are fine: prefill goes through ``Llama.eval`` in
``n_batch`` chunks and never touches llama-cpp-python's ``scores`` array (whose sizing
is what breaks ``LlamaPromptLookupDecoding``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

from lms_jupyter.engine.drafts import (  # noqa: F401
    DEFAULT_DRAFT_TOKENS,
    MAX_DRAFT_TOKENS,
    DraftSettings,
    DraftSource,
    check_draft_pair,
    header_vocab_mismatch,
    incompatible_draft,
)


@dataclass
class DraftStats:
    """LM Studio's counts: total = accepted + rejected + ignored.

    accepted: drafted tokens the main model agreed with and that were emitted;
    rejected: drafted tokens discarded at or after the first disagreement;
    ignored: agreed drafted tokens never emitted because generation stopped first.
    """

    draft_model: str
    accepted: int = 0
    rejected: int = 0
    ignored: int = 0

    @property
    def total(self) -> int:
        return self.accepted + self.rejected + self.ignored

    def as_dict(self) -> dict:
        return {
            "draft_model": self.draft_model,
            "total_draft_tokens_count": self.total,
            "accepted_draft_tokens_count": self.accepted,
            "rejected_draft_tokens_count": self.rejected,
            "ignored_draft_tokens_count": self.ignored,
        }


def vocab_mismatch(main_llm, draft_llm, samples: int = 256) -> str | None:
    """Why two models cannot pair for speculative decoding, or None when they can."""
    from lms_jupyter.engine.local.llama import token_bytes

    n_main, n_draft = main_llm.n_vocab(), draft_llm.n_vocab()
    if n_main != n_draft:
        return f"vocabulary sizes differ ({n_main} vs {n_draft} tokens)"
    for name in ("token_bos", "token_eos"):
        a, b = getattr(main_llm, name)(), getattr(draft_llm, name)()
        if a != b:
            return f"special token ids differ ({name[6:].upper()}: {a} vs {b})"
    step = max(1, n_main // samples)
    ids = list(range(0, min(n_main, 32))) + list(range(0, n_main, step)) + [n_main - 1]
    for token in ids:
        if token_bytes(main_llm, token, True) != token_bytes(draft_llm, token, True):
            return f"token {token} differs"
    return None


def _common_prefix(llm, tokens: list[int]) -> int:
    import numpy as np

    n = min(llm.n_tokens, len(tokens))
    if n == 0:
        return 0
    same = llm.input_ids[:n] == np.asarray(tokens[:n], dtype=llm.input_ids.dtype)
    return n if same.all() else int(np.argmin(same))


def sync_prefix(llm, tokens: list[int]) -> None:
    """Make ``llm``'s KV cache hold exactly ``tokens``, with logits for the last one.

    Reuses the cached prefix, then evaluates the rest in ``n_batch`` chunks.
    """
    keep = min(_common_prefix(llm, tokens), len(tokens) - 1)
    if keep > 0 and llm._ctx.kv_cache_seq_rm(-1, keep, -1):
        llm.n_tokens = keep
    else:
        llm.reset()
    llm.eval(tokens[llm.n_tokens :])


def decode_with_all_logits(llm, tokens: list[int], n_past: int) -> None:
    """Evaluate ``tokens`` at ``n_past`` keeping logits for every position."""
    llm._ctx.kv_cache_seq_rm(-1, n_past, -1)
    llm._batch.set_batch(batch=tokens, n_past=n_past, logits_all=True)
    llm._ctx.decode(llm._batch)
    llm.input_ids[n_past : n_past + len(tokens)] = tokens
    llm.n_tokens = n_past + len(tokens)


class _DraftPicker:
    """The draft's greedy choice, with the request's penalties and logit bias applied so
    that it guesses what the main model's sampler will pick."""

    def __init__(self, llm, sampling, last_n: int):
        import numpy as np

        self.llm = llm
        self.n_vocab = llm.n_vocab()
        self.sampling = sampling
        self.last_n = last_n
        bias = {t: v for t, v in (sampling.logit_bias or {}).items() if 0 <= t < self.n_vocab}
        self.bias_ids = np.fromiter(bias.keys(), dtype=np.intc, count=len(bias))
        self.bias_values = np.array(
            [-np.inf if v <= -100 else v for v in bias.values()], dtype=np.single
        )

    def pick(self, history: list[int]) -> int:
        import llama_cpp
        import numpy as np

        raw = llama_cpp.llama_get_logits_ith(self.llm._ctx.ctx, -1)
        logits = np.ctypeslib.as_array(raw, shape=(self.n_vocab,)).copy()
        s = self.sampling
        window = history[-self.last_n :] if self.last_n > 0 else []
        if window and (s.repeat_penalty != 1 or s.frequency_penalty or s.presence_penalty):
            ids, counts = np.unique(np.asarray(window, dtype=np.intc), return_counts=True)
            values = logits[ids]
            values = np.where(values <= 0, values * s.repeat_penalty, values / s.repeat_penalty)
            values -= counts * s.frequency_penalty + s.presence_penalty
            logits[ids] = values
        if len(self.bias_ids):
            logits[self.bias_ids] += self.bias_values
        return int(np.argmax(logits))


def speculative_tokens(
    main,
    draft,
    prompt: list[int],
    sampler_settings: dict,
    sampling,
    settings: DraftSettings,
    stats: DraftStats,
    is_eog: Callable[[int], bool],
    max_new_tokens: int | None = None,
) -> Generator[int, None, None]:
    """Yield the main model's tokens, drafting ahead with ``draft`` (both llama_cpp.Llama).

    A drop-in for ``Llama.generate``: the caller stops whenever it likes (closing the
    generator); drafted tokens it never consumed count as ignored.
    """
    sampler = main._init_sampler(**sampler_settings)
    picker = _DraftPicker(draft, sampling, main.last_n_tokens_size)
    n_ctx, draft_ctx = main.n_ctx(), draft.n_ctx()
    look_ahead = max(0, min(settings.max_tokens, MAX_DRAFT_TOKENS, main.n_batch - 1))
    generated: list[int] = []
    unused = 0  # agreed drafts not yet handed to the caller
    try:
        sync_prefix(main, prompt)
        token = sampler.sample(main._ctx, -1)
        generated.append(token)
        yield token
        while not is_eog(token):
            n_past = main.n_tokens  # the KV holds everything but ``token``
            context = prompt + generated
            budget = min(look_ahead, n_ctx - n_past - 1, draft_ctx - len(context))
            if max_new_tokens is not None:
                budget = min(budget, max_new_tokens - len(generated) - 1)
            drafts = _draft(draft, picker, context, generated, budget, is_eog)
            batch = [token] + drafts
            decode_with_all_logits(main, batch, n_past)
            agreed: list[int] = []
            for i in range(len(batch)):
                choice = sampler.sample(main._ctx, i)
                if i < len(drafts) and choice == drafts[i]:
                    agreed.append(choice)
                    continue
                break
            stats.rejected += len(drafts) - len(agreed)
            keep = n_past + 1 + len(agreed)
            main._ctx.kv_cache_seq_rm(-1, keep, -1)
            main.n_tokens = keep
            unused = len(agreed)
            for accepted in agreed:
                unused -= 1
                stats.accepted += 1
                generated.append(accepted)
                yield accepted
            token = choice
            generated.append(token)
            yield token
    finally:
        stats.ignored += unused
        main._requires_eval = True  # the last logits may belong to a rejected draft
        draft._requires_eval = True
        sampler.close()


def _draft(
    draft,
    picker: _DraftPicker,
    context: list[int],
    generated: list[int],
    budget: int,
    is_eog: Callable[[int], bool],
) -> list[int]:
    """Up to ``budget`` greedy guesses continuing ``context``."""
    if budget <= 0:
        return []
    sync_prefix(draft, context)
    drafts: list[int] = []
    while True:
        guess = picker.pick(generated + drafts)
        drafts.append(guess)
        if len(drafts) >= budget or is_eog(guess):
            return drafts
        draft.eval([guess])
