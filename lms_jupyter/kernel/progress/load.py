"""Show a model load as it happens, and let the user cancel it.

The manager reports load progress through a callback (llama.cpp's, via
``engine.local.llama.load_llama``). The load runs on a helper thread that updates a
:class:`LoadWatcher`; the caller polls it (~10 Hz) to draw progress and turns Ctrl+C
into a cancel, which llama.cpp honours at the next tensor.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from typing import Any

from lms_jupyter.engine.options import LoadCancelled
from lms_jupyter.kernel.progress.views import ProgressView, TerminalView


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

    def start(self) -> LoadTask:
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


def run_load(
    fn: Callable[[Callable[[float], bool]], object],
    view,
    *,
    poll: float = 0.1,
    discard: Callable[[Any], None] | None = None,
):
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
class NotebookLoadProgress(ProgressView):
    """A load's bar in a display handle (plain HTML, so it needs no widget front and shows in
    saved notebooks); its last update is the result line."""

    def __init__(self, title: str, interval: float = 0.1):
        super().__init__(title, interval)
        from IPython.display import display

        self.handle = display(self._bundle(0.0, "starting"), raw=True, display_id=True)

    def _bundle(self, fraction: float, stage: str, elapsed: float = 0.0) -> dict:
        pct = int(fraction * 100)
        text = f"{self.title}… {pct}% ({stage}, {elapsed:.1f} s)"
        title = html.escape(self.title, quote=True)
        markup = (
            f'<div><progress value="{pct}" max="100" style="width:16em;'
            f'vertical-align:middle"></progress> <span>{title}… {pct}% '
            f'<span style="opacity:.65">({stage}, {elapsed:.1f} s)</span></span></div>'
        )
        return {"text/plain": text, "text/html": markup}

    def update(self, watcher: LoadWatcher) -> None:
        self._watcher = watcher
        self.show(watcher.fraction, watcher.stage)

    def draw(self, fraction: float, status: str) -> None:
        self.handle.update(self._bundle(fraction, status, self._watcher.elapsed), raw=True)

    def finish(self, line: str) -> None:
        self.updates += 1
        self.handle.update({"text/plain": line}, raw=True)

    def fail(self, line: str | None) -> None:
        self.handle.update({"text/plain": line or f"{self.title}: failed."}, raw=True)


class TerminalLoadProgress(TerminalView):
    """A load's one-line bar on the terminal: percentage, stage and seconds so far."""

    def update(self, watcher: LoadWatcher) -> None:
        pct = int(watcher.fraction * 100)
        self.show(watcher.fraction, f"{pct:3d}% ({watcher.stage}, {watcher.elapsed:.1f} s)")
