"""Show a model load as it happens, and let the user cancel it.

The manager reports load progress through a callback (llama.cpp's, via
``engine.llama.load_llama``). The load runs on a helper thread that updates a
:class:`LoadWatcher`; the caller polls it (~10 Hz) to draw progress and turns Ctrl+C
into a cancel, which llama.cpp honours at the next tensor.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Callable

from lms_jupyter.engine.options import LoadCancelled


class LoadWatcher:
    """Progress (0..1 of the weights) and a cancel flag for one load."""

    def __init__(self):
        self.fraction = 0.0
        self.reported = False  # whether llama.cpp ever called back
        self.cancel = threading.Event()
        self.started = time.perf_counter()

    def on_progress(self, fraction: float) -> bool:
        """The load's progress callback: False asks llama.cpp to stop."""
        self.fraction = max(self.fraction, fraction)
        self.reported = True
        return not self.cancel.is_set()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def stage(self) -> str:
        if self.cancel.is_set():
            return "cancelling"
        return "preparing context" if self.fraction >= 1.0 else "loading weights"


class LoadTask:
    """``fn(progress)`` (a blocking load taking a progress callback) on its own thread."""

    def __init__(self, fn: Callable[[Callable[[float], bool]], object]):
        self.fn = fn
        self.watcher = LoadWatcher()
        self.result: object = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lms-load", daemon=True)

    def start(self) -> "LoadTask":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.result = self.fn(self.watcher.on_progress)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            self.error = exc
        finally:
            self.done.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)


def run_load(fn: Callable[[Callable[[float], bool]], object], view, *, poll: float = 0.1,
             discard: Callable[[Any], None] | None = None):
    """Run ``fn(progress)`` with ``view`` showing progress; Ctrl+C cancels it
    (LoadCancelled).

    If the load finishes anyway after a cancel (llama.cpp was past the weights),
    ``discard(result)`` undoes it.
    """
    task = LoadTask(fn).start()
    cancelled = False
    while not task.done.is_set():
        try:
            task.wait(poll)
            view.update(task.watcher)
        except KeyboardInterrupt:
            cancelled = True
            task.watcher.cancel.set()
            view.update(task.watcher)
    if cancelled or isinstance(task.error, LoadCancelled):
        if task.error is None and task.result is not None and discard is not None:
            discard(task.result)
        view.fail("Load cancelled.")
        raise LoadCancelled("Load cancelled.")
    if task.error is not None:
        view.fail(None)
        raise task.error
    return task.result


# -- views ------------------------------------------------------------------------------
def _bar(fraction: float, width: int = 24) -> str:
    filled = int(round(fraction * width))
    return "█" * filled + "░" * (width - filled)


class NotebookProgress:
    """A progress bar in a display handle; its final update is the result line."""

    def __init__(self, title: str, interval: float = 0.1):
        from IPython.display import display

        self.title = title
        self.interval = interval
        self._last = 0.0
        self.updates = 0
        self.handle = display(self._bundle(0.0, "starting"), raw=True, display_id=True)

    def _bundle(self, fraction: float, stage: str, elapsed: float = 0.0) -> dict:
        pct = int(fraction * 100)
        text = f"{self.title}… {pct}% ({stage}, {elapsed:.1f} s)"
        html = (f'<div><progress value="{pct}" max="100" style="width:16em;'
                f'vertical-align:middle"></progress> <span>{_escape(self.title)}… {pct}% '
                f'<span style="opacity:.65">({stage}, {elapsed:.1f} s)</span></span></div>')
        return {"text/plain": text, "text/html": html}

    def update(self, watcher: LoadWatcher) -> None:
        now = time.perf_counter()
        if now - self._last < self.interval:
            return
        self._last = now
        self.updates += 1
        self.handle.update(self._bundle(watcher.fraction, watcher.stage, watcher.elapsed),
                           raw=True)

    def finish(self, line: str) -> None:
        self.updates += 1
        self.handle.update({"text/plain": line}, raw=True)

    def fail(self, line: str | None) -> None:
        self.handle.update({"text/plain": line or f"{self.title}: failed."}, raw=True)


class TerminalLines:
    """How every terminal progress view ends: its bar cleared (``_close``), then the
    result on stdout or the failure on stderr."""

    def _close(self) -> None:
        raise NotImplementedError

    def finish(self, line: str) -> None:
        self._close()
        print(line, flush=True)

    def fail(self, line: str | None) -> None:
        self._close()
        if line:
            print(line, file=sys.stderr, flush=True)


class TerminalProgress(TerminalLines):
    """A one-line bar on the terminal's stderr (a duplicate of its file descriptor, so
    Jupyter's stream capture does not swallow it). Nothing is drawn when stderr is not
    a tty."""

    def __init__(self, title: str, stream=None, interval: float = 0.1):
        self.title = title
        self.interval = interval
        self._last = 0.0
        self.updates = 0
        stream = stream or sys.__stderr__
        self._fd = None
        self._out = stream
        try:
            if stream is not None and stream.isatty():
                self._fd = os.dup(stream.fileno())
        except (AttributeError, OSError, ValueError):
            self._fd = None

    def _write(self, text: str) -> None:
        if self._fd is not None:
            try:
                os.write(self._fd, text.encode("utf-8", "replace"))
            except OSError:
                pass

    def update(self, watcher: LoadWatcher) -> None:
        now = time.perf_counter()
        if self._fd is None or now - self._last < self.interval:
            return
        self._last = now
        self.updates += 1
        pct = int(watcher.fraction * 100)
        self._write(f"\r{self.title} {_bar(watcher.fraction)} {pct:3d}% "
                    f"({watcher.stage}, {watcher.elapsed:.1f} s)\x1b[K")

    def _close(self) -> None:
        if self._fd is not None:
            self._write("\r\x1b[K")
            os.close(self._fd)
            self._fd = None



def _escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)
