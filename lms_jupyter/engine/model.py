"""A loaded model instance: one llama_cpp.Llama, one worker thread, ``parallel`` slots.

llama-cpp-python is not thread-safe, so everything that touches a model's context runs on
that model's single worker thread, the :class:`~.batching.Scheduler`: generation requests
share the context in slots and are decoded together (continuous batching); embeddings,
speculative decoding and lending the model as a draft run between decode steps. Requests
beyond the free slots queue in arrival order; the manager and the fronts only see status
and queue length.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import Future
from typing import Callable

from .embedding import Embedder, EmbeddingResult, model_pooling
from ..errors import APIError, bad_request
from ..models.catalog import ModelInfo, ModelVariant
from . import llama
from .batching import (STATUS_EMBEDDING, STATUS_GENERATING, STATUS_IDLE,  # noqa: F401
                       STATUS_PROMPT, Scheduler, SlotJob, model_unloaded)
from .channel import EventChannel
from .events import Failed
from .generation import GenerationRequest, run_generation
from .options import LoadConfig, default_threads

log = logging.getLogger(__name__)


class LoadedModel:
    """A model in memory with its own request queue."""

    def __init__(self, info: ModelInfo, variant: ModelVariant, identifier: str,
                 config: LoadConfig, *, ttl: float | None = None, jit: bool = False):
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
        self.waiting_for: LoadedModel | None = None  # a draft model this worker waits on
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
    def load(self, progress: Callable[[float], bool] | None = None) -> "LoadedModel":
        """Load the weights (blocking); ``progress(fraction)`` may return False to cancel."""
        started = time.perf_counter()
        threads = self.config.n_threads or default_threads()
        self.config.n_threads = threads
        if self.embedding_only:
            llama.route_llama_logs()
            self._embedder = Embedder.load(
                self.variant.path, context_length=self.config.context_length,
                n_threads=threads, n_gpu_layers=self.config.n_gpu_layers,
                use_mmap=self.config.use_mmap, flash_attention=self.config.flash_attention,
                pooling=model_pooling(self.variant.header), label=self.identifier)
            return self._started(started)
        n_batch = min(self.config.n_batch, self.config.context_length)
        self.llm = llama.load_llama(
            str(self.variant.path), progress=progress, n_ctx=self.config.context_length,
            n_batch=n_batch, n_seq_max=self.config.parallel,
            n_threads=threads, n_threads_batch=threads,
            flash_attn=self.config.flash_attention, n_gpu_layers=self.config.n_gpu_layers,
            use_mmap=self.config.use_mmap,
            type_k=llama.KV_CACHE_TYPES[self.config.kv_cache_type],
            type_v=llama.KV_CACHE_TYPES[self.config.kv_cache_type])
        self._prefill_abort = llama.PrefillAbort(self.llm, self._cancel_requested)
        return self._started(started)

    def _started(self, started: float) -> "LoadedModel":
        self.load_time_seconds = time.perf_counter() - started
        self.scheduler = Scheduler(self, self._llm, self.config.parallel,
                                   min(self.config.n_batch, self.config.context_length))
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

    def join(self, timeout: float = 30.0) -> bool:
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
        for owner in (self._embedder, self._llm):
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
        # a draft lease never waits for clients: it is not bounded by the client queue
        self.scheduler.submit(job, 0 if isinstance(job, _LeaseJob) else self.max_queued)

    # -- work ----------------------------------------------------------------------------
    def generate(self, request: GenerationRequest, channel: EventChannel) -> None:
        """Queue a generation whose events go to ``channel``."""
        if self.embedding_only:
            raise not_a_chat_model(self.identifier)
        if getattr(request, "draft", None) is not None:
            self._submit(_SpeculativeJob(self, request, channel))
        else:
            self._submit(SlotJob(self, request, channel))

    @contextlib.contextmanager
    def lease(self, holder: "LoadedModel", cancel: threading.Event | None = None,
              timeout: float = 600.0):
        """Borrow this model's Llama for ``holder``'s worker (speculative drafting).

        A lease is an exclusive job in this model's queue: it waits until this model's
        slots are idle, then parks the worker until released, so the Llama is still used
        by one thread at a time and the model counts as busy (never reaped or evicted
        mid-use). Two models drafting for each other at the same moment would wait
        forever, so that fails at once instead.
        """
        job = _LeaseJob(self)
        self._submit(job)
        holder.waiting_for = self
        try:
            deadline = time.monotonic() + timeout
            while not job.granted.wait(0.05):
                if cancel is not None and cancel.is_set():
                    raise _LeaseCancelled()
                if self.waiting_for is holder:
                    raise APIError(f"Draft model {self.identifier} is itself waiting to draft "
                                   f"with {holder.identifier}; try again.", 409,
                                   "invalid_request_error", "draft_model", "draft_model_busy")
                if time.monotonic() > deadline:
                    raise APIError(f"Timed out waiting for draft model {self.identifier}.",
                                   503, "server_error", "draft_model", "draft_model_busy")
            holder.waiting_for = None
            if job.abandoned or self.llm is None:
                raise APIError(f"Draft model {self.identifier} was unloaded.", 409,
                               "invalid_request_error", "draft_model", "model_unloaded")
            yield self.llm
        finally:
            holder.waiting_for = None
            job.released.set()

    def embed(self, texts: list, truncate: bool = False) -> Future:
        """Queue embeddings of texts and/or token-id lists; the future gives an
        :class:`EmbeddingResult`."""
        future: Future = Future()
        self._submit(_EmbeddingJob(self, texts, truncate, future))
        return future

    def embedder(self) -> Embedder:
        """The embedding context (worker thread only). A chat model gets a mean-pooling
        one on its own weights the first time it is asked for embeddings."""
        if self._embedder is None:
            self._embedder = Embedder.for_chat_model(
                self._llm, context_length=self.config.context_length,
                n_threads=self.config.n_threads,
                flash_attention=self.config.flash_attention, label=self.identifier)
        return self._embedder

    def tokenize(self, text: str, add_bos: bool = False, special: bool = True) -> list[int]:
        """Vocabulary lookup only; safe beside a running generation."""
        return llama.tokenize(self.llm, text, add_bos=add_bos, special=special)

    def token_text(self, token: int) -> str:
        return llama.token_bytes(self.llm, token, special=True).decode("utf-8", errors="replace")

    def detokenize(self, tokens: list[int]) -> str:
        """The text of token ids (ids outside the vocabulary are skipped)."""
        n_vocab = self.llm.n_vocab()
        raw = b"".join(llama.token_bytes(self.llm, t, special=True) for t in tokens
                       if 0 <= t < n_vocab)
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
        """What `lms ps` shows for this instance."""
        return {
            "identifier": self.identifier, "modelKey": self.info.key,
            "path": str(self.variant.path), "type": self.info.type,
            "status": self.status, "queued": self.queued,
            "contextLength": self.config.context_length, "ttlSeconds": self.ttl,
            "parallel": None if self.embedding_only else self.config.parallel,
            "jit": self.jit, "lastUsedTime": self.last_used, "loadedAt": self.loaded_at,
            "sizeBytes": self.variant.size_bytes, "quantization": self.variant.quantization,
            "arch": self.variant.arch,
        }


class _SpeculativeJob(SlotJob):
    """A request with a draft model: speculative decoding through the high-level Llama
    (sequence 0 of the context), so it takes the model exclusively: it waits until every
    slot is idle, and the KV cache is cleared before and after (the slots' prompt caches
    are lost)."""

    mode = "exclusive"
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
                with _draft_lease(model, self.request, channel.cancel_event) as draft_llm:
                    run_generation(model.llm, self.request, channel.cancel_event, self.emit,
                                   phase, eog=model.is_eog, draft_llm=draft_llm)
            finally:
                model._prefill_abort.arm(False)
                model._current_cancel = None
        except _LeaseCancelled:
            pass
        except APIError as exc:
            channel.put(Failed(exc))
        except Exception as exc:  # noqa: BLE001 - report, never kill the worker
            log.exception("Generation on %s failed", model.identifier)
            channel.put(Failed(APIError(f"Generation failed: {exc}", 500, "server_error")))
        finally:
            channel.close()


class _LeaseCancelled(Exception):
    """The request was cancelled while waiting for its draft model."""


@contextlib.contextmanager
def _draft_lease(model: LoadedModel, request: GenerationRequest, cancel: threading.Event):
    """The draft model's Llama for a speculative request (None for a plain one)."""
    draft = getattr(request, "draft", None)
    if draft is None:
        yield None
        return
    with draft.model.lease(model, cancel) as draft_llm:
        yield draft_llm


class _LeaseJob:
    """Parks a model's worker while another worker uses its Llama (exclusively: the
    slots are idle and the KV cache is cleared around it)."""

    mode = "exclusive"
    status = STATUS_GENERATING

    def __init__(self, model: LoadedModel):
        self.model = model
        self.granted = threading.Event()
        self.released = threading.Event()
        self.abandoned = False

    def __call__(self) -> None:
        self.granted.set()
        self.released.wait()

    def abandon(self) -> None:
        self.abandoned = True
        self.granted.set()


def not_a_chat_model(identifier: str) -> APIError:
    return bad_request(f"\"{identifier}\" is an embedding model: it has no chat or completion "
                       "endpoint. Use /v1/embeddings with it, or pick an LLM.", "model",
                       "model_not_chat_capable")


class _EmbeddingJob:
    """Embeddings run between decode steps: they use their own context, not a slot."""

    mode = "inline"
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

