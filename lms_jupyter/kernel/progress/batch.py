"""Progress of a batch: an ipywidgets bar in a notebook, a bar on the terminal (the :mod:`.views` family).

Both show done/total, items/s, tokens/s (generated), ETA and the errors so far; the
dispatcher calls :meth:`update` after every finished item and at most ~5 times a second
otherwise. The final figures are printed as one line by the caller, so they land in the
cell's output (and in a saved notebook) whichever view ran.
"""

from __future__ import annotations

from dataclasses import dataclass

from lms_jupyter.cli.listing import human_duration
from lms_jupyter.kernel.progress.views import TerminalView, WidgetView


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
        parts = [
            f"{self.done}/{self.total}",
            f"{self.items_per_second:.2f} items/s",
            f"{self.tokens_per_second:.1f} tokens/s",
        ]
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


class WidgetBatchProgress(WidgetView):
    """A batch's ipywidgets bar: rows done, items/s, tokens/s, errors, ETA."""

    interval = 0.2

    def update(self, figures: Figures, force: bool = False) -> None:
        self.show(
            figures.done / figures.total if figures.total else 1.0,
            f"{self.title}: {figures.text()}",
            force=force,
        )

    def close(self, figures: Figures, interrupted: bool = False) -> None:
        self.update(figures, force=True)
        style = "warning" if interrupted or figures.errors else "success"
        WidgetView.finish(
            self,
            f"{self.title}: {figures.text()}" + (" · interrupted" if interrupted else ""),
            style=style,
        )


class TerminalBatchProgress(TerminalView):
    """A batch's bar on the terminal; the summary line is printed by the batch itself."""

    interval = 0.2

    def update(self, figures: Figures, force: bool = False) -> None:
        self.show(
            figures.done / figures.total if figures.total else 1.0, figures.text(), force=force
        )

    def close(self, figures: Figures, interrupted: bool = False) -> None:
        self.update(figures, force=True)
        self.clear()


def in_notebook() -> bool:
    """Whether we run in a Jupyter kernel (widgets render there), not a terminal."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def make_progress(progress, title: str, figures: Figures):
    """``progress``: True (pick from the environment), False, "widget" or "terminal" ("tqdm" is accepted for the terminal bar)."""
    if progress is False or progress is None:
        return NoProgress()
    kind = progress if isinstance(progress, str) else ("widget" if in_notebook() else "terminal")
    if kind == "widget":
        try:
            return WidgetBatchProgress(title)
        except ImportError:
            kind = "terminal"
    if kind in ("terminal", "tqdm"):
        try:
            return TerminalBatchProgress(title)
        except ImportError:
            return NoProgress()
    raise ValueError("progress must be True, False, 'widget' or 'terminal'.")
