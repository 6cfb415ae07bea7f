"""Which models are in memory: explicit loads, JIT loads, idle TTL and auto-evict.

LM Studio's rules: a request naming a known model loads it just in time; a JIT-loaded
model unloads after its idle TTL (60 min by default, a request's ``ttl`` overrides, every
request resets the timer); with auto-evict only the newest JIT model of each type stays
(an embedding model and an LLM live side by side, so a RAG loop does not reload them);
explicitly loaded models are never evicted; nothing is unloaded while it has work.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from ..models.catalog import ModelCatalog, ModelInfo, ModelNotFound, ModelVariant
from .model import LoadConfig, LoadedModel
from ..errors import APIError, bad_request, model_not_found
from ..models.memory import available_memory_bytes, estimate_memory, parse_gpu_offload

DEFAULT_JIT_TTL = 60 * 60
DEFAULT_CONTEXT_LENGTH = 4096


class ModelManager:
    def __init__(self, catalog: ModelCatalog | None = None, *, jit: bool = True,
                 auto_evict: bool = True, default_ttl: float = DEFAULT_JIT_TTL,
                 default_context_length: int = DEFAULT_CONTEXT_LENGTH,
                 flash_attention: bool = True, n_threads: int | None = None,
                 n_gpu_layers: int = 0, reaper_interval: float = 1.0,
                 memory_guardrail: bool = True, memory_limit_bytes: int | None = None):
        self.catalog = catalog or ModelCatalog()
        # refuse loads whose estimate exceeds free memory (or this budget for all models)
        self.memory_guardrail = memory_guardrail
        self.memory_limit_bytes = memory_limit_bytes
        self.jit = jit
        self.auto_evict = auto_evict
        self.default_ttl = default_ttl
        self.default_context_length = default_context_length
        self.flash_attention = flash_attention
        self.n_threads = n_threads
        self.n_gpu_layers = n_gpu_layers
        self._loaded: dict[str, LoadedModel] = {}
        self._lock = threading.RLock()
        self._loading: dict[str, threading.Event] = {}
        self._listeners: list[Callable[[str, dict], None]] = []
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap_loop, args=(reaper_interval,),
                                        name="lms-ttl-reaper", daemon=True)
        self._reaper.start()

    # -- events --------------------------------------------------------------------------
    def subscribe(self, listener: Callable[[str, dict], None]) -> Callable[[], None]:
        """``listener(event, snapshot)`` on "loaded"/"unloaded"; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _notify(self, event: str, model: LoadedModel) -> None:
        snapshot = model.snapshot()
        for listener in list(self._listeners):
            try:
                listener(event, snapshot)
            except Exception:  # noqa: BLE001 - a broken listener must not break loading
                pass

    # -- queries -------------------------------------------------------------------------
    def list_loaded(self) -> list[LoadedModel]:
        with self._lock:
            return list(self._loaded.values())

    def get_loaded(self, name: str) -> LoadedModel | None:
        """A loaded instance by identifier, or by model key / publisher/key."""
        if not isinstance(name, str):
            return None
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            wanted = name.lower()
            for model in self._loaded.values():
                if wanted in (model.identifier.lower(), model.info.key,
                              f"{model.info.publisher.lower()}/{model.info.key}"):
                    return model
            try:
                info, variant = self.catalog.resolve(name)
            except ModelNotFound:
                return None
            for model in self._loaded.values():
                if model.variant.path == variant.path and (
                        "@" in name or model.info.key == info.key):
                    return model
        return None

    def resolve_model(self, name: str) -> tuple[ModelInfo, ModelVariant]:
        try:
            return self.catalog.resolve(name)
        except ModelNotFound as exc:
            raise model_not_found(name, exc.known) from None

    # -- load / unload -------------------------------------------------------------------
    def load(self, model: str, *, identifier: str | None = None,
             context_length: int | None = None, ttl: float | None = None,
             flash_attention: bool | None = None, n_gpu_layers: int | None = None,
             jit: bool = False, force: bool = False) -> LoadedModel:
        """Load ``model`` (blocking). Explicit loads have no TTL unless one is given.

        ``force`` skips the memory guardrail.
        """
        info, variant = self.resolve_model(model)
        if identifier is not None and (not isinstance(identifier, str) or not identifier.strip()):
            raise bad_request("identifier must be a non-empty string.", "identifier")
        context_length = self._context_length(variant, context_length)
        if ttl is not None and (not isinstance(ttl, (int, float)) or isinstance(ttl, bool)
                                or ttl <= 0):
            raise bad_request("ttl must be a positive number of seconds.", "ttl")
        if flash_attention is not None and not isinstance(flash_attention, bool):
            raise bad_request("flash_attention must be a boolean.", "flash_attention")
        config = LoadConfig(
            context_length=context_length,
            flash_attention=self.flash_attention if flash_attention is None else flash_attention,
            n_gpu_layers=self.n_gpu_layers if n_gpu_layers is None else n_gpu_layers,
            n_threads=self.n_threads)
        estimate = estimate_memory(
            info.key, variant.header, variant.size_bytes, context_length,
            flash_attention=config.flash_attention,
            gpu_offload=self._offload_fraction(variant, config.n_gpu_layers))
        if self.memory_guardrail and not force:
            self._check_memory(estimate, jit, info.type)  # before evicting anything for it
        with self._lock:
            identifier = identifier or self._free_identifier(info.key)
            if identifier in self._loaded:
                raise APIError(f"A model with identifier \"{identifier}\" is already loaded.",
                               409, "invalid_request_error", "identifier", "identifier_in_use")
            if jit and self.auto_evict:
                self._evict_jit_models(info.type)
        if jit and ttl is None:
            ttl = self.default_ttl
        instance = LoadedModel(info, variant, identifier, config, ttl=ttl, jit=jit)
        instance.estimated_bytes = estimate.total_bytes
        try:
            instance.load()
        except Exception as exc:  # noqa: BLE001 - llama.cpp load failures become API errors
            raise APIError(f"Failed to load model \"{model}\": {exc}", 500, "server_error",
                           "model", "model_load_failed") from exc
        with self._lock:
            if identifier in self._loaded:  # lost a race for the same identifier
                instance.close()
                raise APIError(f"A model with identifier \"{identifier}\" is already loaded.",
                               409, "invalid_request_error", "identifier", "identifier_in_use")
            self._loaded[identifier] = instance
        self._notify("loaded", instance)
        return instance

    # -- memory estimate and guardrail -------------------------------------------------------
    def estimate(self, model: str, *, context_length: int | None = None, gpu=None,
                 flash_attention: bool | None = None) -> dict:
        """What loading ``model`` would take, without loading it (``lms load --estimate-only``).

        Returns model, context_length, gpu_offload, estimated_total_bytes,
        estimated_gpu_bytes, available_bytes, fits and a weights / kv_cache / compute
        breakdown.
        """
        info, variant = self.resolve_model(model)
        context_length = self._context_length(variant, context_length)
        if gpu is None:
            offload = self._offload_fraction(variant, self.n_gpu_layers)
        else:
            offload = parse_gpu_offload(gpu)
        if flash_attention is not None and not isinstance(flash_attention, bool):
            raise bad_request("flash_attention must be a boolean.", "flash_attention")
        estimate = estimate_memory(
            info.key, variant.header, variant.size_bytes, context_length,
            flash_attention=self.flash_attention if flash_attention is None else flash_attention,
            gpu_offload=offload)
        result = estimate.as_dict(self.available_bytes(for_jit=False))
        result["model"] = info.key
        result["guardrail"] = self.memory_guardrail
        return result

    def _context_length(self, variant: ModelVariant, context_length) -> int:
        """The context length to load with: the default, or a checked request value."""
        if context_length is None:
            return min(self.default_context_length, variant.max_context_length)
        if not isinstance(context_length, int) or isinstance(context_length, bool) \
                or context_length < 64:
            raise bad_request("context_length must be an integer of at least 64.",
                              "context_length")
        if context_length > variant.max_context_length:
            raise bad_request(f"context_length {context_length} exceeds the model's maximum of "
                              f"{variant.max_context_length}.", "context_length")
        return context_length

    def available_bytes(self, for_jit: bool = False, kind: str | None = None) -> int:
        """Memory a new model may use: free memory, capped by the configured budget.

        A JIT load with auto-evict will free the previous JIT model (of the same ``kind``,
        "llm" or "embeddings", when given), so that one counts as available.
        """
        with self._lock:
            evictable = [m for m in self._loaded.values() if for_jit and self.auto_evict
                         and m.jit and (kind is None or m.info.type == kind)]
            staying = [m for m in self._loaded.values() if m not in evictable]
        free = available_memory_bytes() + sum(m.estimated_bytes for m in evictable)
        if self.memory_limit_bytes is not None:
            budget = self.memory_limit_bytes - sum(m.estimated_bytes for m in staying)
            free = min(free, max(budget, 0))
        return free

    def _check_memory(self, estimate, jit: bool, kind: str | None = None) -> None:
        available = self.available_bytes(for_jit=jit, kind=kind)
        if estimate.total_bytes > available:
            need, have = estimate.total_bytes / 2**30, available / 2**30
            raise APIError(
                f"Model \"{estimate.model}\" at context length {estimate.context_length} is "
                f"estimated to need {need:.2f} GiB but only {have:.2f} GiB is available; this "
                "model will fail to load based on the resource guardrails. Use a smaller "
                "context_length, unload other models, or load with force.", 400,
                "invalid_request_error", "model", "insufficient_memory")

    @staticmethod
    def _offload_fraction(variant: ModelVariant, n_gpu_layers: int) -> float:
        n_layer = int(variant.arch_value("block_count", 0) or 0)
        if n_gpu_layers < 0 or (n_layer and n_gpu_layers > n_layer):
            return 1.0
        return n_gpu_layers / n_layer if n_layer else 0.0

    def _free_identifier(self, key: str) -> str:
        if key not in self._loaded:
            return key
        for n in range(2, 1000):
            if f"{key}:{n}" not in self._loaded:
                return f"{key}:{n}"
        raise APIError("Too many instances of this model.", 409)

    def _evict_jit_models(self, kind: str) -> None:
        """Auto-evict: the previous JIT model of the same type ("llm" or "embeddings") goes,
        after finishing what it was doing; LM Studio keeps one of each."""
        for model in [m for m in self._loaded.values() if m.jit and m.info.type == kind]:
            self._unload_instance(model, cancel_running=False)

    def unload(self, identifier: str) -> LoadedModel:
        with self._lock:
            model = self.get_loaded(identifier)
            if model is None:
                raise APIError(f"No loaded model with identifier \"{identifier}\".", 404,
                               "invalid_request_error", "identifier", "model_not_found")
            self._unload_instance(model)
        return model

    def unload_all(self) -> list[LoadedModel]:
        with self._lock:
            models = list(self._loaded.values())
            for model in models:
                self._unload_instance(model)
        return models

    def _unload_instance(self, model: LoadedModel, cancel_running: bool = True) -> None:
        self._loaded.pop(model.identifier, None)
        model.close(wait=False, cancel_running=cancel_running)
        self._notify("unloaded", model)

    # -- what requests use ---------------------------------------------------------------
    def acquire(self, model: str, *, ttl: float | None = None,
                context_length: int | None = None) -> LoadedModel:
        """The instance a request should use, JIT-loading it when allowed."""
        if not isinstance(model, str) or not model.strip():
            raise bad_request("'model' is required and must be a string.", "model")
        while True:
            with self._lock:
                loaded = self.get_loaded(model)
                if loaded is not None:
                    if ttl is not None and loaded.jit:
                        loaded.ttl = ttl
                    loaded.last_used = time.time()
                    return loaded
                if not self.jit:
                    raise APIError(f"Model \"{model}\" is not loaded and JIT loading is off. "
                                   f"Load it first.", 404, "invalid_request_error", "model",
                                   "model_not_found")
                info, _variant = self.resolve_model(model)
                pending = self._loading.get(info.key)
                if pending is None:
                    pending = self._loading[info.key] = threading.Event()
                    break
            pending.wait()  # someone else is JIT-loading it: use theirs
        try:
            return self.load(model, ttl=ttl, context_length=context_length, jit=True)
        finally:
            with self._lock:
                self._loading.pop(info.key, None)
            pending.set()

    def resolve_draft(self, model: str) -> tuple[ModelInfo, ModelVariant]:
        try:
            return self.resolve_model(model)
        except APIError as exc:
            exc.param = "draft_model"
            raise

    def acquire_draft(self, model: str) -> LoadedModel:
        """A draft model for speculative decoding: the loaded instance, or a new load.

        A draft loaded here is not a JIT model (loading it must not evict the main model
        it drafts for) but it gets the JIT idle TTL so it does not stay forever.
        """
        loaded = self.get_loaded(model)
        if loaded is None:
            if not self.jit:
                raise APIError(f"Draft model \"{model}\" is not loaded and JIT loading is off. "
                               "Load it first.", 404, "invalid_request_error", "draft_model",
                               "model_not_found")
            self.resolve_draft(model)
            try:
                loaded = self.load(model, ttl=self.default_ttl)
            except APIError as exc:
                loaded = self.get_loaded(model)  # loaded concurrently by another request
                if loaded is None or exc.code != "identifier_in_use":
                    raise
        loaded.last_used = time.time()
        return loaded

    # -- idle TTL --------------------------------------------------------------------------
    def _reap_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.reap_idle()

    def reap_idle(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        unloaded = []
        with self._lock:
            for model in list(self._loaded.values()):
                if model.ttl is None or model.busy:
                    continue
                if now - model.last_used >= model.ttl:
                    self._unload_instance(model)
                    unloaded.append(model.identifier)
        return unloaded

    def shutdown(self) -> None:
        self._stop.set()
        for model in self.unload_all():
            model.close(wait=True)
