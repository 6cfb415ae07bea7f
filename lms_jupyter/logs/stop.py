"""How log streams stop without relying on SIGINT / KeyboardInterrupt.

Background jobs (``nohup``, ``&``) start with SIGINT ignored, so neither Ctrl+C nor
``_thread.interrupt_main()`` reaches them. Every follower in :mod:`.logstream` watches a
stop event registered here instead: :func:`stop_streams` ends them all, and
:class:`signals_stop_streams` makes SIGINT and SIGTERM do that in the CLI, even where
SIGINT was ignored when the process started.
"""

from __future__ import annotations

import threading

_stops_lock = threading.Lock()
_stops: set[threading.Event] = set()
_signalled = threading.Event()  # a stop signal came while signals_stop_streams was active


def stop_streams() -> int:
    """Ends every log stream this process is following (each ends at its next poll,
    within ``poll`` seconds, as after its timeout); returns how many there were."""
    with _stops_lock:
        events = list(_stops)
    for event in events:
        event.set()
    return len(events)


def _register(stop: threading.Event | None) -> threading.Event:
    stop = stop if stop is not None else threading.Event()
    with _stops_lock:
        _stops.add(stop)
    if _signalled.is_set():  # the signal came before this stream started reading
        stop.set()
    return stop


def _unregister(stop: threading.Event) -> None:
    with _stops_lock:
        _stops.discard(stop)


class signals_stop_streams:
    """While active (main thread only; elsewhere it does nothing), SIGINT and SIGTERM
    stop the log streams instead of raising KeyboardInterrupt or killing the process,
    so ``lms-jupyter log stream`` ends cleanly (exit 0) in any process."""

    _SIGNALS = ("SIGINT", "SIGTERM")

    def __enter__(self):
        import signal

        self._previous = {}
        _signalled.clear()
        if threading.current_thread() is not threading.main_thread():
            return self
        for name in self._SIGNALS:
            number = getattr(signal, name, None)
            if number is None:
                continue
            try:
                self._previous[number] = signal.signal(number, self._stop)
            except (ValueError, OSError):  # not allowed here
                pass
        return self

    @staticmethod
    def _stop(*_) -> None:
        _signalled.set()
        stop_streams()

    def __exit__(self, *exc) -> None:
        import signal

        _signalled.clear()
        for number, handler in self._previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
