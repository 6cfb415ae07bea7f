"""The notebook's cells as a model sees them: sources, outputs and the errors they raised.

Plain Python: the IPython adapter (:mod:`.ipython`) feeds it the shell's input and output
history and records each failing cell's traceback as text, through a ``post_run_cell``
hook; the same object answers ``{In[n]}``, ``{Out[n]}``, ``{Err[n]}``, ``{Err}``,
``%lms fix`` and ``%lms explain``.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

# not errors to explain: a stopped answer, a magic's one-line usage message
_NOT_RECORDED = ("GenerationInterrupted", "UsageError")


class ContextError(ValueError):
    """A placeholder or a cell reference cannot be filled: one line that names it."""


@dataclass(frozen=True)
class CellError:
    execution_count: int
    source: str
    ename: str
    evalue: str
    traceback: str  # plain text, no ANSI colours

    @property
    def summary(self) -> str:
        return f"{self.ename}: {self.evalue}" if self.evalue else self.ename


def format_error(exc: BaseException, skip_dirs: Sequence[str] = ()) -> str:
    """A traceback as plain text, without the frames of the machinery that ran the cell
    (files under ``skip_dirs``, e.g. IPython's own)."""
    tb = exc.__traceback__
    skip = tuple(os.path.normcase(os.path.abspath(d)) + os.sep for d in skip_dirs)
    while (
        tb is not None
        and skip
        and os.path.normcase(os.path.abspath(tb.tb_frame.f_code.co_filename)).startswith(skip)
    ):
        tb = tb.tb_next
    if isinstance(exc, SyntaxError) or tb is None:
        return "".join(traceback.format_exception_only(type(exc), exc)).rstrip()
    return "".join(traceback.format_exception(type(exc), exc, tb)).rstrip()


class NotebookHistory:
    """Cells by execution count. ``sources()``: the raw inputs, indexed by execution count
    (IPython's ``input_hist_raw``); ``outputs()``: ``Out``; ``current()``: the count of
    the cell running now (so ``In[-1]`` is the cell before it)."""

    def __init__(
        self,
        sources: Callable[[], Sequence[str]],
        outputs: Callable[[], Mapping[int, object]],
        current: Callable[[], int],
    ):
        self._sources = sources
        self._outputs = outputs
        self._current = current
        self.errors: dict[int, CellError] = {}
        self.last_error: CellError | None = None

    # -- recording ----------------------------------------------------------------------
    def record_error(
        self, execution_count: int, exc: BaseException, skip_dirs: Sequence[str] = ()
    ) -> CellError | None:
        if type(exc).__name__ in _NOT_RECORDED:
            return None
        evalue = str(exc).splitlines()[0] if str(exc) else ""
        error = CellError(
            execution_count,
            self._source_or_empty(execution_count),
            type(exc).__name__,
            evalue,
            format_error(exc, skip_dirs),
        )
        self.errors[execution_count] = error
        self.last_error = error
        log.info("cell %s raised %s", execution_count, error.summary)
        return error

    # -- looking up ---------------------------------------------------------------------
    def count(self, n: int) -> int:
        """An execution count from ``n`` (negative: counted back from the running cell)."""
        return self._current() + n if n < 0 else n

    def _source_or_empty(self, count: int) -> str:
        sources = self._sources()
        return sources[count] if 0 < count < len(sources) else ""

    def source(self, n: int) -> str:
        count = self.count(n)
        sources = self._sources()
        if not 0 < count < len(sources) or count >= self._current():
            raise ContextError(
                f"no cell {count} has run before this one (the last one is {self._current() - 1})."
            )
        return sources[count]

    def output(self, n: int):
        count = self.count(n)
        outputs = self._outputs()
        if count not in outputs:
            self.source(n)  # says so if the cell never ran
            raise ContextError(f"cell {count} has no output (its last line gave no value).")
        return outputs[count]

    def error(self, n: int | None = None) -> CellError:
        if n is None:
            if self.last_error is None:
                raise ContextError("no cell has raised an error in this kernel yet.")
            return self.last_error
        count = self.count(n)
        if count in self.errors:
            return self.errors[count]
        self.source(n)
        raise ContextError(f"cell {count} raised no error.")
