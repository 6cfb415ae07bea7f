"""Progress of a batch: an ipywidgets bar in a notebook, tqdm in a terminal.

Both show done/total, items/s, tokens/s (generated), ETA and the errors so far; the
dispatcher calls :meth:`update` after every finished item and at most ~5 times a second
otherwise. The final figures are printed as one line by the caller, so they land in the
cell's output (and in a saved notebook) whichever view ran.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from lms_jupyter.cli.listing import human_duration


@dataclass
class Figures:
    """What the bar shows; ``elapsed`` counts only this run (cached rows are free)."""

    total: int
    done: int = 0  # finished rows, cached ones included
    cached: int = 0
    errors: int = 0
    computed: int = 0  # rows answered by the model in this run
    completion_tokens: int = 0
    prompt_tokens: int = 0
    elapsed: float = 0.0

    @property
    def items_per_second(self) -> float:
        return self.computed / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        rate = self.items_per_second
        left = self.total - self.done
        return left / rate if rate > 0 else None

    def text(self) -> str:
        parts = [f"{self.done}/{self.total}", f"{self.items_per_second:.2f} items/s",
                 f"{self.tokens_per_second:.1f} tokens/s"]
        eta = self.eta
        if eta is not None and self.done < self.total:
            parts.append(f"ETA {human_duration(eta)}")
        if self.cached:
            parts.append(f"{self.cached} cached")
        parts.append(f"{self.errors} error{'s' if self.errors != 1 else ''}")
        return " · ".join(parts)


class NoProgress:
    def update(self, figures: Figures, force: bool = False) -> None:
        pass

    def close(self, figures: Figures, interrupted: bool = False) -> None:
        pass


class _Throttled:
    interval = 0.2

    def __init__(self):
        self._last = 0.0

    def due(self, force: bool) -> bool:
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            self._last = now
            return True
        return False


class WidgetProgress(_Throttled):
    """An ipywidgets ``IntProgress`` with a label, updated in place."""

    def __init__(self, title: str, figures: Figures):
        super().__init__()
        import ipywidgets as widgets
        from IPython.display import display

        self.bar = widgets.IntProgress(value=figures.done, min=0, max=max(figures.total, 1),
                                       description=title,
                                       style={"description_width": "initial"})
        self.label = widgets.HTML(value=_html(figures.text()))
        self.box = widgets.HBox([self.bar, self.label])
        display(self.box)

    def update(self, figures: Figures, force: bool = False) -> None:
        if not self.due(force):
            return
        self.bar.value = figures.done
        self.label.value = _html(figures.text())

    def close(self, figures: Figures, interrupted: bool = False) -> None:
        self.bar.value = figures.done
        self.bar.bar_style = "warning" if interrupted or figures.errors else "success"
        self.label.value = _html(figures.text() + (" · interrupted" if interrupted else ""))


class TerminalProgress(_Throttled):
    """tqdm on stderr."""

    def __init__(self, title: str, figures: Figures, stream=None):
        super().__init__()
        from tqdm.auto import tqdm

        self.bar = tqdm(total=figures.total, initial=figures.done, desc=title, unit="item",
                        file=stream or sys.stderr, dynamic_ncols=True, leave=True,
                        mininterval=0.5, disable=None)  # nothing on a non-tty stderr

    def update(self, figures: Figures, force: bool = False) -> None:
        if not self.due(force):
            return
        self.bar.n = figures.done
        self.bar.set_postfix_str(f"{figures.tokens_per_second:.1f} tok/s, "
                                 f"{figures.errors} errors", refresh=False)
        self.bar.refresh()

    def close(self, figures: Figures, interrupted: bool = False) -> None:
        self.update(figures, force=True)
        self.bar.close()


def _html(text: str) -> str:
    import html

    return f"<span style='font-family:monospace'>{html.escape(text)}</span>"


def in_notebook() -> bool:
    """Whether we run in a Jupyter kernel (widgets render there), not a terminal."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def make_progress(progress, title: str, figures: Figures):
    """``progress``: True (pick from the environment), False, "widget" or "tqdm"."""
    if progress is False or progress is None:
        return NoProgress()
    kind = progress if isinstance(progress, str) else ("widget" if in_notebook() else "tqdm")
    if kind == "widget":
        try:
            return WidgetProgress(title, figures)
        except ImportError:
            kind = "tqdm"
    if kind == "tqdm":
        try:
            return TerminalProgress(title, figures)
        except ImportError:
            return NoProgress()
    raise ValueError("progress must be True, False, 'widget' or 'tqdm'.")
