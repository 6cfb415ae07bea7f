"""Streamed Markdown in a cell's output: one display handle updated in place.

Frontends re-render the whole Markdown on each update and jupyter-server limits iopub
to 1000 messages/s, so updates are throttled (15/s by default) and the last one is
always exact. Where displays cannot be updated (terminal IPython prints every update
again), the deltas are printed instead.
"""

from __future__ import annotations

import html
import sys
import time
from collections.abc import Callable

METADATA_KEY = "lms_jupyter"


def can_update_displays(shell=None) -> bool:
    """True when the shell's display publisher handles ``update_display_data``.

    IPython's base publisher (terminal IPython) just prints; kernels and capture tools
    override ``publish``.
    """
    if shell is None:
        try:
            from IPython import get_ipython

            shell = get_ipython()
        except ImportError:
            return False
    if shell is None:
        return False
    from IPython.core.displaypub import DisplayPublisher

    publisher = getattr(shell, "display_pub", None)
    return publisher is not None and type(publisher).publish is not DisplayPublisher.publish


class MarkdownStream:
    """The growing answer: ``update(text)`` with the full text so far, then ``finish``.

    ``mode`` is "display" (handle updates) or "print" (write the new characters).
    ``render`` turns the raw text into the Markdown shown (e.g. a fenced JSON block).
    """

    def __init__(
        self,
        *,
        mode: str = "display",
        rate: float = 15.0,
        render: Callable[[str], str] | None = None,
        metadata: dict | None = None,
        placeholder: str = "…",
    ):
        self.mode = mode
        self.interval = 1.0 / rate if rate and rate > 0 else 0.0
        self.render = render or (lambda text: text)
        self.metadata = dict(metadata or {})
        self.text = ""
        self.update_times: list[float] = []
        self._printed = 0
        self._last = 0.0
        self._pending = False
        self.display_id = None
        if mode == "display":
            from IPython.display import display

            handle = display(
                self._bundle(placeholder, raw=True),
                raw=True,
                metadata=self._metadata("starting"),
                display_id=True,
            )
            self.display_id = getattr(handle, "display_id", None)

    def _bundle(self, text: str, raw: bool = False) -> dict:
        shown = text if raw or not text else self.render(text)
        if not shown:  # a reply with no text: it only called tools (a note, not a blank)
            return {"text/markdown": "*(no text: calling a tool)*", "text/plain": ""}
        return {"text/markdown": shown, "text/plain": shown}

    def _metadata(self, stage: str) -> dict:
        return {METADATA_KEY: {**self.metadata, "stage": stage}}

    def _publish(self, stage: str) -> None:
        from IPython.display import update_display

        update_display(
            self._bundle(self.text),
            raw=True,
            metadata=self._metadata(stage),
            display_id=self.display_id,
        )
        self.update_times.append(time.perf_counter())

    def update(self, text: str) -> None:
        """Show ``text`` now, or at the next allowed moment."""
        self.text = text
        if self.mode == "print":
            self._print_new()
            return
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self._last = now
            self._pending = False
            self._publish("generating")
        else:
            self._pending = True

    def finish(self, text: str | None = None, stage: str = "finished") -> None:
        """The exact final text (always published)."""
        if text is not None:
            self.text = text
        if self.mode == "print":
            self._print_new()
            if self._printed:
                sys.stdout.write("\n")
            sys.stdout.flush()
            return
        self._pending = False
        if not self.text and stage == "finished":
            stage = "empty"  # e.g. a reply that only called tools
        self._publish(stage)

    def _print_new(self) -> None:
        new = self.text[self._printed :]
        if new:
            sys.stdout.write(new)
            sys.stdout.flush()
            self._printed = len(self.text)

    @property
    def updates_per_second(self) -> float:
        times = self.update_times
        if len(times) < 2 or times[-1] == times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])


def show_note(
    text: str, *, mode: str = "display", html_text: str | None = None, stage: str = "note"
) -> None:
    """A small secondary line (stats, tool calls): dimmed in notebooks, plain in a terminal."""
    if mode == "print":
        print(text, flush=True)
        return
    from IPython.display import display

    body = html_text if html_text is not None else html.escape(text)
    display(
        {"text/plain": text, "text/html": f'<div style="opacity:.65;font-size:.85em">{body}</div>'},
        raw=True,
        metadata={METADATA_KEY: {"stage": stage}},
    )


class CellChatView:
    """How ``%%chat`` shows a turn: each answer streams into its own display handle,
    tool calls and the stats line appear as dimmed notes under it."""

    def __init__(
        self,
        *,
        mode: str = "display",
        rate: float = 15.0,
        show_stats: bool = True,
        render: Callable[[str], str] | None = None,
    ):
        self.mode = mode
        self.rate = rate
        self.show_stats = show_stats
        self.render = render
        self.streams: list[MarkdownStream] = []

    def start_text(self, model: str) -> None:
        self.streams.append(
            MarkdownStream(
                mode=self.mode, rate=self.rate, render=self.render, metadata={"model": model}
            )
        )

    def text(self, text: str) -> None:
        self.streams[-1].update(text)

    def end_text(self, text: str, stage: str) -> None:
        self.streams[-1].finish(text, stage)

    def tool_result(self, result) -> None:
        args = ", ".join(f"{k}={v!r}" for k, v in result.arguments.items())
        outcome = result.content
        if len(outcome) > 300:
            outcome = outcome[:300] + "…"
        text = f"🔧 {result.name}({args}) → {outcome}"
        show_note(text, mode=self.mode, stage="tool_call")

    def stats(self, stats) -> None:
        if self.show_stats:
            show_note(stats.line(), mode=self.mode, stage="stats")
