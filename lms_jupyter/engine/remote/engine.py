"""Remote engines: an OpenAI-compatible server (LM Studio, llama.cpp's ``llama-server``,
vLLM, Ollama's ``/v1``, another lms-jupyter) reached over HTTP, as a pool of replicas.

This module is the transport: the engine's settings (:class:`EngineConfig`, from one
``c.ModelManager.remote_engines`` entry), its replicas with their health and requests in
flight (:class:`ReplicaPool`), and the HTTP calls themselves with httpx, asynchronous on
the server's event loop and blocking in a kernel. Every failure becomes an
:class:`~lms_jupyter.errors.APIError` with the status a client should see: the engine
unreachable is a 503, a broken or failed answer a 502, no answer in time a 504, and the
engine's own 4xx errors keep their status and message. Every call has bounded timeouts.

A request goes to the healthy replica with the fewest requests in flight; a replica
that cannot be connected to is taken out (the next replica gets the request, so nothing
was sent twice) until a health check finds it answering again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lms_jupyter.errors import APIError, rate_limited

if TYPE_CHECKING:
    import httpx  # imported where it is used: only remote engines need it

log = logging.getLogger(__name__)

KINDS = ("openai", "lmstudio")
DEFAULT_TIMEOUT = 300.0  # seconds without a byte from the engine (prompt processing)
CONNECT_TIMEOUT = 5.0
HEALTH_TIMEOUT = 3.0


def api_root(url: str) -> str:
    """The URL under which ``/v1`` (and LM Studio's ``/api``) live: a trailing ``/v1``
    (how OpenAI clients spell a base URL) and slashes are dropped."""
    url = url.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[:-3].rstrip("/")
    return url


@dataclass
class EngineConfig:
    """One ``remote_engines`` entry, checked."""

    name: str
    base_urls: list[str]
    kind: str = "openai"
    api_key: str | None = None
    models: list[str] | None = None  # allow-list of upstream ids (None: every model)
    timeout: float = DEFAULT_TIMEOUT
    health_interval: float = 10.0

    @classmethod
    def from_entry(cls, name: str, entry) -> EngineConfig:
        """``{"base_url" | "base_urls", "api_key" | "api_key_env", "kind", "models",
        "timeout", "health_interval"}``; a ValueError says what is wrong."""
        if not isinstance(name, str) or not name.strip() or "/" in name:
            raise ValueError(f"engine name {name!r} must be a non-empty string without '/'")
        if not isinstance(entry, dict):
            raise ValueError(f"engine {name!r}: the entry must be a dict")
        known = {
            "base_url",
            "base_urls",
            "api_key",
            "api_key_env",
            "kind",
            "models",
            "timeout",
            "health_interval",
        }
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ValueError(
                f"engine {name!r}: unknown settings {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        urls = entry.get("base_urls") or ([entry["base_url"]] if entry.get("base_url") else [])
        if isinstance(urls, str):
            urls = [urls]
        if not urls or not all(
            isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls
        ):
            raise ValueError(f"engine {name!r}: give base_url (or base_urls) as http(s) URLs")
        kind = entry.get("kind", "openai")
        if kind not in KINDS:
            raise ValueError(f"engine {name!r}: kind must be one of {', '.join(KINDS)}")
        key = entry.get("api_key")
        if key is None and entry.get("api_key_env"):
            key = os.environ.get(str(entry["api_key_env"]))
            if key is None:
                log.warning(
                    "lms_jupyter: engine %s: $%s is not set; sending no API key",
                    name,
                    entry["api_key_env"],
                )
        models = entry.get("models")
        if models is not None and not (
            isinstance(models, list) and all(isinstance(m, str) and m for m in models)
        ):
            raise ValueError(f"engine {name!r}: models must be a list of model ids")
        timeout = entry.get("timeout", DEFAULT_TIMEOUT)
        interval = entry.get("health_interval", 10.0)
        for label, value in (("timeout", timeout), ("health_interval", interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"engine {name!r}: {label} must be a positive number of seconds")
        return cls(
            name.strip(),
            [api_root(u) for u in urls],
            kind,
            key or None,
            list(models) if models else None,
            float(timeout),
            float(interval),
        )


@dataclass
class Replica:
    """One server of an engine."""

    url: str
    in_flight: int = 0
    healthy: bool = True
    served: int = 0  # requests sent here (for status pages and tests)
    last_error: str | None = None
    checked_at: float = 0.0

    def as_dict(self) -> dict:
        return {
            "url": self.url,
            "healthy": self.healthy,
            "in_flight": self.in_flight,
            "served": self.served,
            "last_error": self.last_error,
        }


class ReplicaPool:
    """Least-requests-in-flight routing over healthy replicas."""

    def __init__(self, engine: str, urls: list[str]):
        self.engine = engine
        self.replicas = [Replica(url) for url in urls]
        self._lock = threading.Lock()
        self._turn = 0  # round robin among equally loaded replicas

    def pick(self, tried: list[Replica]) -> Replica:
        """The replica for the next attempt (counted in flight); a 503 when none is left."""
        with self._lock:
            candidates = [r for r in self.replicas if r.healthy and r not in tried]
            if not candidates:
                raise self.unavailable(tried)
            fewest = min(r.in_flight for r in candidates)
            best = [r for r in candidates if r.in_flight == fewest]
            self._turn += 1
            replica = best[self._turn % len(best)]
            replica.in_flight += 1
            replica.served += 1
            return replica

    def release(self, replica: Replica) -> None:
        with self._lock:
            replica.in_flight = max(0, replica.in_flight - 1)

    def mark_down(self, replica: Replica, reason: str) -> None:
        if replica.healthy:
            log.warning(
                "lms_jupyter: engine %s: replica %s taken out: %s", self.engine, replica.url, reason
            )
        replica.healthy, replica.last_error = False, reason

    def mark_up(self, replica: Replica) -> None:
        if not replica.healthy:
            log.info("lms_jupyter: engine %s: replica %s answers again", self.engine, replica.url)
        replica.healthy, replica.last_error = True, None

    def unavailable(self, tried: list[Replica]) -> APIError:
        reasons = "; ".join(f"{r.url}: {r.last_error or 'down'}" for r in self.replicas)
        return APIError(
            f'Remote engine "{self.engine}" is unavailable ({reasons}). '
            "Requests resume as soon as it answers again.",
            503,
            "server_error",
            "model",
            "engine_unavailable",
        )


def _message_of(body) -> str | None:
    if isinstance(body, dict):
        error = body.get("error", body.get("detail"))
        if isinstance(error, dict):
            return error.get("message") or json.dumps(error)
        if isinstance(error, str):
            return error
        if isinstance(error, list) and error:  # FastAPI validation errors
            return "; ".join(str(e.get("msg", e)) if isinstance(e, dict) else str(e) for e in error)
        message = body.get("message")
        if isinstance(message, str):
            return message
    return None


def error_from_upstream(engine: str, status: int, text: str) -> APIError:
    """The engine's error answer as ours: its 4xx keep their status and message (the
    client's request was at fault), credentials refused and 5xx are a 502."""
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    message = _message_of(body) or (text.strip()[:300] if text else "") or f"HTTP {status}"
    error = body.get("error") if isinstance(body, dict) else None
    fields = error if isinstance(error, dict) else {}
    if status in (401, 403):
        return APIError(
            f'Remote engine "{engine}" refused the credentials it was given '
            f"(HTTP {status}): {message}. Check its api_key.",
            502,
            "server_error",
            None,
            "upstream_auth_failed",
        )
    if 400 <= status < 500 and status != 429:
        return APIError(
            f'{message} (remote engine "{engine}")',
            status,
            fields.get("type") or "invalid_request_error",
            fields.get("param"),
            fields.get("code"),
        )
    if status == 429:
        return rate_limited(f'remote engine "{engine}"', f"It is busy (HTTP 429): {message}")
    return APIError(
        f'Remote engine "{engine}" failed (HTTP {status}): {message}',
        502,
        "server_error",
        None,
        "upstream_error",
    )


def transport_error(
    engine: str, exc: Exception, replica: Replica | None = None, *, mid_stream: bool = False
) -> APIError:
    import httpx

    where = f" at {replica.url}" if replica is not None else ""
    if isinstance(exc, httpx.TimeoutException):
        return APIError(
            f'Remote engine "{engine}"{where} did not answer in time ({type(exc).__name__}).',
            504,
            "server_error",
            None,
            "upstream_timeout",
        )
    if mid_stream:
        return APIError(
            f'Remote engine "{engine}"{where} broke off the answer: {exc or type(exc).__name__}.',
            502,
            "server_error",
            None,
            "upstream_disconnected",
        )
    return APIError(
        f'Remote engine "{engine}"{where} cannot be reached: {exc or type(exc).__name__}.',
        503,
        "server_error",
        None,
        "engine_unavailable",
    )


_CONNECT_ERRORS = None


def _connect_errors():
    """Errors that mean nothing reached the replica (safe to try another)."""
    global _CONNECT_ERRORS
    if _CONNECT_ERRORS is None:
        import httpx

        _CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)
    return _CONNECT_ERRORS


@dataclass
class Upstream:
    """An open response from one replica; ``close()`` frees the replica's slot."""

    response: httpx.Response  # headers read, body not yet
    replica: Replica
    pool: ReplicaPool
    released: bool = field(default=False)

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.pool.release(self.replica)


class EngineClient:
    """HTTP to one engine: JSON calls and streams, blocking or on an asyncio loop."""

    def __init__(self, config: EngineConfig):
        import httpx

        self.config = config
        self.name = config.name
        self.pool = ReplicaPool(config.name, config.base_urls)
        self.timeout = httpx.Timeout(config.timeout, connect=CONNECT_TIMEOUT)
        self._sync = httpx.Client(timeout=self.timeout, headers=self.headers)
        self._async: dict[int, object] = {}  # one AsyncClient per event loop

    @property
    def headers(self) -> dict:
        if self.config.api_key:
            return {"Authorization": f"Bearer {self.config.api_key}"}
        return {}

    def _aclient(self):
        import httpx

        loop = asyncio.get_running_loop()
        client = self._async.get(id(loop))
        if client is None:
            client = self._async[id(loop)] = httpx.AsyncClient(
                timeout=self.timeout, headers=self.headers
            )
        return client

    # -- opening a response (failover before anything was sent) ---------------------------
    def open(self, method: str, path: str, body=None, *, timeout=None) -> Upstream:
        tried: list[Replica] = []
        while True:
            replica = self.pool.pick(tried)
            tried.append(replica)
            request = self._sync.build_request(
                method, replica.url + path, json=body, timeout=timeout or self.timeout
            )
            try:
                response = self._sync.send(request, stream=True)
            except _connect_errors() as exc:
                self.pool.release(replica)
                self.pool.mark_down(replica, str(exc) or type(exc).__name__)
                continue
            except Exception as exc:  # noqa: BLE001 - timeouts, protocol errors
                self.pool.release(replica)
                raise transport_error(self.name, exc, replica) from None
            return self._checked(Upstream(response, replica, self.pool))

    async def aopen(self, method: str, path: str, body=None, *, timeout=None) -> Upstream:
        client = self._aclient()
        tried: list[Replica] = []
        while True:
            replica = self.pool.pick(tried)
            tried.append(replica)
            request = client.build_request(
                method, replica.url + path, json=body, timeout=timeout or self.timeout
            )
            try:
                response = await client.send(request, stream=True)
            except _connect_errors() as exc:
                self.pool.release(replica)
                self.pool.mark_down(replica, str(exc) or type(exc).__name__)
                continue
            except asyncio.CancelledError:
                self.pool.release(replica)
                raise
            except Exception as exc:  # noqa: BLE001
                self.pool.release(replica)
                raise transport_error(self.name, exc, replica) from None
            if response.status_code >= 400:
                try:
                    await response.aread()
                finally:
                    await response.aclose()
                    self.pool.release(replica)
                raise error_from_upstream(self.name, response.status_code, response.text)
            return Upstream(response, replica, self.pool)

    def _checked(self, upstream: Upstream) -> Upstream:
        response = upstream.response
        if response.status_code >= 400:
            try:
                response.read()
            finally:
                response.close()
                upstream.release()
            raise error_from_upstream(self.name, response.status_code, response.text)
        return upstream

    # -- whole JSON answers ----------------------------------------------------------------
    def call(self, method: str, path: str, body=None, *, timeout=None):
        """A JSON answer (blocking)."""
        upstream = self.open(method, path, body, timeout=timeout)
        try:
            upstream.response.read()
        except Exception as exc:  # noqa: BLE001
            raise transport_error(self.name, exc, upstream.replica, mid_stream=True) from None
        finally:
            upstream.response.close()
            upstream.release()
        return self._json(upstream.response)

    async def acall(self, method: str, path: str, body=None, *, timeout=None):
        upstream = await self.aopen(method, path, body, timeout=timeout)
        try:
            await upstream.response.aread()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise transport_error(self.name, exc, upstream.replica, mid_stream=True) from None
        finally:
            await upstream.response.aclose()
            upstream.release()
        return self._json(upstream.response)

    def _json(self, response):
        try:
            data = response.json()
        except ValueError:
            raise APIError(
                f'Remote engine "{self.name}" answered with something that is '
                f"not JSON: {response.text[:200]!r}",
                502,
                "server_error",
                None,
                "upstream_error",
            ) from None
        if (
            isinstance(data, dict)
            and "error" in data
            and len(data) <= 2
            and not data.get("choices")
            and not data.get("data")
        ):
            # LM Studio answers unknown routes with HTTP 200 and {"error": "..."}
            raise error_from_upstream(
                self.name, 404 if isinstance(data["error"], str) else 502, json.dumps(data)
            )
        return data

    # -- health ------------------------------------------------------------------------------
    def probe(self, replica: Replica):
        """Ask one replica for its models; mark it up or down. Returns the body or None."""
        import httpx

        replica.checked_at = time.monotonic()
        try:
            response = self._sync.get(replica.url + "/v1/models", timeout=HEALTH_TIMEOUT)
        except (httpx.ReadTimeout, httpx.PoolTimeout):
            # connected but slow: busy (some engines hold every request during a
            # generation), not down; its requests in flight decide its routing
            replica.last_error = "slow to answer a health check"
            return None
        except Exception as exc:  # noqa: BLE001 - refused, reset, unreachable: down
            self.pool.mark_down(replica, str(exc) or type(exc).__name__)
            return None
        if response.status_code >= 500:
            self.pool.mark_down(replica, f"HTTP {response.status_code}")
            return None
        self.pool.mark_up(replica)
        if response.status_code >= 400:
            replica.last_error = f"HTTP {response.status_code} on /v1/models"
            return None
        try:
            return response.json()
        except ValueError:
            return None

    def close(self) -> None:
        try:
            self._sync.close()
        except Exception:  # noqa: BLE001
            pass
        self._async.clear()
