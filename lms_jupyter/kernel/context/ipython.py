"""The IPython side of notebook context: a thin adapter over the plain-Python parts.

It records each failing cell's traceback (a ``post_run_cell`` hook, registered by
``load_ipython_extension``), builds the :class:`.history.NotebookHistory` over the shell's
``In``/``Out``, and gives ``%%chat`` its two steps: resolve the placeholders before any
model work, render them once the model (and its tokenizer) is loaded.
"""

from __future__ import annotations

import logging
import os

from IPython.core.error import UsageError

from lms_jupyter.kernel.context.history import ContextError, NotebookHistory
from lms_jupyter.kernel.context.interpolate import Expanded, Resolved, resolve
from lms_jupyter.kernel.context.render import DEFAULT_CONTEXT_TOKENS, Limits
from lms_jupyter.kernel.context.tokens import TokenCounter, counter_for

log = logging.getLogger(__name__)


def _ipython_dir() -> str:
    import IPython

    return os.path.dirname(IPython.__file__)


def shell_history(shell) -> NotebookHistory:
    """The shell's cells; the running cell is the last stored input."""
    manager = shell.history_manager
    return NotebookHistory(
        sources=lambda: manager.input_hist_raw,
        outputs=lambda: manager.output_hist,
        current=lambda: len(manager.input_hist_raw) - 1,
    )


def model_counter(model: str | None) -> TokenCounter:
    """The loaded model's tokenizer (chars/4 when it is remote or not loaded)."""
    from lms_jupyter.kernel import runtime

    try:
        instance = runtime.get_manager().get_loaded(model) if model else None
    except Exception:  # noqa: BLE001 - no manager: estimate
        instance = None
    return counter_for(instance)


class KernelContext:
    """One per shell (``get_ipython()._lms_magics.context``)."""

    def __init__(self, shell):
        self.shell = shell
        self.history = shell_history(shell)
        self._skip = (_ipython_dir(),)

    # -- the error hook -------------------------------------------------------------------
    def register(self) -> None:
        self.shell.events.register("post_run_cell", self.post_run_cell)

    def unregister(self) -> None:
        try:
            self.shell.events.unregister("post_run_cell", self.post_run_cell)
        except ValueError:
            pass

    def post_run_cell(self, result) -> None:
        exc = result.error_in_exec or result.error_before_exec
        count = getattr(result, "execution_count", None)
        if exc is None or count is None:
            return
        try:
            self.history.record_error(count, exc, self._skip)
        except Exception:
            log.exception("could not record the error of cell %s", count)

    # -- %%chat ---------------------------------------------------------------------------
    def resolve(self, text: str, prog: str = "%%chat") -> Resolved:
        """Evaluate the placeholders now; a one-line UsageError names a bad one."""
        try:
            return resolve(text, self.shell.user_ns, self.history, self.shell.user_ns)
        except ContextError as exc:
            raise UsageError(f"{prog}: {exc}") from None

    @staticmethod
    def limits(model: str | None, tokens: int | None = None) -> Limits:
        return Limits(tokens=tokens or DEFAULT_CONTEXT_TOKENS, counter=model_counter(model))

    def set_next_input(self, code: str) -> None:
        """Offer ``code`` as a new cell below; it is never run from here."""
        self.shell.set_next_input(code, replace=False)


def show_prompt(expanded: Expanded, model: str, system: str | None = None) -> None:
    """``--show-prompt``: the user message as sent, and what each placeholder took."""
    total = None
    try:
        total = model_counter(model).count(expanded.text)
    except Exception as exc:  # noqa: BLE001 - the count is a courtesy
        log.debug("could not count the prompt: %s", exc)
    size = f"{total:,} tokens" if total is not None else ""
    lines = [f"Prompt sent to {model} (user message, {size}):"]
    if system:
        lines.insert(0, f"System prompt: {system}")
    lines.append(expanded.text)
    if expanded.interpolations:
        lines.append("--- context ---")
        lines.append(expanded.summary())
    print("\n".join(lines), flush=True)
