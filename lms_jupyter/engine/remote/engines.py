"""Every configured remote engine: its models, its health, and load/unload.

:class:`RemoteEngines` holds the engines of ``c.ModelManager.remote_engines``: one
background thread keeps their model lists (LM Studio's ``/api/v0/models`` states for
``kind: "lmstudio"``) and their replicas' health fresh, so listings never wait on the
network; load and unload map to LM Studio's REST API for ``kind: "lmstudio"`` engines
(OpenAI engines' models count as always loaded). :class:`RemoteCatalog` lists them with
the local catalog.
"""

from __future__ import annotations

import logging
import threading
import time

from lms_jupyter.engine.remote.engine import EngineClient, EngineConfig
from lms_jupyter.engine.remote.models import RemoteModel
from lms_jupyter.errors import APIError, bad_request, model_not_found
from lms_jupyter.models.catalog import ModelNotFound

log = logging.getLogger(__name__)


class RemoteEngine:
    """One configured engine: its client, its models, and how to load them."""

    def __init__(self, config: EngineConfig):
        self.config = config
        self.name = config.name
        self.client = EngineClient(config)
        self.models: dict[str, RemoteModel] = {}
        self.listed_at = 0.0
        self.list_error: str | None = None
        self._lock = threading.Lock()
        for upstream in config.models or []:
            self._model(upstream)

    def _model(self, upstream: str) -> RemoteModel:
        model = self.models.get(upstream)
        if model is None:
            model = self.models[upstream] = RemoteModel(
                self.client, upstream, kind=self.config.kind
            )
            if self.config.kind == "lmstudio":
                model.state = "not-loaded"
        return model

    def allowed(self, upstream: str) -> bool:
        return self.config.models is None or upstream in self.config.models

    def refresh(self) -> None:
        """Re-read the engine's models (and LM Studio's states) from a healthy replica."""
        listing = None
        for replica in self.client.pool.replicas:
            if replica.healthy or not replica.checked_at:
                listing = self.client.probe(replica)
                if listing is not None:
                    break
        self.listed_at = time.monotonic()
        if listing is None:
            self.list_error = "no replica answered /v1/models"
            return
        entries: dict[str, dict] = {}
        if self.config.kind == "lmstudio":
            try:
                v0 = self.client.call("GET", "/api/v0/models", timeout=5.0)
                for entry in v0.get("data") or []:
                    if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                        entries[entry["id"]] = entry
            except APIError as exc:
                log.debug(
                    "lms_jupyter: engine %s has no /api/v0/models: %s", self.name, exc.message
                )
        for entry in listing.get("data") or [] if isinstance(listing, dict) else []:
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                # an id only /v1/models lists is a loaded instance (custom identifier)
                entries.setdefault(entry["id"], {"id": entry["id"], "state": "loaded"})
        with self._lock:
            for upstream, entry in entries.items():
                if self.allowed(upstream):
                    model = self._model(upstream)
                    model.update(entry)
                    if "embed" in upstream.lower() and "type" not in entry:
                        model.variant.is_embedding = True
            for upstream, model in self.models.items():
                if upstream not in entries and self.config.kind == "lmstudio":
                    model.state = "not-loaded"
        self.list_error = None

    def listed(self) -> list[RemoteModel]:
        with self._lock:
            return list(self.models.values())

    def status(self) -> dict:
        return {
            "name": self.name,
            "kind": self.config.kind,
            "replicas": [r.as_dict() for r in self.client.pool.replicas],
            "models": [m.upstream_id for m in self.listed()],
            "error": self.list_error,
        }


class RemoteEngines:
    """Every configured engine, kept fresh by one background thread."""

    tick = 1.0  # seconds between monitor passes (a down replica is re-checked each pass)

    def __init__(self, entries: dict, logger=None):
        self.log = logger or log
        self.engines: dict[str, RemoteEngine] = {}
        for name, entry in (entries or {}).items():
            try:
                config = EngineConfig.from_entry(name, entry)
            except ValueError as exc:
                self.log.error("lms_jupyter: remote engine ignored: %s", exc)
                continue
            self.engines[config.name] = RemoteEngine(config)
            self.log.info(
                "lms_jupyter: remote engine %s (%s) at %s",
                config.name,
                config.kind,
                ", ".join(config.base_urls),
            )
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(
            target=self._monitor, name="lms-remote-monitor", daemon=True
        )
        self._thread.start()

    # -- names ---------------------------------------------------------------------------
    def split(self, name: str) -> tuple[RemoteEngine, str] | None:
        """(engine, upstream id) for ``<engine>/<upstream id>``, else None."""
        if not isinstance(name, str) or "/" not in name:
            return None
        engine_name, _, upstream = name.strip().partition("/")
        engine = self.engines.get(engine_name)
        if engine is None:
            lowered = {n.lower(): e for n, e in self.engines.items()}
            engine = lowered.get(engine_name.lower())
        return (engine, upstream) if engine is not None and upstream else None

    def owns(self, name: str) -> bool:
        return self.split(name) is not None

    def model(self, name: str) -> RemoteModel | None:
        """The model a request names, if its engine lists it (or the allow-list does)."""
        found = self.split(name)
        if found is None:
            return None
        engine, upstream = found
        with engine._lock:
            model = engine.models.get(upstream)
            if model is None:
                matches = [m for u, m in engine.models.items() if u.lower() == upstream.lower()]
                model = matches[0] if matches else None
        return model

    def require(self, name: str, param: str = "model") -> RemoteModel:
        model = self.model(name)
        if model is None:
            found = self.split(name)
            if found is None:  # not "<engine>/<model>" (callers ask owns() first)
                error = model_not_found(name, [])
                error.param = param
                raise error
            engine, upstream = found
            if not engine.allowed(upstream):
                raise APIError(
                    f'Model "{upstream}" is not in remote engine "{engine.name}"\'s models list.',
                    404,
                    "invalid_request_error",
                    param,
                    "model_not_found",
                )
            known = [m.identifier for m in engine.listed()]
            error = model_not_found(name, known)
            if engine.list_error:
                error.message += f' (engine "{engine.name}": {engine.list_error})'
            error.param = param
            raise error
        return model

    def models(self) -> list[RemoteModel]:
        return [m for engine in self.engines.values() for m in engine.listed()]

    def loaded(self) -> list[RemoteModel]:
        return [m for m in self.models() if m.loaded]

    def get_loaded(self, name: str) -> RemoteModel | None:
        model = self.model(name)
        return model if model is not None and model.loaded else None

    # -- load / unload (LM Studio's REST API) ---------------------------------------------
    def load(self, request) -> RemoteModel:
        model = self.require(request.model)
        engine = self.engines[model.engine]
        if engine.config.kind != "lmstudio":
            return model  # an OpenAI engine serves whatever it lists: always loaded
        result = engine.client.call(
            "POST", "/api/v1/models/load", request.wire_body(model.upstream_id), timeout=600.0
        )
        engine.refresh()
        instance = result.get("instance_id") if isinstance(result, dict) else None
        loaded = self.model(f"{engine.name}/{instance}") if instance else None
        if loaded is None:
            loaded = model
        loaded.state = "loaded"
        return loaded

    def unload(self, model: RemoteModel) -> RemoteModel:
        engine = self.engines[model.engine]
        if engine.config.kind != "lmstudio":
            raise bad_request(
                f'"{model.identifier}" is served by the OpenAI-compatible '
                f'engine "{engine.name}", whose models are always loaded; it '
                "cannot be unloaded from here.",
                "identifier",
                "not_unloadable",
            )
        engine.client.call("POST", "/api/v1/models/unload", {"instance_id": model.upstream_id})
        model.state = "not-loaded"
        self._wake.set()
        return model

    # -- health and listings ---------------------------------------------------------------
    def _monitor(self) -> None:
        while not self._stop.is_set():
            for engine in list(self.engines.values()):
                if self._stop.is_set():
                    return
                try:
                    self._check(engine)
                except Exception:
                    self.log.exception("lms_jupyter: checking engine %s failed", engine.name)
            self._wake.wait(self.tick)
            self._wake.clear()

    def _check(self, engine: RemoteEngine) -> None:
        now = time.monotonic()
        interval = engine.config.health_interval
        for replica in engine.client.pool.replicas:
            if not replica.healthy and now - replica.checked_at >= self.tick * 0.9:
                engine.client.probe(replica)
        if now - engine.listed_at >= interval or self._wake.is_set():
            engine.refresh()
            return
        for replica in engine.client.pool.replicas:
            if replica.healthy and now - replica.checked_at >= interval:
                engine.client.probe(replica)

    def refresh_now(self) -> None:
        """Re-read every engine's models now (blocking; tests, after a change)."""
        for engine in self.engines.values():
            engine.refresh()

    def status(self) -> list[dict]:
        return [engine.status() for engine in self.engines.values()]

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        for engine in self.engines.values():
            engine.client.close()


class RemoteCatalog:
    """The local catalog plus the remote engines' models: ``models()`` lists both and
    ``resolve()`` finds both (an ``<engine>/`` prefix names a remote one); everything
    else is the local catalog's."""

    def __init__(self, local, remotes: RemoteEngines):
        self.local = local
        self.remotes = remotes

    def __getattr__(self, name):
        return getattr(self.local, name)

    def models(self) -> list:
        return self.local.models() + [m.info for m in self.remotes.models()]

    def resolve(self, model: str):
        if self.remotes.owns(model):
            remote = self.remotes.model(model)
            if remote is None:
                raise ModelNotFound(model, [m.key for m in self.models()])
            return remote.info, remote.variant
        try:
            return self.local.resolve(model)
        except ModelNotFound as exc:
            raise ModelNotFound(
                model, exc.known + [m.identifier for m in self.remotes.models()]
            ) from None
