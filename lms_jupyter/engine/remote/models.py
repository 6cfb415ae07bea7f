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

The configured engines themselves (model lists, health, load/unload) are
:mod:`.remote_engines`'.
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

from lms_jupyter.engine.events import (
    Failed,
    Started,
)
from lms_jupyter.engine.instance import Capabilities
from lms_jupyter.engine.remote import usage as remote_usage
from lms_jupyter.engine.remote.engine import EngineClient, transport_error
from lms_jupyter.engine.remote.relay import RemoteRequest, UpstreamChunk, _Relay  # noqa: F401 - RemoteRequest and UpstreamChunk are imported from here
from lms_jupyter.errors import APIError

log = logging.getLogger(__name__)

STATUS_IDLE, STATUS_GENERATING = "idle", "generating"


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
    parallel: int | None = None  # the engine's own slots: not known from here


class RemoteModel:
    """One model of a remote engine (see the module docstring)."""

    # the engine renders prompts with its own template and owns the model's memory
    capabilities = Capabilities(
        chat=True,
        completion=True,
        embeddings=True,
        tools=True,
        draft=True,
        renders_prompt=True,
        vocabulary=False,
        restartable=False,
        managed_here=False,
    )

    @property
    def crash(self) -> object | None:
        """None: an engine's failures are 502s of their requests, never a crash here (a
        connected server's instances report the server's, :mod:`lms_jupyter.client`)."""
        return None

    def __init__(
        self,
        client: EngineClient,
        upstream_id: str,
        identifier: str | None = None,
        *,
        kind: str = "openai",
    ):
        self.client = client
        self.engine = client.name
        self.kind = kind
        self.upstream_id = upstream_id
        self.identifier = identifier or f"{client.name}/{upstream_id}"
        self.variant = RemoteVariant(PurePosixPath(client.name, *upstream_id.split("/")))
        self.info = RemoteModelInfo(self.identifier, client.name, [self.variant])
        self.config = RemoteConfig()
        self.state = "loaded"  # LM Studio's /api/v0 state, or always loaded (OpenAI)
        self.ttl: float | None = None
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

    @property
    def slots(self) -> int | None:
        """Requests the engine serves at once for this model (None: it does not say)."""
        return self.config.parallel

    def update(self, entry: dict) -> None:
        """Take the facts an engine reports (LM Studio's /api/v0 model object)."""
        variant = self.variant
        variant.arch = entry.get("arch") or variant.arch
        variant.quantization = entry.get("quantization") or variant.quantization
        variant.max_context_length = int(entry.get("max_context_length") or 0)
        caps = entry.get("capabilities")
        variant.capabilities = list(caps) if isinstance(caps, list) else []
        variant.is_embedding = (
            entry.get("type") in ("embeddings", "embedding") or "embedding" in variant.capabilities
        )
        self.config.context_length = int(
            entry.get("loaded_context_length") or variant.max_context_length or 0
        )
        state = entry.get("state")
        self.state = state if state in ("loaded", "not-loaded") else "loaded"

    def snapshot(self) -> dict:
        return {
            "identifier": self.identifier,
            "modelKey": self.identifier,
            "path": str(self.variant.path),
            "type": self.info.type,
            "status": self.status,
            "queued": self.queued,
            "contextLength": self.config.context_length,
            "ttlSeconds": None,
            "jit": False,
            "lastUsedTime": self.last_used,
            "loadedAt": self.loaded_at,
            "sizeBytes": 0,
            "quantization": self.variant.quantization,
            "arch": self.variant.arch,
            "engine": self.engine,
        }

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
            threading.Thread(
                target=self._relay_sync,
                args=(request, channel),
                daemon=True,
                name=f"lms-remote-{self.identifier}",
            ).start()

    async def _relay_async(self, request: RemoteRequest, channel) -> None:
        relay, upstream = _Relay(self.engine, request, channel), None
        try:
            upstream = await self.client.aopen("POST", request.path, request.body)
            channel.put(Started(0))
            response = upstream.response
            if not request.stream:
                await response.aread()
                relay.whole(self.client._json(response))
                return
            async for line in response.aiter_lines():
                if not relay.line(line):
                    break
            if relay.report.usage is None and not relay.failed:  # the engine sent none
                relay.report.usage = await remote_usage.aestimate(
                    self.client, request.body, "".join(relay.report.text)
                )
            relay.end()
        except asyncio.CancelledError:
            relay.cancelled()
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
        relay, upstream = _Relay(self.engine, request, channel), None
        try:
            if channel.cancelled:
                return
            upstream = self.client.open("POST", request.path, request.body)
            channel.put(Started(0))
            response = upstream.response
            if not request.stream:
                response.read()
                relay.whole(self.client._json(response))
                return
            for line in response.iter_lines():
                if channel.cancelled:  # a blocking read has no task to cancel
                    relay.cancelled()
                    return
                if not relay.line(line):
                    break
            if relay.report.usage is None and not relay.failed:  # the engine sent none
                relay.report.usage = remote_usage.estimate(
                    self.client, request.body, "".join(relay.report.text)
                )
            relay.end()
        except APIError as exc:
            channel.put(Failed(exc))
        except Exception as exc:  # noqa: BLE001
            if channel.cancelled:
                relay.cancelled()
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
                future.set_exception(
                    APIError(
                        f"Remote embedding failed: {exc}",
                        502,
                        "server_error",
                        None,
                        "upstream_error",
                    )
                )
            finally:
                self._end()

        threading.Thread(target=run, daemon=True, name="lms-remote-embed").start()
        return future

    def _embed(self, texts: list[str], truncate: bool):
        import numpy as np

        from lms_jupyter.engine.events import EmbeddingResult

        body: dict[str, object] = {
            "model": self.upstream_id,
            "input": list(texts),
            "encoding_format": "base64",
        }
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
            raise APIError(
                f'Remote engine "{self.engine}" returned {len(rows)} embeddings '
                f"for {len(texts)} inputs.",
                502,
                "server_error",
                None,
                "upstream_error",
            )
        vectors: np.ndarray = np.vstack(rows).astype(np.float32)  # float32 throughout
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1.0)
        usage = data.get("usage") or {}
        return EmbeddingResult(
            vectors, int(usage.get("prompt_tokens") or 0), list(data.get("truncated") or [])
        )
