"""``lms log stream``: LM Studio's diagnostics events, published in-process to any reader.

One :class:`LogBus` per process carries LM Studio's ``DiagnosticsLogEvent`` shapes,
``{"timestamp": <epoch ms>, "data": {...}}``:

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

Fronts render events with :class:`LogFilter` and :func:`render_text` (LM Studio's text
layout) or :func:`render_json` (one compact JSON object a line); :func:`read_sse` yields
the same event dicts from a server's ``/lms/api/v0/logs/stream`` endpoint.

(Nearly 600 lines, kept together: publishing, filtering and reading share the one event
shape, and every front of ``log stream`` needs all three.)
"""
from __future__ import annotations

import collections
import datetime
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

SOURCES = ("model", "server")
MODEL_INPUT = "llm.prediction.input"
MODEL_OUTPUT = "llm.prediction.output"
SERVER_LOG = "server.log"
DEFAULT_BUFFER = 1000
_LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
           logging.ERROR: "error", logging.CRITICAL: "error"}


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

    def __init__(self, bus: "LogBus", source: str, maxlen: int):
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

    def __enter__(self) -> "Subscription":
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
    (re.compile(r"(?i)\b(bearer|basic|token)\s+(?=\S*\d|\S{20})[A-Za-z0-9._~+/=-]{6,}"),
     r"\1 ***"),
    (re.compile(r"(?i)((?:authorization|x-api-key|api[_-]?key|access[_-]?token|token|"
                r"secret|password|hf_token)[\"']?\s*[:=]\s*[\"']?)"
                r"(?!(?:bearer|basic|token)\s|\*\*\*)[^\s\"'&,;)}\]]+"), r"\1***"),
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
    _bus.publish({"type": SERVER_LOG, "level": level,
                  "content": _bus.redact(server_line(level, message))})


def log_request(method: str, path: str, status: int, seconds: float,
                model: str | None = None) -> None:
    """One HTTP request: method, path (no query string), status, duration and model."""
    if not _bus.has_subscribers("server"):
        return
    level = "error" if status >= 500 else "warn" if status >= 400 else "info"
    text = f"{method} {path} {status} {seconds * 1000:.1f}ms"
    if model:
        text += f" model={model}"
    server_log(level, text)


def server_started(url: str, models_dir, secrets: list[str | None] = ()) -> None:
    """The server's start-up lines; ``secrets`` (the Jupyter token) are masked from now on."""
    for secret in secrets:
        _bus.add_secret(secret)
    logging.getLogger("lms_jupyter").info(
        "LM Studio API at %sv1 and %sapi (models from %s)", url, url, models_dir)
    server_log("info", f"Server started: OpenAI-compatible API at {url}v1, LM Studio REST API "
                       f"at {url}api, log stream at {url}api/v0/logs/stream")


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
        _bus.publish({"type": SERVER_LOG, "level": level,
                      "content": _bus.redact(server_line(level, message, record.created))})


def _install_handler() -> None:
    logger = logging.getLogger("lms_jupyter")
    if not any(isinstance(h, _BusHandler) for h in logger.handlers):
        logger.addHandler(_BusHandler(level=logging.DEBUG))


_install_handler()


# -- model events ---------------------------------------------------------------------------
def model_path(model) -> str:
    """LM Studio's ``modelPath``: the file relative to the models folder when we can tell."""
    variant, info = model.variant, model.info
    path = variant.path
    if getattr(info, "embedded", False):
        return f"{info.publisher}/{path.name}"
    return f"{path.parent.parent.name}/{path.parent.name}/{path.name}"


def prediction_stats(model, finished) -> dict:
    """LM Studio's LLMPredictionStats from a Finished event."""
    stats = {
        "stopReason": finished.stop_reason,
        "tokensPerSecond": round(finished.tokens_per_second, 3),
        "numGpuLayers": model.config.n_gpu_layers,
        "timeToFirstTokenSec": round(finished.time_to_first_token, 4),
        "promptTokensCount": finished.prompt_tokens,
        "predictedTokensCount": finished.completion_tokens,
        "totalTokensCount": finished.prompt_tokens + finished.completion_tokens,
    }
    draft = finished.draft_stats
    if draft:
        stats.update({"usedDraftModelKey": draft.get("draft_model"),
                      "totalDraftTokensCount": draft.get("total_draft_tokens_count"),
                      "acceptedDraftTokensCount": draft.get("accepted_draft_tokens_count"),
                      "rejectedDraftTokensCount": draft.get("rejected_draft_tokens_count"),
                      "ignoredDraftTokensCount": draft.get("ignored_draft_tokens_count")})
    return stats


_outputs: dict[int, list[str]] = {}  # id(request) -> text so far, while someone follows


def on_generation_event(model, request, event) -> None:
    """Called for each generation event a model's worker sends: publishes the prompt when
    generation starts and the output (with stats) when it finishes. Cheap when nobody
    follows ``--source model``."""
    if not _bus.has_subscribers("model") and id(request) not in _outputs:
        return
    try:
        _publish_generation_event(model, request, event)
    except Exception:  # noqa: BLE001 - logging must never break a generation
        logging.getLogger(__name__).debug("log event failed", exc_info=True)


def _publish_generation_event(model, request, event) -> None:
    from .engine.events import Failed, Finished, Started, TextDelta

    if isinstance(event, TextDelta):
        if id(request) in _outputs:
            _outputs[id(request)].append(event.text)
        return
    if isinstance(event, Failed):
        _outputs.pop(id(request), None)
        return
    if isinstance(event, Started):
        _outputs[id(request)] = []
        prompt = request.prompt
        if not isinstance(prompt, str):  # token ids: the worker rendered them
            prompt = event.prompt_text if event.prompt_text is not None else str(list(prompt))
        _bus.publish({"type": MODEL_INPUT, "input": prompt, "modelPath": model_path(model),
                      "modelIdentifier": model.identifier})
    elif isinstance(event, Finished):
        output = "".join(_outputs.pop(id(request), []))
        _bus.publish({"type": MODEL_OUTPUT, "output": output,
                      "stats": prediction_stats(model, event),
                      "modelIdentifier": model.identifier, "modelPath": model_path(model)})


# -- filtering and rendering ------------------------------------------------------------------
class LogOptionsError(ValueError):
    """Bad ``log stream`` options, with LM Studio's wording."""


@dataclass
class LogFilter:
    """Which events a reader wants and whether model events keep their ``stats``."""

    source: str = "model"
    types: tuple[str, ...] = (MODEL_INPUT, MODEL_OUTPUT)
    stats: bool = False

    @classmethod
    def parse(cls, source: str | None = "model", filter_text: str | None = None,
              stats: bool = False) -> "LogFilter":
        source = (source or "model").strip().lower()
        if source not in SOURCES:
            raise LogOptionsError(f"--source must be one of: {', '.join(SOURCES)} "
                                  f"(got {source!r}).")
        if source != "model":
            if stats:
                raise LogOptionsError("--stats can only be used with --source model")
            if filter_text is not None:
                raise LogOptionsError("--filter can only be used with --source model")
            return cls(source, (SERVER_LOG,), False)
        if filter_text is None:
            return cls(source, (MODEL_INPUT, MODEL_OUTPUT), bool(stats))
        if not filter_text.strip():
            raise LogOptionsError("--filter cannot be empty")
        wanted = [part.strip() for part in filter_text.split(",") if part.strip()]
        if any(part not in ("input", "output") for part in wanted):
            raise LogOptionsError("--filter values must be 'input', 'output', or 'input,output'")
        types = tuple(t for t in (MODEL_INPUT, MODEL_OUTPUT)
                      if t.rsplit(".", 1)[1] in wanted)
        return cls(source, types, bool(stats))

    def apply(self, event: dict) -> dict | None:
        """The event as this reader sees it, or None when it is filtered out."""
        data = event.get("data") or {}
        if data.get("type") not in self.types:
            return None
        if "stats" in data and not self.stats:
            data = {k: v for k, v in data.items() if k != "stats"}
            return {"timestamp": event.get("timestamp"), "data": data}
        return event

    def query(self) -> dict:
        """The SSE endpoint's query parameters for this filter."""
        params = {"source": self.source}
        if self.source == "model":
            params["filter"] = ",".join(t.rsplit(".", 1)[1] for t in self.types)
            if self.stats:
                params["stats"] = "true"
        return params


def local_time(timestamp_ms: int) -> str:
    """JavaScript's ``toLocaleString()`` in en-US: ``9/15/2025, 3:16:39 PM``."""
    moment = datetime.datetime.fromtimestamp(timestamp_ms / 1000)
    hour = moment.hour % 12 or 12
    suffix = "AM" if moment.hour < 12 else "PM"
    return (f"{moment.month}/{moment.day}/{moment.year}, "
            f"{hour}:{moment.minute:02d}:{moment.second:02d} {suffix}")


def render_text(event: dict, stats: bool = False) -> str:
    """LM Studio's text layout: server lines raw, model events as ``key: value`` blocks
    followed by two blank lines."""
    data = event.get("data") or {}
    kind = data.get("type")
    if kind == SERVER_LOG:
        return str(data.get("content", ""))
    lines = [f"timestamp: {local_time(event.get('timestamp') or 0)}", f"type: {kind}",
             f"modelIdentifier: {data.get('modelIdentifier')}"]
    if kind == MODEL_INPUT:
        lines += [f"modelPath: {data.get('modelPath')}", "input:", str(data.get("input", ""))]
    elif kind == MODEL_OUTPUT:
        lines += ["output:", str(data.get("output", ""))]
        if stats:
            if data.get("stats"):
                lines += [f"{key}: {_js_value(value)}" for key, value in data["stats"].items()]
            else:
                lines.append("No stats available")
    return "\n".join(lines) + "\n\n"


def _js_value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_json(event: dict) -> str:
    """``JSON.stringify(event)``: compact, one line."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


# -- stopping: see log_stop.py (every follower registers its stop event there) ------------
from .log_stop import _register, _unregister, signals_stop_streams, stop_streams  # noqa: E402,F401


# -- readers ---------------------------------------------------------------------------------
def _waits(deadline: float | None, poll: float,
           stop: threading.Event | None) -> Iterator[float]:
    """How long each read of a follower may block: ``poll`` seconds, less just before the
    ``deadline`` (monotonic; None: none); ends at the deadline or once ``stop`` is set."""
    while stop is None or not stop.is_set():
        if deadline is None:
            yield poll
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            return
        yield min(poll, left)


def follow(log_filter: LogFilter, *, timeout: float | None = None,
           stop: threading.Event | None = None, poll: float = 0.25,
           on_dropped: Callable[[int], None] | None = None,
           subscription: Subscription | None = None) -> Iterator[dict]:
    """Events of this process's bus that pass ``log_filter``, as they come, until
    ``timeout`` seconds pass or ``stop`` is set. ``on_dropped(n)`` reports lost events."""
    deadline = None if timeout is None else time.monotonic() + timeout
    sub = subscription or _bus.subscribe(log_filter.source)
    reported = 0
    stop = _register(stop)
    try:
        for wait in _waits(deadline, poll, stop):
            event = sub.get(wait)
            if sub.dropped != reported and on_dropped is not None:
                on_dropped(sub.dropped - reported)
            reported = sub.dropped
            if event is None:
                continue
            shown = log_filter.apply(event)
            if shown is not None:
                yield shown
    finally:
        _unregister(stop)
        sub.close()


def sse_url(base_url: str, log_filter: LogFilter, prefix: str = "lms") -> str:
    from urllib.parse import urlencode

    return (f"{base_url.rstrip('/')}/{prefix}/api/v0/logs/stream?"
            f"{urlencode(log_filter.query())}")


def read_sse(url: str, token: str | None = None, *, timeout: float | None = None,
             on_dropped: Callable[[int], None] | None = None,
             stop: threading.Event | None = None, poll: float = 0.25,
             accept: tuple[str, ...] = ()) -> Iterator[dict]:
    """The events of a server's log stream (``GET .../api/v0/logs/stream``), as dicts;
    ``accept``: the named events to yield besides unnamed ones (the model events route).

    Ends after ``timeout`` seconds, when ``stop`` is set, or when the server ends the
    stream (or :func:`stop_streams` is called). The socket is read on a helper thread so
    that the caller's thread stays interruptible and the timeout holds between events. Plain ``urllib``, so the
    CLI needs no HTTP client.
    """
    import urllib.error
    import urllib.request

    headers = {"Accept": "text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                          timeout=60)
    except urllib.error.HTTPError as exc:
        raise LogOptionsError(_http_error_text(exc)) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LogOptionsError(f"Cannot reach the server at {url}: {reason}") from None
    return _sse_events(response, deadline, on_dropped, stop, poll, accept)


def _sse_events(response, deadline, on_dropped, stop, poll, accept=()) -> Iterator[dict]:
    import queue

    items: queue.Queue = queue.Queue()
    end = object()

    def pump():
        name, data = None, []
        try:
            for raw in response:
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if line.startswith(":"):
                    continue
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
                elif not line and data:
                    items.put((name, "\n".join(data)))
                    name, data = None, []
        except Exception:  # noqa: BLE001 - closed by us, or the server went away
            pass
        finally:
            items.put(end)

    reader = threading.Thread(target=pump, name="lms-log-sse", daemon=True)
    reader.start()
    stop = _register(stop)
    try:
        for wait in _waits(deadline, poll, stop):
            try:
                item = items.get(timeout=wait)
            except queue.Empty:
                continue
            if item is end:
                return
            name, payload = item
            value = json.loads(payload)
            if name == "dropped":
                if on_dropped is not None:
                    on_dropped(int(value.get("dropped", 0)))
            elif name in (None, "message") or name in accept:
                yield value
    finally:
        _unregister(stop)
        _close_response(response)


def _close_response(response) -> None:
    """Close an HTTP response that another thread is reading: shut the socket down first
    so that its blocked read returns at once (and the server sees the disconnect)."""
    import socket

    try:
        sock = response.fp.raw._sock
        sock.shutdown(socket.SHUT_RDWR)
    except Exception:  # noqa: BLE001 - not a plain socket: closing is enough
        pass
    try:
        response.close()
    except Exception:  # noqa: BLE001
        pass


def _http_error_text(exc) -> str:
    try:
        body = json.loads(exc.read())
        message = body.get("error", {}).get("message")
    except Exception:  # noqa: BLE001
        message = None
    return f"The server answered {exc.code}: {message or exc.reason}"
