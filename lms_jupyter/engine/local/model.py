"""A model in this process's memory: one llama_cpp.Llama, one scheduler thread, slots.

This is the engine inside a model's worker process (:mod:`.worker.child`); the server
and the kernel never hold one (they hold a :class:`~.worker.proxy.WorkerModel`). Engine
tests and benchmarks use it directly.

llama-cpp-python is not thread-safe, so everything that touches a model's context runs on
that model's single scheduler thread, the :class:`~.batching.Scheduler`: generation
requests share the context in slots and are decoded together (continuous batching);
embeddings and speculative decoding run between decode steps. A draft model that serves
this model for speculative decoding is loaded here too, privately (its weights are
memory-mapped, so the pages are shared with the draft's own instance, if one is loaded).
Requests beyond the free slots queue in arrival order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING

from lms_jupyter.engine.channel import EventChannel
from lms_jupyter.engine.events import Failed
from lms_jupyter.engine.instance import JobKind
from lms_jupyter.engine.local import llama
from lms_jupyter.engine.local.batching import (
    STATUS_EMBEDDING,
    STATUS_GENERATING,
    STATUS_IDLE,
    STATUS_PROMPT,
    Scheduler,
    SlotJob,
    model_unloaded,
)
from lms_jupyter.engine.local.embedding import Embedder, EmbeddingResult, model_pooling
from lms_jupyter.engine.local.generation import run_generation
from lms_jupyter.engine.options import LoadConfig, default_threads
from lms_jupyter.engine.request import GenerationRequest
from lms_jupyter.errors import APIError, not_a_chat_model
from lms_jupyter.models.catalog import ModelInfo, ModelVariant

if TYPE_CHECKING:
    from llama_cpp import Llama

log = logging.getLogger(__name__)


class LoadedModel:
    """A model in memory with its own request queue."""

    def __init__(
        self,
        info: ModelInfo,
        variant: ModelVariant,
        identifier: str,
        config: LoadConfig,
        *,
        ttl: float | None = None,
        jit: bool = False,
    ):
        self.info = info
        self.variant = variant
        self.identifier = identifier
        self.config = config
        self.ttl = ttl
        self.jit = jit
        self.loaded_at = time.time()
        self.last_used = time.time()
        self.load_time_seconds = 0.0
        self.estimated_bytes = 0  # the manager's memory estimate, for the guardrail budget
        self._drafts: dict[tuple, Llama] = {}  # private draft Llamas, by DraftSource
        self._current_cancel: threading.Event | None = None  # an exclusive generation's
        self.max_queued = 0  # bound on requests waiting or running (0: none); the manager's
        # an embedding model (BERT, ...) has only an embedding context, no chat Llama
        self.embedding_only = variant.is_embedding
        self._llm = None
        self._embedder: Embedder | None = None
        self._prefill_abort: llama.PrefillAbort | None = None
        self.scheduler: Scheduler | None = None
        self.closed = False

    # -- lifecycle -------------------------------------------------------------------
    def load(self, progress: Callable[[float], bool] | None = None) -> LoadedModel:
        """Load the weights (blocking); ``progress(fraction)`` may return False to cancel."""
        started = time.perf_counter()
        threads = self.config.n_threads or default_threads()
        self.config.n_threads = threads
        if self.embedding_only:
            llama.route_llama_logs()
            self._embedder = Embedder.load(
                self.variant.path,
                context_length=self.config.context_length,
                n_threads=threads,
                n_gpu_layers=self.config.n_gpu_layers,
                use_mmap=self.config.use_mmap,
                flash_attention=self.config.flash_attention,
                pooling=model_pooling(self.variant.header),
                label=self.identifier,
            )
            return self._started(started)
        n_batch = min(self.config.n_batch, self.config.context_length)
        self.llm = llama.load_llama(
            str(self.variant.path),
            progress=progress,
            n_ctx=self.config.context_length,
            n_batch=n_batch,
            n_seq_max=self.config.parallel,
            n_threads=threads,
            n_threads_batch=threads,
            flash_attn=self.config.flash_attention,
            n_gpu_layers=self.config.n_gpu_layers,
            use_mmap=self.config.use_mmap,
            type_k=llama.KV_CACHE_TYPES[self.config.kv_cache_type],
            type_v=llama.KV_CACHE_TYPES[self.config.kv_cache_type],
        )
        self._prefill_abort = llama.PrefillAbort(self.llm, self._cancel_requested)
        return self._started(started)

    def _started(self, started: float) -> LoadedModel:
        self.load_time_seconds = time.perf_counter() - started
        self.scheduler = Scheduler(
            self,
            self._llm,
            self.config.parallel,
            min(self.config.n_batch, self.config.context_length),
        )
        self.scheduler.start(f"lms-{self.identifier}")
        return self

    @property
    def status(self) -> str:
        """LM Studio's status: generating when any slot generates, processingPrompt when
        one evaluates its prompt, computingEmbedding, or idle."""
        return self.scheduler.status if self.scheduler is not None else STATUS_IDLE

    @property
    def llm(self):
        """The chat Llama; an embedding model has none, so chat and completions on it are
        a 400 (not llama.cpp's "Memory is not initialized" 500)."""
        if self.embedding_only:
            raise not_a_chat_model(self.identifier)
        return self._llm

    @llm.setter
    def llm(self, value) -> None:
        self._llm = value

    @property
    def worker_alive(self) -> bool:
        return self.scheduler is not None and self.scheduler.alive

    def join(self, timeout: float | None = 30.0) -> bool:
        """Wait for the worker to exit after :meth:`close`; True when it has."""
        if self.scheduler is not None:
            self.scheduler.join(timeout)
        return not self.worker_alive

    def _cancel_requested(self) -> bool:
        event = self._current_cancel
        return bool(event is not None and event.is_set())

    def close(self, wait: bool = True, cancel_running: bool = True) -> None:
        """Stop taking work and free the memory once the worker is done.

        ``cancel_running=False`` lets queued and running requests finish first (eviction
        must never cut a generation short); an explicit unload stops them.
        """
        if self.closed:
            return
        self.closed = True
        if self.scheduler is None:
            self._free()
            return
        if cancel_running:
            # the scheduler first: an exclusive job that starts now sees it cancelling
            self.scheduler.cancel_all()
            if self._current_cancel is not None:
                self._current_cancel.set()
        self.scheduler.stop()
        if wait:
            self.scheduler.join(timeout=30)

    def _free(self) -> None:
        # the embedding context first: a chat model's one uses the chat model's weights
        drafts, self._drafts = list(self._drafts.values()), {}
        for owner in (self._embedder, *drafts, self._llm):
            if owner is not None:
                try:
                    owner.close()
                except Exception:  # noqa: BLE001 - freeing must never raise
                    pass
        self._llm = self._embedder = None

    # -- queue -------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        """Requests waiting or running (LM Studio counts the running ones)."""
        return self.scheduler.queued if self.scheduler is not None else 0

    @property
    def busy(self) -> bool:
        return self.queued > 0

    def _submit(self, job) -> None:
        if self.closed:
            raise model_unloaded(self.identifier)
        self.last_used = time.time()
        assert self.scheduler is not None  # narrowing only: load() made it
        self.scheduler.submit(job, self.max_queued)

    # -- work ----------------------------------------------------------------------------
    def generate(self, request: GenerationRequest, channel: EventChannel) -> None:
        """Queue a generation whose events go to ``channel``."""
        if self.embedding_only:
            raise not_a_chat_model(self.identifier)
        if request.draft is not None:
            self._submit(_SpeculativeJob(self, request, channel))
        else:
            self._submit(SlotJob(self, request, channel))

    def embed(self, texts: list, truncate: bool = False) -> Future:
        """Queue embeddings of texts and/or token-id lists; the future gives an
        :class:`EmbeddingResult`."""
        future: Future = Future()
        self._submit(_EmbeddingJob(self, texts, truncate, future))
        return future

    def draft_llm(self, source):
        """The private Llama of a draft model (scheduler thread only): loaded the first
        time a request drafts with that file and settings, checked to share this model's
        vocabulary token by token, kept until this model is unloaded."""
        from lms_jupyter.engine.local.speculative import incompatible_draft, vocab_mismatch

        key = source.key
        if key not in self._drafts:
            draft = llama.load_llama(
                source.path,
                n_ctx=source.context_length,
                n_batch=min(self.config.n_batch, source.context_length),
                n_threads=self.config.n_threads,
                n_threads_batch=self.config.n_threads,
                flash_attn=source.flash_attention,
                n_gpu_layers=source.n_gpu_layers,
                use_mmap=True,
                type_k=llama.KV_CACHE_TYPES[source.kv_cache_type],
                type_v=llama.KV_CACHE_TYPES[source.kv_cache_type],
            )
            reason = vocab_mismatch(self.llm, draft)
            if reason:
                draft.close()
                raise incompatible_draft(source.identifier, self.identifier, reason)
            self._drafts[key] = draft
        return self._drafts[key]

    def engine_stats(self) -> dict:
        """The scheduler's counters and slots (tests and benchmarks look inside)."""
        scheduler = self.scheduler
        if scheduler is None:
            return {}
        return {
            "stats": dict(scheduler.stats),
            "running": len(scheduler.running),
            "slots": [len(slot.kv) for slot in scheduler.slots],
            "n_ctx": self._llm.n_ctx() if self._llm is not None else None,
            "type_k": self._llm.context_params.type_k if self._llm is not None else None,
            "type_v": self._llm.context_params.type_v if self._llm is not None else None,
            "n_vocab": self._llm.n_vocab() if self._llm is not None else None,
            "n_threads": self.config.n_threads,
        }

    def embedder(self) -> Embedder:
        """The embedding context (worker thread only). A chat model gets a mean-pooling
        one on its own weights the first time it is asked for embeddings."""
        if self._embedder is None:
            assert self.config.n_threads is not None  # narrowing only: load() set it
            self._embedder = Embedder.for_chat_model(
                self._llm,
                context_length=self.config.context_length,
                n_threads=self.config.n_threads,
                flash_attention=self.config.flash_attention,
                label=self.identifier,
            )
        return self._embedder

    def tokenize(self, text: str, add_bos: bool = False, special: bool = True) -> list[int]:
        """Vocabulary lookup only; safe beside a running generation."""
        return llama.tokenize(self.llm, text, add_bos=add_bos, special=special)

    def token_text(self, token: int) -> str:
        return llama.token_bytes(self.llm, token, special=True).decode("utf-8", errors="replace")

    def detokenize(self, tokens: list[int]) -> str:
        """The text of token ids (ids outside the vocabulary are skipped)."""
        n_vocab = self.llm.n_vocab()
        raw = b"".join(
            llama.token_bytes(self.llm, t, special=True) for t in tokens if 0 <= t < n_vocab
        )
        return raw.decode("utf-8", errors="replace")

    def is_control_text(self, text: str) -> bool:
        """Whether ``text`` is a control token, dropped from output unless rendered."""
        return llama.is_control_text(self.llm, text)

    @property
    def bos_text(self) -> str:
        bos = self.llm.token_bos()
        return self.token_text(bos) if bos >= 0 else ""

    @property
    def eos_text(self) -> str:
        eos = self.llm.token_eos()
        return self.token_text(eos) if eos >= 0 else ""

    @property
    def adds_bos(self) -> bool:
        return bool(self.variant.header.get("tokenizer.ggml.add_bos_token", True))

    def is_eog(self, token: int) -> bool:
        return llama.is_eog(self.llm, token)

    def snapshot(self) -> dict:
        """What `lms ps` shows for this instance (the same row its worker proxy gives)."""
        from lms_jupyter.engine.instance import local_snapshot

        return local_snapshot(self)


class _SpeculativeJob(SlotJob):
    """A request with a draft model: speculative decoding through the high-level Llama
    (sequence 0 of the context), so it takes the model exclusively: it waits until every
    slot is idle, and the KV cache is cleared before and after (the slots' prompt caches
    are lost)."""

    mode = JobKind.EXCLUSIVE
    status = STATUS_GENERATING

    def __call__(self) -> None:
        model, channel = self.model, self.channel
        try:
            if channel.cancelled:
                return
            model._current_cancel = channel.cancel_event
            if model.scheduler.cancelling:  # unloaded after it left the queue
                channel.cancel_event.set()

            def phase(status):
                model.scheduler._job_status = status
                model._prefill_abort.arm(status == STATUS_PROMPT)

            try:
                assert self.request.draft is not None  # narrowing only: made for a draft
                draft_llm = model.draft_llm(self.request.draft.source)
                run_generation(
                    model.llm,
                    self.request,
                    channel.cancel_event,
                    self.emit,
                    phase,
                    eog=model.is_eog,
                    draft_llm=draft_llm,
                )
            finally:
                model._prefill_abort.arm(False)
                model._current_cancel = None
        except APIError as exc:
            channel.put(Failed(exc))
        except Exception as exc:
            log.exception("Generation on %s failed", model.identifier)
            channel.put(Failed(APIError(f"Generation failed: {exc}", 500, "server_error")))
        finally:
            channel.close()


class _EmbeddingJob:
    """Embeddings run between decode steps: they use their own context, not a slot."""

    mode = JobKind.INLINE
    status = STATUS_EMBEDDING

    def __init__(self, model: LoadedModel, texts: list, truncate: bool, future: Future):
        self.model, self.texts, self.truncate, self.future = model, texts, truncate, future

    def __call__(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            result: EmbeddingResult = self.model.embedder().embed(self.texts, self.truncate)
            self.future.set_result(result)
        except APIError as exc:
            self.future.set_exception(exc)
        except Exception as exc:  # noqa: BLE001
            self.future.set_exception(APIError(f"Embedding failed: {exc}", 500, "server_error"))

    def abandon(self) -> None:
        if self.future.set_running_or_notify_cancel():
            self.future.set_exception(APIError("The model was unloaded.", 409))
