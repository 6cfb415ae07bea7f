"""Following a log stream: this process's bus (:func:`follow`) or a server's
``/lms/api/v0/logs/stream`` over server-sent events (:func:`read_sse`), both ending on a timeout,
a stop event or :func:`~lms_jupyter.logs.stop.stop_streams`."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Generator, Iterator

from lms_jupyter.logs.bus import Subscription, bus
from lms_jupyter.logs.render import LogFilter, LogOptionsError
from lms_jupyter.logs.stop import _register, _unregister
from lms_jupyter.sse import SSEParser


def _waits(deadline: float | None, poll: float, stop: threading.Event | None) -> Iterator[float]:
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


def follow(
    log_filter: LogFilter,
    *,
    timeout: float | None = None,
    stop: threading.Event | None = None,
    poll: float = 0.25,
    on_dropped: Callable[[int], None] | None = None,
    subscription: Subscription | None = None,
) -> Generator[dict, None, None]:
    """Events of this process's bus that pass ``log_filter``, as they come, until
    ``timeout`` seconds pass or ``stop`` is set. ``on_dropped(n)`` reports lost events."""
    deadline = None if timeout is None else time.monotonic() + timeout
    sub = subscription or bus().subscribe(log_filter.source)
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

    return f"{base_url.rstrip('/')}/{prefix}/api/v0/logs/stream?{urlencode(log_filter.query())}"


def read_sse(
    url: str,
    token: str | None = None,
    *,
    timeout: float | None = None,
    on_dropped: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
    poll: float = 0.25,
    accept: tuple[str, ...] = (),
) -> Generator[dict, None, None]:
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
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as exc:
        raise LogOptionsError(_http_error_text(exc)) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LogOptionsError(f"Cannot reach the server at {url}: {reason}") from None
    return _sse_events(response, deadline, on_dropped, stop, poll, accept)


def _sse_events(
    response, deadline, on_dropped, stop, poll, accept=()
) -> Generator[dict, None, None]:
    import queue

    items: queue.Queue = queue.Queue()
    end = object()

    def pump():
        parser = SSEParser()
        try:
            for raw in response:
                event = parser.line(raw.decode("utf-8", errors="replace"))
                if event is not None:
                    items.put(event)
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
            value = item.json()
            if item.name == "dropped":
                if on_dropped is not None:
                    on_dropped(int(value.get("dropped", 0)))
            elif item.name in (None, "message") or item.name in accept:
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
