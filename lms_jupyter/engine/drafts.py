"""Draft models for speculative decoding, as plain data and header checks: what a request's
``draft_model`` names (:class:`DraftSource`, :class:`DraftSettings`, which travel to the main
model's worker with the request) and whether a pair can work, decided from GGUF headers before
anything loads. The decoding itself is :mod:`lms_jupyter.engine.local.speculative`.
"""

from __future__ import annotations

from dataclasses import dataclass

from lms_jupyter.errors import bad_request

DEFAULT_DRAFT_TOKENS = 8
MAX_DRAFT_TOKENS = 64


@dataclass(frozen=True)
class DraftSource:
    """The file and settings a main model's worker loads its private draft Llama with
    (plain data: it travels to the worker with the request)."""

    identifier: str  # the draft instance's name, for errors and stats
    path: str
    context_length: int
    n_gpu_layers: int = 0
    flash_attention: bool = True
    kv_cache_type: str = "f16"

    @property
    def key(self) -> tuple:
        return (
            self.path,
            self.context_length,
            self.n_gpu_layers,
            self.flash_attention,
            self.kv_cache_type,
        )


@dataclass
class DraftSettings:
    """A request's draft model and how far it may look ahead."""

    source: DraftSource | None
    identifier: str
    max_tokens: int = DEFAULT_DRAFT_TOKENS


def header_vocab_mismatch(main_header, draft_header) -> str | None:
    """The same check from GGUF metadata alone, so a wrong pair is refused before loading."""

    def vocab(header):
        return (
            header.array_lengths.get("tokenizer.ggml.tokens"),
            header.get("tokenizer.ggml.model"),
            header.get("tokenizer.ggml.bos_token_id"),
            header.get("tokenizer.ggml.eos_token_id"),
        )

    (n_a, kind_a, bos_a, eos_a), (n_b, kind_b, bos_b, eos_b) = (
        vocab(main_header),
        vocab(draft_header),
    )
    if n_a and n_b and n_a != n_b:
        return f"vocabulary sizes differ ({n_a} vs {n_b} tokens)"
    if kind_a and kind_b and kind_a != kind_b:
        return f"tokenizer types differ ({kind_a} vs {kind_b})"
    if (bos_a, eos_a) != (bos_b, eos_b):
        return f"special token ids differ (BOS/EOS {bos_a}/{eos_a} vs {bos_b}/{eos_b})"
    return None


def incompatible_draft(draft_name: str, main_name: str, reason: str):
    return bad_request(
        f'draft_model "{draft_name}" is incompatible with "{main_name}": the draft model '
        f"must share the main model's vocabulary, but {reason}.",
        "draft_model",
        "incompatible_draft_model",
    )


def check_draft_pair(main, draft) -> None:
    """400 unless ``draft`` (a loaded instance) can draft for ``main``; the token-by-token
    vocabulary check runs in the main model's worker when it loads the draft
    (:meth:`~.model.LoadedModel.draft_llm`)."""
    if draft is main:
        raise bad_request(
            "draft_model must be a different loaded model instance than the "
            "main model (load the same file again with another identifier).",
            "draft_model",
        )
    if draft.info.type != "llm":
        raise bad_request(f'draft_model "{draft.identifier}" is an embedding model.', "draft_model")
