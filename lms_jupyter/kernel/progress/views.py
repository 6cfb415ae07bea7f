"""The one family of progress views: how loads, downloads and ``lms_jupyter.batch`` runs show
their progress, in a terminal and in a notebook.

Every view is a :class:`ProgressView`: throttled, counted updates (``show``), then exactly one
ending (``finish`` with the result line, or ``fail`` with the reason). Two bases draw:

- :class:`TerminalView`: one line on the terminal, redrawn in place, written to a duplicate of
  stderr's file descriptor so that Jupyter's stream capture cannot swallow it; nothing is drawn
  when stderr is not a tty (logs and CI stay clean). The result goes to stdout, a failure to
  stderr.
- :class:`WidgetView`: an ipywidgets bar with a label, updated in place in the cell's output.

What a kind shows (a load's stage, a download's bytes and speed, a batch's rows and tokens/s)
is decided by the subclass in its own module; how it is drawn and throttled is decided here.
"""

from __future__ import annotations

import html
import os
import sys
import time


def bar_text(fraction: float, width: int = 24) -> str:
    """A text bar for a terminal: ``fraction`` of ``width`` cells filled."""
    fraction = min(max(fraction, 0.0), 1.0)
    filled = int(round(fraction * width))
    return "█" * filled + "░" * (width - filled)


class ProgressView:
    """Throttled, counted updates and one ending; subclasses implement :meth:`draw`."""

    interval = 0.1  # seconds between two drawn updates

    def __init__(self, title: str, interval: float | None = None):
        self.title = title
        if interval is not None:
            self.interval = interval
        self._last = 0.0
        self.updates = 0

    def due(self, force: bool = False) -> bool:
        """Whether an update may be drawn now (always when ``force``)."""
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            self._last = now
            return True
        return False

    def show(self, fraction: float, status: str, *, force: bool = False) -> None:
        """Draw ``fraction`` (0..1) with a ``status`` text, unless the last draw was too recent."""
        if self.due(force):
            self.updates += 1
            self.draw(fraction, status)

    def draw(self, fraction: float, status: str) -> None:
        raise NotImplementedError

    def finish(self, line: str) -> None:
        raise NotImplementedError

    def fail(self, line: str | None) -> None:
        raise NotImplementedError


class TerminalView(ProgressView):
    """A one-line bar on the terminal's stderr, redrawn in place; silent on a non-tty."""

    def __init__(self, title: str, stream=None, interval: float | None = None):
        super().__init__(title, interval)
        stream = stream or sys.__stderr__
        self._fd: int | None = None
        try:
            if stream is not None and stream.isatty():
                self._fd = os.dup(stream.fileno())
        except (AttributeError, OSError, ValueError):
            self._fd = None

    @property
    def drawing(self) -> bool:
        return self._fd is not None

    def _write(self, text: str) -> None:
        if self._fd is not None:
            try:
                os.write(self._fd, text.encode("utf-8", "replace"))
            except OSError:
                pass

    def draw(self, fraction: float, status: str) -> None:
        self._write(f"\r{self.title} {bar_text(fraction)} {status}\x1b[K")

    def clear(self) -> None:
        """Remove the bar and release the terminal (idempotent)."""
        if self._fd is not None:
            self._write("\r\x1b[K")
            os.close(self._fd)
            self._fd = None

    def finish(self, line: str) -> None:
        self.clear()
        print(line, flush=True)

    def fail(self, line: str | None) -> None:
        self.clear()
        if line:
            print(line, file=sys.stderr, flush=True)


class WidgetView(ProgressView):
    """An ipywidgets ``IntProgress`` (0..1000) and an HTML label in one ``HBox``, displayed
    when the view is made. Raises ImportError without ipywidgets (callers fall back)."""

    def __init__(self, title: str, label: str | None = None, interval: float | None = None):
        super().__init__(title, interval)
        import ipywidgets as widgets
        from IPython.display import display

        self.bar = widgets.IntProgress(
            value=0, min=0, max=1000, description="", layout=widgets.Layout(width="18em")
        )
        self.label = widgets.HTML(self._html(label if label is not None else f"{title}…"))
        self.box = widgets.HBox([self.bar, self.label])
        display(self.box)

    @staticmethod
    def _html(text: str) -> str:
        return f"<span style='font-family:monospace'>{html.escape(text)}</span>"

    def draw(self, fraction: float, status: str) -> None:
        self.bar.value = int(1000 * min(max(fraction, 0.0), 1.0))
        self.label.value = self._html(status)

    def finish(self, line: str, *, style: str = "success") -> None:
        self.bar.value = 1000 if style == "success" else self.bar.value
        self.bar.bar_style = style
        self.label.value = self._html(line)

    def fail(self, line: str | None) -> None:
        self.bar.bar_style = "danger"
        if line:
            self.label.value = self._html(line)
