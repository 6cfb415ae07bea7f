"""The models of remote engines, as the manager and the API see them.

A :class:`RemoteModel` is the remote counterpart of :class:`~.model.LoadedModel`: it
has an identifier (``<engine>/<upstream id>``), the facts the listings show (``info``,
``variant``, ``config``, ``status``, ``queued``, ``snapshot()``), and runs work given to
it: :meth:`RemoteModel.generate` relays a request to the engine and puts what comes back
on the same :class:`~.channel.EventChannel` a local generation uses (``Started``, then
the engine's chunks as :class:`UpstreamChunk` (chat) or ``TextDelta`` (text), then
``Finished`` or ``Failed``), and :meth:`RemoteModel.embed` returns a future of an
``EmbeddingResult``. On a channel made for an event loop (the server) the relay is an
asyncio task on that loop; on a plain channel (a kernel) it is a thread with blocking
httpx. Cancelling the channel closes the upstream request.

:class:`RemoteEngines` holds every configured engine: it keeps their model lists and
replica health fresh on a background thread (so listings never wait on the network)
and maps load/unload to LM Studio's REST API for ``kind: "lmstudio"`` engines.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ..errors import APIError, bad_request, model_not_found
from ..models.catalog import ModelNotFound
from .events import (STOP_EOS, STOP_MAX_TOKENS, STOP_USER, Failed, Finished, Started,
                     TextDelta)
from .remote import EngineClient, EngineConfig, transport_error
from .sse import SSEParser

log = logging.getLogger(__name__)

STATUS_IDLE, STATUS_GENERATING = "idle", "generating"


@dataclass
class UpstreamChunk:
    """One chunk of a remote chat answer, as the engine sent it (decoded by the API's
    ``ChunkOutput`` into answer events). A non-streamed answer is one chunk."""

    payload: dict


@dataclass
class RemoteRequest:
    """What to send: the engine path and the wire body (``model`` = the upstream id)."""

    path: str
    body: dict
    stream: bool = True
    text: bool = False  # a text completion: chunks carry choices[0].text


# -- the facts listings show (the shapes of models.catalog and engine.options) ------------

@dataclass
class RemoteVariant:
    path: PurePosixPath
    arch: str = "remote"
    quantization: str = "unknown"
    size_bytes: int = 0
    max_context_length: int = 0
    capabilities: list = field(default_factory=list)
    is_embedding: bool = False
    header: dict = field(default_factory=dict)
    chat_template = None
    params_string = ""
    n_params = 0
    bits_per_weight = 0.0

    def arch_value(self, name: str, default=None):
        return default

    @property
    def supports_tools(self) -> bool:
        return "tool_use" in self.capabilities


@dataclass
class RemoteModelInfo:
    key: str  # the name requests use: <engine>/<upstream id>
    publisher: str  # the engine's name
    variants: list
    embedded: bool = False
    remote = True

    @property
    def default_variant(self):
        return self.variants[0]

    def variant(self, quantization):
        return self.variants[0]

    @property
    def type(self) -> str:
        return "embeddings" if self.variants[0].is_embedding else "llm"

    @property
    def variant_ids(self) -> list[str]:
        return [self.key]

    @property
    def owner(self) -> str:  # /v1/models owned_by
        return self.publisher

    @property
    def device(self) -> str:  # lms ls DEVICE column
        return self.publisher


@dataclass
class RemoteConfig:
    context_length: int = 0
    n_batch: int = 0
    flash_attention: bool = False
    n_gpu_layers: int = 0
    n_threads: int = 0


class _Report:
    """What the relay learns from the chunks it passes on: timings, usage, why it ended."""

    def __init__(self):
        self.started = time.perf_counter()
        self.first: float | None = None
        self.pieces = 0
        self.usage: dict | None = None
        self.finish: str | None = None
        self.stats: dict | None = None

    def see(self, payload: dict) -> None:
        for choice in payload.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") or choice.get("message") or {}
            if choice.get("text") or (isinstance(delta, dict) and any(
                    delta.get(k) for k in ("content", "reasoning_content", "reasoning",
                                           "tool_calls"))):
                self.pieces += 1
                if self.first is None:
                    self.first = time.perf_counter()
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        if isinstance(payload.get("usage"), dict):
            self.usage = payload["usage"]
        if isinstance(payload.get("stats"), dict):
            self.stats = payload["stats"]

    def finished(self, cancelled: bool = False) -> Finished:
        usage = self.usage or {}
        elapsed = time.perf_counter() - self.started
        ttft = (self.first - self.started) if self.first is not None else elapsed
        if cancelled:
            reason = STOP_USER
        elif isinstance((self.stats or {}).get("stop_reason"), str) \
                and self.stats["stop_reason"] != "toolCalls":
            reason = self.stats["stop_reason"]
        else:
            reason = STOP_MAX_TOKENS if self.finish == "length" else STOP_EOS
        details = usage.get("prompt_tokens_details") or {}
        return Finished(reason, int(usage.get("prompt_tokens") or 0),
                        int(usage.get("completion_tokens") or self.pieces), ttft, elapsed,
                        cached_tokens=int(details.get("cached_tokens") or 0)
                        if isinstance(details, dict) else 0)


def _in_stream_error(engine: str, payload: dict) -> APIError:
    error = payload.get("error")
    if isinstance(error, dict):
        kind = error.get("type") or "server_error"
        status = 400 if kind == "invalid_request_error" else 502
        return APIError(f"{error.get('message') or error} (remote engine \"{engine}\")",
                        status, kind, error.get("param"), error.get("code"))
    return APIError(f"Remote engine \"{engine}\" failed: {error}", 502, "server_error", None,
                    "upstream_error")


class RemoteModel:
    """One model of a remote engine (see the module docstring)."""

    relays_requests = True

    def __init__(self, client: EngineClient, upstream_id: str, identifier: str | None = None,
                 *, kind: str = "openai"):
        self.client = client
        self.engine = client.name
        self.kind = kind
        self.upstream_id = upstream_id
        self.identifier = identifier or f"{client.name}/{upstream_id}"
        self.variant = RemoteVariant(PurePosixPath(client.name, *upstream_id.split("/")))
        self.info = RemoteModelInfo(self.identifier, client.name, [self.variant])
        self.config = RemoteConfig()
        self.state = "loaded"  # LM Studio's /api/v0 state, or always loaded (OpenAI)
        self.ttl = None
        self.jit = False
        self.loaded_at = self.last_used = time.time()
        self.load_time_seconds = 0.0
        self.estimated_bytes = 0
        self._running = 0
        self._lock = threading.Lock()

    # -- what listings show ------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self.state == "loaded"

    @property
    def embedding_only(self) -> bool:
        return self.variant.is_embedding

    @property
    def queued(self) -> int:
        return self._running

    @property
    def busy(self) -> bool:
        return self._running > 0

    @property
    def status(self) -> str:
        return STATUS_GENERATING if self._running else STATUS_IDLE

    def update(self, entry: dict) -> None:
        """Take the facts an engine reports (LM Studio's /api/v0 model object)."""
        variant = self.variant
        variant.arch = entry.get("arch") or variant.arch
        variant.quantization = entry.get("quantization") or variant.quantization
        variant.max_context_length = int(entry.get("max_context_length") or 0)
        caps = entry.get("capabilities")
        variant.capabilities = list(caps) if isinstance(caps, list) else []
        variant.is_embedding = entry.get("type") in ("embeddings", "embedding") or \
            "embedding" in variant.capabilities
        self.config.context_length = int(entry.get("loaded_context_length")
                                         or variant.max_context_length or 0)
        state = entry.get("state")
        self.state = state if state in ("loaded", "not-loaded") else "loaded"

    def snapshot(self) -> dict:
        return {"identifier": self.identifier, "modelKey": self.identifier,
                "path": str(self.variant.path), "type": self.info.type, "status": self.status,
                "queued": self.queued, "contextLength": self.config.context_length,
                "ttlSeconds": None, "jit": False, "lastUsedTime": self.last_used,
                "loadedAt": self.loaded_at, "sizeBytes": 0,
                "quantization": self.variant.quantization, "arch": self.variant.arch,
                "engine": self.engine}

    def _begin(self) -> None:
        with self._lock:
            self._running += 1
        self.last_used = time.time()

    def _end(self) -> None:
        with self._lock:
            self._running = max(0, self._running - 1)
        self.last_used = time.time()

    # -- generation ----------------------------------------------------------------------
    def generate(self, request: RemoteRequest, channel) -> None:
        """Relay ``request``; its events go to ``channel`` (see the module docstring)."""
        self._begin()
        loop = channel.loop
        if loop is not None:
            future = asyncio.run_coroutine_threadsafe(self._relay_async(request, channel), loop)
            channel.on_cancel(future.cancel)
        else:
            threading.Thread(target=self._relay_sync, args=(request, channel), daemon=True,
                             name=f"lms-remote-{self.identifier}").start()

    def _deliver(self, payload, request: RemoteRequest, report: _Report, channel) -> bool:
        """Pass one chunk on; False when it was an error (reported as Failed)."""
        if not isinstance(payload, dict):
            channel.put(Failed(APIError(f"Remote engine \"{self.engine}\" sent a chunk that "
                                        "is not an object.", 502, "server_error", None,
                                        "upstream_error")))
            return False
        if "error" in payload and not payload.get("choices"):
            channel.put(Failed(_in_stream_error(self.engine, payload)))
            return False
        report.see(payload)
        if request.text:
            for choice in payload.get("choices") or []:
                if isinstance(choice, dict) and choice.get("text"):
                    channel.put(TextDelta(choice["text"]))
        else:
            channel.put(UpstreamChunk(payload))
        return True

    def _ended(self, report: _Report) -> Finished | Failed:
        if report.finish is None and report.usage is None and report.stats is None:
            return Failed(APIError(f"Remote engine \"{self.engine}\" ended the answer without "
                                   "finishing it.", 502, "server_error", None,
                                   "upstream_disconnected"))
        return report.finished()

    async def _relay_async(self, request: RemoteRequest, channel) -> None:
        report, upstream = _Report(), None
        try:
            upstream = await self.client.aopen("POST", request.path, request.body)
            channel.put(Started(0))
            response = upstream.response
            if not request.stream:
                await response.aread()
                if self._deliver(self.client._json(response), request, report, channel):
                    channel.put(report.finished())
                return
            parser, ended = SSEParser(), False
            async for line in response.aiter_lines():
                event = parser.line(line)
                if event is None:
                    continue
                if event.done:
                    ended = True
                    break
                if not self._deliver(self._payload(event), request, report, channel):
                    return
            channel.put(report.finished() if ended else self._ended(report))
        except asyncio.CancelledError:
            channel.put(report.finished(cancelled=True))
        except APIError as exc:
            channel.put(Failed(exc))
        except Exception as exc:  # noqa: BLE001 - the engine broke off mid-answer
            channel.put(Failed(self._broken(exc, upstream)))
        finally:
            if upstream is not None:
                try:
                    await upstream.response.aclose()
                except BaseException:  # noqa: BLE001 - closing must never raise
                    pass
                upstream.release()
            self._end()
            channel.close()

    def _relay_sync(self, request: RemoteRequest, channel) -> None:
        report, upstream = _Report(), None
        try:
            if channel.cancelled:
                return
            upstream = self.client.open("POST", request.path, request.body)
            channel.put(Started(0))
            response = upstream.response
            if not request.stream:
                response.read()
                if self._deliver(self.client._json(response), request, report, channel):
                    channel.put(report.finished())
                return
            parser, ended = SSEParser(), False
            for line in response.iter_lines():
                if channel.cancelled:
                    channel.put(report.finished(cancelled=True))
                    return
                event = parser.line(line)
                if event is None:
                    continue
                if event.done:
                    ended = True
                    break
                if not self._deliver(self._payload(event), request, report, channel):
                    return
            channel.put(report.finished() if ended else self._ended(report))
        except APIError as exc:
            channel.put(Failed(exc))
        except Exception as exc:  # noqa: BLE001
            if channel.cancelled:
                channel.put(report.finished(cancelled=True))
            else:
                channel.put(Failed(self._broken(exc, upstream)))
        finally:
            if upstream is not None:
                try:
                    upstream.response.close()
                except Exception:  # noqa: BLE001
                    pass
                upstream.release()
            self._end()
            channel.close()

    def _payload(self, event):
        try:
            return event.json()
        except ValueError as exc:
            return {"error": f"the stream carried {exc}"}

    def _broken(self, exc: Exception, upstream) -> APIError:
        replica = upstream.replica if upstream is not None else None
        if replica is not None:
            self.client.pool.mark_down(replica, f"broke off a stream: {exc}")
        return transport_error(self.engine, exc, replica, mid_stream=True)

    # -- embeddings ----------------------------------------------------------------------
    def embed(self, texts: list[str], truncate: bool = False) -> Future:
        """A future of an ``EmbeddingResult`` computed by the engine (float32 rows)."""
        future: Future = Future()

        def run():
            if not future.set_running_or_notify_cancel():
                return
            self._begin()
            try:
                future.set_result(self._embed(texts, truncate))
            except APIError as exc:
                future.set_exception(exc)
            except Exception as exc:  # noqa: BLE001
                future.set_exception(APIError(f"Remote embedding failed: {exc}", 502,
                                              "server_error", None, "upstream_error"))
            finally:
                self._end()

        threading.Thread(target=run, daemon=True, name="lms-remote-embed").start()
        return future

    def _embed(self, texts: list[str], truncate: bool):
        import numpy as np

        from .embedding import EmbeddingResult

        body = {"model": self.upstream_id, "input": list(texts), "encoding_format": "base64"}
        if truncate and self.kind == "lmstudio":
            body["truncate"] = True
        data = self.client.call("POST", "/v1/embeddings", body)
        rows = []
        for item in sorted(data.get("data") or [], key=lambda d: d.get("index", 0)):
            value = item.get("embedding")
            if isinstance(value, str):
                rows.append(np.frombuffer(base64.b64decode(value), dtype="<f4"))
            else:
                rows.append(np.asarray(value, dtype=np.float32))
        if len(rows) != len(texts):
            raise APIError(f"Remote engine \"{self.engine}\" returned {len(rows)} embeddings "
                           f"for {len(texts)} inputs.", 502, "server_error", None,
                           "upstream_error")
        vectors = np.vstack(rows).astype(np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1.0)
        usage = data.get("usage") or {}
        return EmbeddingResult(vectors, int(usage.get("prompt_tokens") or 0),
                               list(data.get("truncated") or []))


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
            model = self.models[upstream] = RemoteModel(self.client, upstream,
                                                        kind=self.config.kind)
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
                log.debug("lms_jupyter: engine %s has no /api/v0/models: %s", self.name,
                          exc.message)
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
        return {"name": self.name, "kind": self.config.kind,
                "replicas": [r.as_dict() for r in self.client.pool.replicas],
                "models": [m.upstream_id for m in self.listed()],
                "error": self.list_error}


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
            self.log.info("lms_jupyter: remote engine %s (%s) at %s", config.name, config.kind,
                          ", ".join(config.base_urls))
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._monitor, name="lms-remote-monitor",
                                        daemon=True)
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
            engine, upstream = self.split(name)
            if not engine.allowed(upstream):
                raise APIError(f"Model \"{upstream}\" is not in remote engine "
                               f"\"{engine.name}\"'s models list.", 404,
                               "invalid_request_error", param, "model_not_found")
            known = [m.identifier for m in engine.listed()]
            error = model_not_found(name, known)
            if engine.list_error:
                error.message += f" (engine \"{engine.name}\": {engine.list_error})"
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
        body = {"model": model.upstream_id}
        for name in ("context_length", "ttl", "identifier", "flash_attention", "gpu"):
            value = getattr(request, name, None)
            if value is not None:
                body[name] = value
        if getattr(request, "force", False):
            body["force"] = True
        result = engine.client.call("POST", "/api/v1/models/load", body, timeout=600.0)
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
            raise bad_request(f"\"{model.identifier}\" is served by the OpenAI-compatible "
                              f"engine \"{engine.name}\", whose models are always loaded; it "
                              "cannot be unloaded from here.", "identifier", "not_unloadable")
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
                except Exception:  # noqa: BLE001 - the monitor must keep running
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
            raise ModelNotFound(model, exc.known + [m.identifier
                                                    for m in self.remotes.models()]) from None
