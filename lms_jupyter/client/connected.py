"""A kernel connected to a server: the manager and API objects the kernel uses, over HTTP.

After ``%lms connect`` the kernel's runtime hands out a :class:`ConnectedManager` and a
:class:`ConnectedAPI` instead of the in-process ``ModelManager`` and ``OpenAICompatAPI``.
They answer the same calls (``catalog.models()``, ``list_loaded()``, ``load()``,
``unload()``, ``estimate()``, ``start_chat()``, ``embeddings_sync()``, ...) using only
the server's HTTP API, so ``%lms``, ``%%chat``, the widgets and ``lms_jupyter.embed``
work unchanged, and the models live once, in the server. What is asked:

- models: ``GET /api/v1/models`` (LM Studio 0.4 and lms-jupyter), else ``/api/v0/models``;
- loaded instances: ``GET /api/v0/ps`` (lms-jupyter's ``lms ps --json`` rows), else the
  ``loaded_instances`` of ``/api/v1/models`` (LM Studio);
- load / unload / estimate / download: LM Studio 0.4's ``/api/v1/models/...``;
- chat: ``/v1/chat/completions`` streamed, read by the same relay and chunk decoder the
  server uses for remote engines (``engine.remote.models``, ``api.openai.decode``);
- embeddings: ``/v1/embeddings``; logs: ``/api/v0/logs/stream``.
"""

from __future__ import annotations

import threading
import time
from pathlib import PurePosixPath

from lms_jupyter.api.drive import Generation
from lms_jupyter.api.openai import requests
from lms_jupyter.api.remote import prepare_remote_chat
from lms_jupyter.client.discovery import Target
from lms_jupyter.engine.remote.engine import EngineClient, EngineConfig
from lms_jupyter.engine.remote.models import RemoteModel, RemoteModelInfo, RemoteVariant
from lms_jupyter.errors import APIError, model_not_found
from lms_jupyter.models.catalog import ModelNotFound

LOAD_TIMEOUT = 900.0


class ServerModelInfo(RemoteModelInfo):
    """A model the server lists (``/api/v1/models`` entry)."""

    device = "Server"
    owner = "organization_owner"


class _ReportedCrash:
    """A crash as the server's ``ps`` row reports it."""

    def __init__(self, report: dict):
        self.report = report
        self.reason = str(report.get("reason") or "crashed")

    def as_dict(self) -> dict:
        return dict(self.report)


class ServerInstance(RemoteModel):
    """A loaded instance on the server (a ``ps`` row), with the state the server reports."""

    def __init__(self, client, row: dict, info):
        super().__init__(client, row["identifier"], row["identifier"], kind="lmstudio")
        self.row = row
        self.info = info
        self.variant = info.default_variant
        self.config.context_length = int(row.get("contextLength") or 0)
        ttl_ms = row.get("ttlMs")
        self.ttl = ttl_ms / 1000 if isinstance(ttl_ms, (int, float)) else None
        self.jit = bool(row.get("jit"))
        last = row.get("lastUsedTime")
        self.last_used = last / 1000 if isinstance(last, (int, float)) else time.time()
        loaded = row.get("loadedAt")
        self.loaded_at = loaded / 1000 if isinstance(loaded, (int, float)) else self.last_used
        self.estimated_bytes = int(row.get("estimatedMemoryBytes") or 0)

    @property
    def status(self) -> str:
        return self.row.get("status") or "idle"

    @property
    def slots(self) -> int | None:
        value = self.row.get("parallel")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def crash(self):
        """The server's crash report of this instance (``ps`` row ``crash``), if any."""
        report = self.row.get("crash")
        return _ReportedCrash(report) if isinstance(report, dict) else None

    @property
    def queued(self) -> int:
        return int(self.row.get("queued") or 0)

    def snapshot(self) -> dict:
        snap = super().snapshot()
        snap.update(
            {
                "modelKey": self.info.key,
                "ttlSeconds": self.ttl,
                "jit": self.jit,
                "sizeBytes": self.row.get("sizeBytes") or self.variant.size_bytes,
            }
        )
        if self.row.get("parallel") is not None:  # the server's slots (ps PARALLEL)
            snap["parallel"] = self.row["parallel"]
        for key in ("kvCacheType", "flashAttention"):  # the server's worker's (ps KV)
            if self.row.get(key) is not None:
                snap[key] = self.row[key]
        return snap


def _variant(publisher: str, key: str, entry: dict, quantization: str | None = None):
    quant = entry.get("quantization")
    name = quant.get("name") if isinstance(quant, dict) else quant
    variant = RemoteVariant(
        PurePosixPath(publisher, key),
        entry.get("architecture") or entry.get("arch") or "unknown",
        quantization or name or "unknown",
    )
    variant.size_bytes = int(entry.get("size_bytes") or 0) if quantization is None else 0
    variant.max_context_length = int(entry.get("max_context_length") or 0)
    variant.is_embedding = entry.get("type") in ("embedding", "embeddings")
    caps = entry.get("capabilities")
    if isinstance(caps, dict) and caps.get("trained_for_tool_use"):
        variant.capabilities = ["tool_use"]
    elif isinstance(caps, list):
        variant.capabilities = list(caps)
    if variant.is_embedding:
        variant.capabilities = ["embedding"]
    variant.params_string = entry.get("params_string") or ""
    return variant


def info_from_v1(entry: dict) -> ServerModelInfo:
    key, publisher = entry["key"], entry.get("publisher") or "unknown"
    main = _variant(publisher, key, entry)
    variants = [main]
    for variant_id in entry.get("variants") or []:
        quant = variant_id.rpartition("@")[2] if "@" in variant_id else None
        if quant and variant_id != entry.get("selected_variant"):
            variants.append(_variant(publisher, key, entry, quant.upper()))
    return ServerModelInfo(key, publisher, variants)


def info_from_v0(entry: dict) -> ServerModelInfo:
    key, publisher = entry["id"], entry.get("publisher") or "unknown"
    return ServerModelInfo(key, publisher, [_variant(publisher, key, entry)])


class ConnectedCatalog:
    """The server's models (re-read on every call: they change as others load)."""

    models_dir = None

    def __init__(self, manager: ConnectedManager):
        self.manager = manager

    def models(self) -> list:
        return self.manager.listing()[0]

    def resolve(self, model: str):
        wanted, _, quant = (model or "").strip().partition("@")
        infos = self.models()
        for info in infos:
            if wanted.lower() in (info.key.lower(), f"{info.publisher.lower()}/{info.key}".lower()):
                variant = (
                    info.variant(quant)
                    if not quant
                    else next(
                        (v for v in info.variants if v.quantization.lower() == quant.lower()), None
                    )
                )
                if variant is not None:
                    return info, variant
        raise ModelNotFound(model, [i.key for i in infos])


class ConnectedManager:
    """The ``ModelManager`` calls the kernel makes, answered by a server over HTTP."""

    jit_loading = False  # the server JIT-loads on the first request; nothing to do here

    def __init__(self, target: Target, timeout: float = 300.0):
        self.target = target
        config = EngineConfig("server", [target.root], "lmstudio", target.token, timeout=timeout)
        self.client = EngineClient(config)
        self.catalog = ConnectedCatalog(self)

    @property
    def connection(self) -> Target:
        return self.target

    def describe(self) -> str:
        return f"Connected to {self.target.description}."

    def _get(self, path: str):
        return self.client.call("GET", path, timeout=30.0)

    # -- listings ----------------------------------------------------------------------------
    def listing(self) -> tuple[list, list]:
        """(model infos, loaded instances) as the server reports them now."""
        try:
            entries = self._get("/api/v1/models").get("models") or []
            infos = [info_from_v1(e) for e in entries if isinstance(e, dict) and e.get("key")]
        except APIError as exc:
            if exc.status not in (404, 405):
                raise
            entries = None
            data = self._get("/api/v0/models").get("data") or []
            infos = [info_from_v0(e) for e in data if isinstance(e, dict) and e.get("id")]
        by_key: dict[str | None, RemoteModelInfo] = {info.key: info for info in infos}
        try:
            rows = [
                r
                for r in self._get("/api/v0/ps").get("data") or []
                if isinstance(r, dict) and r.get("identifier") and r.get("status") != "loading"
            ]
        except APIError as exc:
            if exc.status not in (404, 405):
                raise
            rows = [
                {
                    "identifier": inst.get("id"),
                    "modelKey": e.get("key"),
                    "contextLength": (inst.get("config") or {}).get("context_length"),
                    "status": "idle",
                    "queued": 0,
                }
                for e in entries or []
                for inst in e.get("loaded_instances") or []
            ]
        loaded = []
        for row in rows:
            info = by_key.get(row.get("modelKey")) or by_key.get(row["identifier"])
            if info is None:
                info = ServerModelInfo(
                    row.get("modelKey") or row["identifier"],
                    row.get("publisher") or "unknown",
                    [RemoteVariant(PurePosixPath(row["identifier"]))],
                )
            loaded.append(ServerInstance(self.client, row, info))
        return infos, loaded

    def list_loaded(self) -> list:
        return self.listing()[1]

    def list_crashed(self) -> list:
        return [m for m in self.list_loaded() if m.crash is not None]

    def list_instances(self) -> list:
        """``lms ps``: the server's rows, its crashed instances among them."""
        return self.list_loaded()

    def get_loaded(self, name: str):
        wanted = (name or "").lower()
        for model in self.list_loaded():
            if wanted in (
                model.identifier.lower(),
                model.info.key.lower(),
                f"{model.info.publisher.lower()}/{model.info.key}".lower(),
            ):
                return model
        return None

    def resolve_model(self, name: str, param: str = "model"):
        try:
            return self.catalog.resolve(name)
        except ModelNotFound as exc:
            error = model_not_found(name, exc.known)
            error.param = param
            raise error from None

    # -- load / unload / estimate ------------------------------------------------------------
    def load(self, request, *, jit: bool = False, progress=None):
        """POST /api/v1/models/load; progress follows the server's ``ps`` loading row."""
        body = request.wire_body()
        done = threading.Event()
        if progress is not None:
            threading.Thread(
                target=self._follow_load,
                args=(request, progress, done),
                daemon=True,
                name="lms-connected-load",
            ).start()
        try:
            result = self.client.call("POST", "/api/v1/models/load", body, timeout=LOAD_TIMEOUT)
        finally:
            done.set()
        instance = self.get_loaded(result.get("instance_id") or request.model)
        if instance is None:
            raise APIError(
                f"The server loaded {request.model} but does not list it.", 502, "server_error"
            )
        instance.load_time_seconds = float(result.get("load_time_seconds") or 0.0)
        return instance

    def _follow_load(self, request, progress, done: threading.Event) -> None:
        while not done.wait(0.25):
            try:
                rows = self._get("/api/v0/ps").get("data") or []
            except APIError:
                return
            for row in rows:
                if row.get("status") == "loading" and request.model.lower() in (
                    str(row.get("modelKey", "")).lower(),
                    str(row.get("identifier", "")).lower(),
                ):
                    progress(float(row.get("loadProgress") or 0.0))

    def unload(self, identifier: str):
        model = self.get_loaded(identifier)
        if model is None:
            raise APIError(
                f'No loaded model with identifier "{identifier}".',
                404,
                "invalid_request_error",
                "identifier",
                "model_not_found",
            )
        self.client.call("POST", "/api/v1/models/unload", {"instance_id": model.identifier})
        return model

    def unload_all(self) -> list:
        done = []
        for model in self.list_loaded():
            try:
                self.client.call("POST", "/api/v1/models/unload", {"instance_id": model.identifier})
                done.append(model)
            except APIError as exc:  # a remote engine's always-loaded model
                if exc.code != "not_unloadable":
                    raise
        return done

    def estimate(
        self, model: str, *, context_length=None, gpu=None, flash_attention=None, parallel=None
    ) -> dict:
        body = {"model": model}
        for name, value in (
            ("context_length", context_length),
            ("gpu", gpu),
            ("flash_attention", flash_attention),
            ("parallel", parallel),
        ):
            if value is not None:
                body[name] = value
        try:
            return self.client.call("POST", "/api/v1/models/estimate", body)
        except APIError as exc:
            if exc.status in (404, 405):
                raise APIError(
                    f"{self.target.root} has no memory estimate endpoint "
                    "(/api/v1/models/estimate).",
                    404,
                ) from None
            raise

    def acquire(self, model: str, **_ignored):
        """The instance to use; the server JIT-loads a model that is not loaded yet."""
        return self.get_loaded(model) or RemoteModel(self.client, model, model, kind="lmstudio")

    # -- downloads (``lms get`` on the server) -----------------------------------------------
    def download(self, model: str, quantization: str | None, view) -> dict:
        body = {"model": model}
        if quantization:
            body["quantization"] = quantization
        job = self.client.call("POST", "/api/v1/models/download", body, timeout=120.0)
        started = time.monotonic()
        while job.get("status") in ("downloading", "paused") and job.get("job_id"):
            view.update(
                int(job.get("downloaded_bytes") or 0),
                int(job.get("total_size_bytes") or 0),
                float(job.get("bytes_per_second") or 0.0),
            )
            time.sleep(0.5)
            job = self._get(f"/api/v1/models/download/status/{job['job_id']}")
            if time.monotonic() - started > 24 * 3600:
                break
        return job

    def subscribe(self, listener):
        return lambda: None  # the server's changes show on refresh

    def shutdown(self) -> None:
        self.client.close()


class ConnectedAPI:
    """The ``OpenAICompatAPI`` calls the kernel makes (``%%chat``, widgets, embed)."""

    reasoning_field = "both"

    def __init__(self, manager: ConnectedManager):
        self.manager = manager

    def chat_request(self, body) -> requests.ChatRequest:
        """Checked here (a mistake is a clear error before anything is sent); the server
        applies presets and everything else."""
        return requests.chat_request(body)

    def start_chat(self, request: requests.ChatRequest, channel=None) -> Generation:
        model = RemoteModel(self.manager.client, request.model, request.model, kind="lmstudio")
        return Generation(prepare_remote_chat(model, request, self.reasoning_field), channel)

    def embeddings_sync(self, body) -> dict:
        return self.manager.client.call("POST", "/v1/embeddings", body)
