"""The log bus: one per process, carrying LM Studio's ``DiagnosticsLogEvent`` shapes,
``{"timestamp": <epoch ms>, "data": {...}}``, to every reader of ``lms log stream``.

- ``llm.prediction.input`` (``input`` = the prompt exactly as the model sees it, after
  the chat template) and ``llm.prediction.output`` (``output`` and LM Studio's
  ``LLMPredictionStats``), published by the model's worker thread (``--source model``);
- ``server.log`` (``content``, ``level``): one line per HTTP request (method, path,
  status, duration, model), the extension's start-up lines, and every record of the
  ``lms_jupyter`` logger while somebody listens (``--source server``).

Readers never slow generation down: each subscription has its own bounded buffer, and
when a reader falls behind, the oldest events are dropped and counted; publishing only
appends to those buffers. Secrets (bearer tokens, ``token=`` values, Hugging Face tokens,
registered values such as the Jupyter token) are masked in server lines; request lines
carry the path only, never headers, query strings or bodies.
"""

from __future__ import annotations

import collections
import datetime
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence

SOURCES = ("model", "server")
MODEL_INPUT = "llm.prediction.input"
MODEL_OUTPUT = "llm.prediction.output"
SERVER_LOG = "server.log"
DEFAULT_BUFFER = 1000
_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warn",
    logging.ERROR: "error",
    logging.CRITICAL: "error",
}


def source_of(data: dict) -> str:
    kind = data.get("type", "")
    if kind.startswith("llm."):
        return "model"
    if kind.startswith("runtime."):
        return "runtime"
    return "server"


def now_ms() -> int:
    return int(time.time() * 1000)


class Subscription:
    """One reader's bounded buffer of events for one source.

    ``get`` blocks (with a timeout) for the next event; a waker (``add_waker``) is called
    on the publishing thread after each event, so an asyncio reader can be woken with
    ``loop.call_soon_threadsafe``. ``dropped`` counts events lost because the buffer was
    full.
    """

    def __init__(self, bus: LogBus, source: str, maxlen: int):
        self.bus = bus
        self.source = source
        self.maxlen = maxlen
        self.dropped = 0
        self.closed = False
        self._events: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._wakers: list[Callable[[], None]] = []

    def _put(self, event: dict) -> None:
        with self._cond:
            if len(self._events) >= self.maxlen:
                self._events.popleft()
                self.dropped += 1
            self._events.append(event)
            self._cond.notify_all()
        for waker in self._wakers:
            try:
                waker()
            except Exception:  # noqa: BLE001 - a dead reader must not hurt the publisher
                pass

    def add_waker(self, waker: Callable[[], None]) -> None:
        self._wakers.append(waker)

    def get(self, timeout: float | None = None) -> dict | None:
        """The oldest buffered event, waiting up to ``timeout`` seconds; None if none came."""
        with self._cond:
            if not self._events and not self.closed:
                self._cond.wait(timeout)
            return self._events.popleft() if self._events else None

    def get_nowait(self) -> dict | None:
        with self._cond:
            return self._events.popleft() if self._events else None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.bus._remove(self)
            with self._cond:
                self._cond.notify_all()
            for waker in self._wakers:
                try:
                    waker()
                except Exception:  # noqa: BLE001
                    pass

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LogBus:
    """Fan-out of diagnostics events to subscriptions, by source."""

    def __init__(self):
        self._lock = threading.Lock()
        self._subs: dict[str, tuple[Subscription, ...]] = {}
        self._secrets: set[str] = set()
        self._logger_level: int | None = None

    def has_subscribers(self, source: str) -> bool:
        return bool(self._subs.get(source))

    def subscribe(self, source: str = "model", maxlen: int = DEFAULT_BUFFER) -> Subscription:
        sub = Subscription(self, source, maxlen)
        with self._lock:
            self._subs[source] = self._subs.get(source, ()) + (sub,)
            if source == "server":
                self._listen_to_logger(True)
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            remaining = tuple(s for s in self._subs.get(sub.source, ()) if s is not sub)
            self._subs[sub.source] = remaining
            if sub.source == "server" and not remaining:
                self._listen_to_logger(False)

    def _listen_to_logger(self, on: bool) -> None:
        """While somebody follows ``--source server``, INFO records of the ``lms_jupyter``
        logger reach our handler (the logger stays as configured otherwise)."""
        logger = logging.getLogger("lms_jupyter")
        if on and self._logger_level is None:
            self._logger_level = logger.level
            if logger.getEffectiveLevel() > logging.INFO:
                logger.setLevel(logging.INFO)
        elif not on and self._logger_level is not None:
            logger.setLevel(self._logger_level)
            self._logger_level = None

    def publish(self, data: dict, timestamp: int | None = None) -> None:
        """Hand ``data`` to every subscriber of its source; never blocks for long."""
        subs = self._subs.get(source_of(data))
        if not subs:
            return
        event = {"timestamp": now_ms() if timestamp is None else timestamp, "data": data}
        for sub in subs:
            sub._put(event)

    # -- secrets -----------------------------------------------------------------------
    def add_secret(self, value: str | None) -> None:
        """Mask this exact value in server lines (tokens known to this process)."""
        if isinstance(value, str) and len(value) >= 6:
            self._secrets.add(value)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return redact_patterns(text)


_SECRET_PATTERNS = [  # applied in order: credentials after a scheme word, then key=value
    (re.compile(r"(?i)\b(bearer|basic|token)\s+(?=\S*\d|\S{20})[A-Za-z0-9._~+/=-]{6,}"), r"\1 ***"),
    (
        re.compile(
            r"(?i)((?:authorization|x-api-key|api[_-]?key|access[_-]?token|token|"
            r"secret|password|hf_token)[\"']?\s*[:=]\s*[\"']?)"
            r"(?!(?:bearer|basic|token)\s|\*\*\*)[^\s\"'&,;)}\]]+"
        ),
        r"\1***",
    ),
    (re.compile(r"\bhf_[A-Za-z0-9]{16,}\b"), "hf_***"),
]


def redact_patterns(text: str) -> str:
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


_bus = LogBus()
_bus.add_secret(os.environ.get("HF_TOKEN"))


def bus() -> LogBus:
    """The process's bus (the kernel's, the CLI's, or the server's)."""
    return _bus


# -- server events ---------------------------------------------------------------------------
def server_line(level: str, message: str, when: float | None = None) -> str:
    stamp = datetime.datetime.fromtimestamp(time.time() if when is None else when)
    return f"{stamp:%Y-%m-%d %H:%M:%S} [{level.upper()}] {message}"


def server_log(level: str, message: str) -> None:
    """Publish one ``server.log`` line (masked)."""
    if not _bus.has_subscribers("server"):
        return
    _bus.publish(
        {"type": SERVER_LOG, "level": level, "content": _bus.redact(server_line(level, message))}
    )


def log_request(
    method: str, path: str, status: int, seconds: float, model: str | None = None
) -> None:
    """One HTTP request: method, path (no query string), status, duration and model."""
    if not _bus.has_subscribers("server"):
        return
    level = "error" if status >= 500 else "warn" if status >= 400 else "info"
    text = f"{method} {path} {status} {seconds * 1000:.1f}ms"
    if model:
        text += f" model={model}"
    server_log(level, text)


def server_started(url: str, models_dir, secrets: Sequence[str | None] = ()) -> None:
    """The server's start-up lines; ``secrets`` (the Jupyter token) are masked from now on."""
    for secret in secrets:
        _bus.add_secret(secret)
    logging.getLogger("lms_jupyter").info(
        "LM Studio API at %sv1 and %sapi (models from %s)", url, url, models_dir
    )
    server_log(
        "info",
        f"Server started: OpenAI-compatible API at {url}v1, LM Studio REST API "
        f"at {url}api, log stream at {url}api/v0/logs/stream",
    )


class _BusHandler(logging.Handler):
    """Records of the ``lms_jupyter`` logger as ``server.log`` events."""

    def emit(self, record: logging.LogRecord) -> None:
        if not _bus.has_subscribers("server"):
            return
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is not our reader's problem
            message = str(record.msg)
        level = _LEVELS.get(record.levelno, "info")
        _bus.publish(
            {
                "type": SERVER_LOG,
                "level": level,
                "content": _bus.redact(server_line(level, message, record.created)),
            }
        )


def _install_handler() -> None:
    logger = logging.getLogger("lms_jupyter")
    if not any(isinstance(h, _BusHandler) for h in logger.handlers):
        logger.addHandler(_BusHandler(level=logging.DEBUG))


_install_handler()
