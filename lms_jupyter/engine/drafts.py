"""Draft models for speculative decoding, as plain data and header checks: what a request's
``draft_model`` names (:class:`DraftSource`, :class:`DraftSettings`, which travel to the main
model's worker with the request) and whether a pair can work, decided from GGUF headers before
anything loads. The decoding itself is :mod:`lms_jupyter.engine.local.speculative`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import cast

from lms_jupyter.engine.options import LoadConfig, LoadRequest
from lms_jupyter.errors import APIError, bad_request

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


def acquire_draft(manager, main, name: str, look_ahead: int) -> DraftSettings:
    """The draft model for speculative decoding on ``main``, checked to share its
    vocabulary: the loaded instance, or a new load by ``manager`` (the
    :class:`~lms_jupyter.engine.manager.ModelManager`).

    A draft loaded here is not a JIT model (loading it must not evict the main model
    it drafts for) but it gets the JIT idle TTL so it does not stay forever. A pair
    that cannot work is refused from the GGUF headers before anything is loaded.
    """
    # a remote engine's model has no GGUF here to draft with (the same precedence as acquire)
    if manager.remotes is not None and manager.remotes.owns(name) and name not in manager._loaded:
        raise bad_request(
            f'draft_model "{name}" is served by a remote engine; a draft '
            "model must be a local one.",
            "draft_model",
        )
    draft = manager.get_loaded(name)
    variant = draft.variant if draft else manager.resolve_model(name, "draft_model")[1]
    reason = header_vocab_mismatch(main.variant.header, variant.header)
    if reason:
        raise incompatible_draft(name, main.identifier, reason)
    if draft is None:
        if not manager.jit_loading:
            raise APIError(
                f'Draft model "{name}" is not loaded and JIT loading is off. Load it first.',
                404,
                "invalid_request_error",
                "draft_model",
                "model_not_found",
            )
        try:
            draft = manager.load(LoadRequest(name, ttl=manager.jit_ttl))
        except APIError as exc:
            draft = manager.get_loaded(name)  # loaded concurrently by another request
            if draft is None or exc.code != "identifier_in_use":
                raise
    draft.last_used = time.time()
    check_draft_pair(main, draft)
    config = cast(LoadConfig, draft.config)  # a local instance's: remote names are refused
    source = DraftSource(
        draft.identifier,
        str(draft.variant.path),
        config.context_length,
        config.n_gpu_layers,
        config.flash_attention,
        config.kv_cache_type,
    )
    return DraftSettings(source, draft.identifier, look_ahead)
