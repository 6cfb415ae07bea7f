"""A loaded model instance: one llama_cpp.Llama owned by one worker thread.

llama-cpp-python is not thread-safe, so every use of a model (prompt, every token of a
stream, embeddings) runs on that model's single worker thread. Requests queue there in
arrival order; the manager and the fronts only see status and queue length.
"""
from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Callable

from .. import logstream
from .embedding import Embedder, EmbeddingResult, model_pooling
from ..errors import APIError, bad_request, queue_full
from ..models.catalog import ModelInfo, ModelVariant
from . import llama
from .channel import EventChannel
from .events import STOP_USER, Failed, Finished
from .generation import GenerationRequest, run_generation
from .options import LoadConfig, default_threads

log = logging.getLogger(__name__)

STATUS_IDLE = "idle"
STATUS_PROMPT = "processingPrompt"
STATUS_GENERATING = "generating"
STATUS_EMBEDDING = "computingEmbedding"
_STOP = object()


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
        self.status = STATUS_IDLE
        self.loaded_at = time.time()
        self.last_used = time.time()
        self.load_time_seconds = 0.0
        self.estimated_bytes = 0  # the manager's memory estimate, for the guardrail budget
        self.waiting_for: LoadedModel | None = None  # a draft model this worker waits on
        self._queued = 0
        self.max_queued = 0  # bound on requests waiting or running (0: none); the manager's
        self._count_lock = threading.Lock()
        self._jobs: queue.Queue = queue.Queue()
        self._current_cancel: threading.Event | None = None
        # an embedding model (BERT, ...) has only an embedding context, no chat Llama
        self.embedding_only = variant.is_embedding
        self._llm = None
        self._embedder: Embedder | None = None
        self._prefill_abort: llama.PrefillAbort | None = None
        self._worker: threading.Thread | None = None
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
        self.llm = llama.load_llama(
            str(self.variant.path), progress=progress, n_ctx=self.config.context_length,
            n_batch=min(self.config.n_batch, self.config.context_length),
            n_threads=threads, n_threads_batch=threads,
            flash_attn=self.config.flash_attention, n_gpu_layers=self.config.n_gpu_layers,
            use_mmap=self.config.use_mmap)
        self._prefill_abort = llama.PrefillAbort(self.llm, self._cancel_requested)
        return self._started(started)

    def _started(self, started: float) -> "LoadedModel":
        self.load_time_seconds = time.perf_counter() - started
        self._worker = threading.Thread(target=self._run, name=f"lms-{self.identifier}",
                                        daemon=True)
        self._worker.start()
        return self

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
        return self._worker is not None and self._worker.is_alive()

    def join(self, timeout: float = 30.0) -> bool:
        """Wait for the worker to exit after :meth:`close`; True when it has."""
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout)
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
        if cancel_running:
            if self._current_cancel is not None:
                self._current_cancel.set()
            self._abandon_queued()
        self._jobs.put(_STOP)
        if wait and self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=30)

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
        """Requests waiting or running (LM Studio counts the current one)."""
        return self._queued

    @property
    def busy(self) -> bool:
        return self._queued > 0

    def _submit(self, job) -> None:
        if self.closed:
            raise APIError(f"Model {self.identifier} was unloaded.", 409, "invalid_request_error",
                           "model", "model_unloaded")
        with self._count_lock:
            if self.max_queued and self._queued >= self.max_queued and \
                    not isinstance(job, _LeaseJob):  # a draft lease never waits for clients
                raise queue_full(self.identifier, self.max_queued)
            self._queued += 1
        self.last_used = time.time()
        self._jobs.put(job)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                self._drain()
                self._free()
                return
            try:
                job()
            finally:
                self.status = STATUS_IDLE
                self._current_cancel = None
                self.last_used = time.time()
                with self._count_lock:
                    self._queued -= 1

    def _abandon_queued(self) -> None:
        """Fail the requests still waiting when the model is unloaded."""
        kept = []
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                kept.append(job)
                continue
            job.abandon()
            with self._count_lock:
                self._queued = max(0, self._queued - 1)
        for job in kept:
            self._jobs.put(job)

    def _drain(self) -> None:
        self._abandon_queued()

    # -- work ----------------------------------------------------------------------------
    def generate(self, request: GenerationRequest, channel: EventChannel) -> None:
        """Queue a generation whose events go to ``channel``."""
        if self.embedding_only:
            raise not_a_chat_model(self.identifier)
        self._submit(_GenerationJob(self, request, channel))

    @contextlib.contextmanager
    def lease(self, holder: "LoadedModel", cancel: threading.Event | None = None,
              timeout: float = 600.0):
        """Borrow this model's Llama for ``holder``'s worker (speculative drafting).

        A lease is a job in this model's queue: it waits its turn, then parks the worker
        until released, so the Llama is still used by one thread at a time and the model
        counts as busy (never reaped or evicted mid-use). Two models drafting for each
        other at the same moment would wait forever, so that fails at once instead.
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
            "jit": self.jit, "lastUsedTime": self.last_used, "loadedAt": self.loaded_at,
            "sizeBytes": self.variant.size_bytes, "quantization": self.variant.quantization,
            "arch": self.variant.arch,
        }


class _GenerationJob:
    def __init__(self, model: LoadedModel, request: GenerationRequest, channel: EventChannel):
        self.model, self.request, self.channel = model, request, channel

    def __call__(self) -> None:
        model, channel = self.model, self.channel
        try:
            if channel.cancelled:
                return
            model._current_cancel = channel.cancel_event

            def phase(status):
                model.status = status
                model._prefill_abort.arm(status == STATUS_PROMPT)

            def emit(event):
                if isinstance(event, Finished) and event.stop_reason == STOP_USER \
                        and model.closed and not channel.cancelled_by_client:
                    event = Failed(APIError(
                        f"Model {model.identifier} was unloaded during generation.", 409,
                        "invalid_request_error", "model", "model_unloaded"))
                logstream.on_generation_event(model, self.request, event)  # lms log stream
                channel.put(event)

            try:
                with _draft_lease(model, self.request, channel.cancel_event) as draft_llm:
                    run_generation(model.llm, self.request, channel.cancel_event, emit, phase,
                                   eog=model.is_eog, draft_llm=draft_llm)
            finally:
                model._prefill_abort.arm(False)
        except _LeaseCancelled:
            pass
        except APIError as exc:
            channel.put(Failed(exc))
        except Exception as exc:  # noqa: BLE001 - report, never kill the worker
            log.exception("Generation on %s failed", model.identifier)
            channel.put(Failed(APIError(f"Generation failed: {exc}", 500, "server_error")))
        finally:
            channel.close()

    def abandon(self) -> None:
        self.channel.put(Failed(APIError(f"Model {self.model.identifier} was unloaded.", 409,
                                         "invalid_request_error", "model", "model_unloaded")))
        self.channel.close()


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
    """Parks a model's worker while another worker uses its Llama."""

    def __init__(self, model: LoadedModel):
        self.model = model
        self.granted = threading.Event()
        self.released = threading.Event()
        self.abandoned = False

    def __call__(self) -> None:
        self.model.status = STATUS_GENERATING
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
    def __init__(self, model: LoadedModel, texts: list, truncate: bool, future: Future):
        self.model, self.texts, self.truncate, self.future = model, texts, truncate, future

    def __call__(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            self.model.status = STATUS_EMBEDDING
            result: EmbeddingResult = self.model.embedder().embed(self.texts, self.truncate)
            self.future.set_result(result)
        except APIError as exc:
            self.future.set_exception(exc)
        except Exception as exc:  # noqa: BLE001
            self.future.set_exception(APIError(f"Embedding failed: {exc}", 500, "server_error"))

    def abandon(self) -> None:
        if self.future.set_running_or_notify_cancel():
            self.future.set_exception(APIError("The model was unloaded.", 409))

